"""A real server: retraining runs in its background worker; `kill -9` mid-job leaves the
job marked failed (interrupted) after the restart, and the page still shows it."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

from test_web_dashboard_workflows import _trainable_project
from web_support import PASSWORD, call, free_port, start_server, stop_server

from medloop.config import Settings
from medloop.types import Role
from medloop.workflows import Workspace, accounts
from medloop.workflows.jobs import INTERRUPTED

SECRET = "jobs-test-secret"


def test_a_job_killed_with_its_server_is_failed_after_restart(tmp_path: Path) -> None:
    home = tmp_path / "home"
    ws = Workspace.open(Settings(home=home, secret_key=SECRET))
    _trainable_project(ws)
    accounts.add_user(ws, username="adam", role=Role.ADMIN, password=PASSWORD)
    ws.close()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = start_server(home, secret=SECRET, port=port)
    try:
        token = call(f"{base}/api/auth/login", {"username": "adam", "password": PASSWORD})["token"]
        job: dict[str, Any] = call(f"{base}/api/jobs/retrain", {"project": "squares"}, token)
        deadline = time.monotonic() + 30
        while job["status"] != "running":
            assert time.monotonic() < deadline, job
            time.sleep(0.05)
            job = call(f"{base}/api/jobs/{job['id']}", token=token)
        stop_server(server, signal.SIGKILL)
    finally:
        stop_server(server, signal.SIGKILL)
    server = start_server(home, secret=SECRET, port=port)
    try:
        token = call(f"{base}/api/auth/login", {"username": "adam", "password": PASSWORD})["token"]
        after = call(f"{base}/api/jobs/{job['id']}", token=token)
        assert after["status"] == "failed" and after["error"] == INTERRUPTED
        again = call(f"{base}/api/jobs/retrain", {"project": "squares"}, token)
        assert again["id"] != job["id"], "a new job can start after the interrupted one"
    finally:
        stop_server(server)
