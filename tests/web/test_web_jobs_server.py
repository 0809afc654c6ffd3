"""A real server: retraining runs in its background worker; `kill -9` mid-job leaves the
job marked failed (interrupted) after the restart, and the page still shows it."""

from __future__ import annotations

import os
import signal
import time
import urllib.error
from pathlib import Path
from typing import Any

import pytest
from test_web_dashboard_workflows import _trainable_project
from web_support import PASSWORD, call, free_port, start_server, stop_server

from medloop.config import Settings
from medloop.types import Role
from medloop.workflows import Workspace, accounts
from medloop.workflows.jobs import INTERRUPTED

SECRET = "jobs-test-secret"


def _home_with_a_trainable_project(tmp_path: Path) -> tuple[Path, int, str]:
    """A home with project 'squares' and admin 'adam'; a free port and its base URL."""
    home = tmp_path / "home"
    ws = Workspace.open(Settings(home=home, secret_key=SECRET))
    _trainable_project(ws)
    accounts.add_user(ws, username="adam", role=Role.ADMIN, password=PASSWORD)
    ws.close()
    port = free_port()
    return home, port, f"http://127.0.0.1:{port}"


def test_a_job_killed_with_its_server_is_failed_after_restart(tmp_path: Path) -> None:
    home, port, base = _home_with_a_trainable_project(tmp_path)
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


def _children(pid: int) -> list[int]:
    """The server worker processes under `pid` (not multiprocessing's resource tracker)."""
    found = []
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        try:
            command = Path(f"/proc/{child}/cmdline").read_bytes()
        except FileNotFoundError:  # it just exited
            continue
        if b"spawn_main" in command:
            found.append(int(child))
    return found


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads /proc (Linux)")
def test_several_server_processes_answer_and_one_runs_the_jobs(tmp_path: Path) -> None:
    """`medloop serve --workers 2`: two processes serve requests, the main one runs the
    retrain job; a worker that dies is replaced without failing the running job (a worker
    never marks jobs interrupted), and SIGTERM stops them all."""
    home, port, base = _home_with_a_trainable_project(tmp_path)
    server = start_server(home, secret=SECRET, port=port, workers=2)
    try:
        workers = _children(server.pid)
        assert len(workers) == 2
        token = call(f"{base}/api/auth/login", {"username": "adam", "password": PASSWORD})["token"]
        job: dict[str, Any] = call(f"{base}/api/jobs/retrain", {"project": "squares"}, token)
        deadline = time.monotonic() + 120
        while job["status"] == "queued":
            assert time.monotonic() < deadline, job
            time.sleep(0.05)
            job = call(f"{base}/api/jobs/{job['id']}", token=token)
        os.kill(workers[0], signal.SIGKILL)
        while set(_children(server.pid)) & {workers[0]} or len(_children(server.pid)) < 2:
            assert time.monotonic() < deadline, "the dead worker was not replaced"
            time.sleep(0.1)
        while job["status"] in ("queued", "running"):
            assert time.monotonic() < deadline, job
            time.sleep(0.2)
            job = call(f"{base}/api/jobs/{job['id']}", token=token)
        assert job["status"] == "succeeded", job
        assert [j["id"] for j in call(f"{base}/api/jobs", token=token)] == [job["id"]]
        workers = _children(server.pid)
    finally:
        stop_server(server)
    assert server.returncode == 0, "SIGTERM stops the server cleanly (it was not killed)"
    assert not [w for w in workers if Path(f"/proc/{w}").exists()], "no worker outlives it"
    with pytest.raises(urllib.error.URLError):
        call(f"{base}/api/health")
