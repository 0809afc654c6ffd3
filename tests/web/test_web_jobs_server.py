"""A real server: retraining runs in its background worker; `kill -9` mid-job leaves the
job marked failed (interrupted) after the restart, and the page still shows it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
from pathlib import Path
from typing import Any

from test_web_dashboard_workflows import _trainable_project
from test_web_server import call, free_port
from web_support import PASSWORD

from medloop.config import Settings
from medloop.types import Role
from medloop.workflows import Workspace, accounts
from medloop.workflows.jobs import INTERRUPTED


def start(home: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "MEDLOOP_HOME": str(home), "MEDLOOP_SECRET_KEY": "jobs-test-secret"}
    env.pop("MEDLOOP_DATABASE_URL", None)
    server = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from medloop.cli import main; main()",
            "serve",
            "--port",
            str(port),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 90
    while True:
        try:
            call(f"http://127.0.0.1:{port}/api/health")
            return server
        except (urllib.error.URLError, ConnectionError):
            assert server.poll() is None, "the server exited"
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.2)


def stop(server: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
    if server.poll() is None:
        server.send_signal(sig)
        server.wait(timeout=30)


def test_a_job_killed_with_its_server_is_failed_after_restart(tmp_path: Path) -> None:
    home = tmp_path / "home"
    ws = Workspace.open(Settings(home=home, secret_key="jobs-test-secret"))
    _trainable_project(ws)
    accounts.add_user(ws, username="adam", role=Role.ADMIN, password=PASSWORD)
    ws.close()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = start(home, port)
    try:
        token = call(f"{base}/api/auth/login", {"username": "adam", "password": PASSWORD})["token"]
        job: dict[str, Any] = call(f"{base}/api/jobs/retrain", {"project": "squares"}, token)
        deadline = time.monotonic() + 30
        while job["status"] != "running":
            assert time.monotonic() < deadline, job
            time.sleep(0.05)
            job = call(f"{base}/api/jobs/{job['id']}", token=token)
        stop(server)
    finally:
        stop(server)
    server = start(home, port)
    try:
        token = call(f"{base}/api/auth/login", {"username": "adam", "password": PASSWORD})["token"]
        after = call(f"{base}/api/jobs/{job['id']}", token=token)
        assert after["status"] == "failed" and after["error"] == INTERRUPTED
        again = call(f"{base}/api/jobs/retrain", {"project": "squares"}, token)
        assert again["id"] != job["id"], "a new job can start after the interrupted one"
    finally:
        stop(server, signal.SIGTERM)
