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


def test_a_second_server_on_the_database_leaves_the_first_ones_job_alone(
    tmp_path: Path,
) -> None:
    """Starting, it used to fail every running job as interrupted (the first server's
    still training) and run a second retrain beside it: two models then wrote one file.
    Only the holder of the job runner's lock runs jobs; the other takes over when it stops."""
    home, port, base = _home_with_a_trainable_project(tmp_path)
    first = start_server(home, secret=SECRET, port=port)
    second_port = free_port()
    second_base = f"http://127.0.0.1:{second_port}"
    second = None
    try:
        token = call(f"{base}/api/auth/login", {"username": "adam", "password": PASSWORD})["token"]
        job: dict[str, Any] = call(f"{base}/api/jobs/retrain", {"project": "squares"}, token)
        deadline = time.monotonic() + 60
        while job["status"] == "queued":
            assert time.monotonic() < deadline, job
            time.sleep(0.05)
            job = call(f"{base}/api/jobs/{job['id']}", token=token)
        second = start_server(home, secret=SECRET, port=second_port)
        seen = call(f"{second_base}/api/jobs/{job['id']}", token=token)
        assert seen["status"] in ("running", "succeeded"), seen
        while job["status"] == "running":
            assert time.monotonic() < deadline + 60, job
            time.sleep(0.2)
            job = call(f"{base}/api/jobs/{job['id']}", token=token)
        assert job["status"] == "succeeded" and job["error"] is None, job
        stop_server(first)  # the second takes the jobs over
        queued = call(f"{second_base}/api/jobs/retrain", {"project": "squares"}, token)
        while queued["status"] in ("queued", "running"):
            assert time.monotonic() < deadline + 180, queued
            time.sleep(0.2)
            queued = call(f"{second_base}/api/jobs/{queued['id']}", token=token)
        assert queued["status"] == "succeeded", queued
    finally:
        stop_server(first)
        if second is not None:
            stop_server(second)


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
