"""A real server on loopback: an acknowledged answer survives `kill -9`."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from sqlalchemy import select
from web_support import PASSWORD, build_project, open_tasks

from medloop.config import Settings
from medloop.store.models import Answer
from medloop.workflows import Workspace


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def call(url: str, body: dict[str, Any] | None = None, token: str | None = None) -> Any:
    request = urllib.request.Request(url, data=None if body is None else json.dumps(body).encode())
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read() or b"null")


def test_acknowledged_answer_survives_kill_9(tmp_path: Path) -> None:
    home = tmp_path / "home"
    settings = Settings(home=home, secret_key="server-test-secret")
    ws = Workspace.open(settings)
    build_project(ws)
    open_tasks(ws)
    ws.close()
    port = free_port()
    env = {**os.environ, "MEDLOOP_HOME": str(home), "MEDLOOP_SECRET_KEY": "server-test-secret"}
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
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                assert call(f"{base}/api/health")["status"] == "ok"
                break
            except (urllib.error.URLError, ConnectionError):
                assert server.poll() is None, "the server exited"
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.2)
        token = call(f"{base}/api/auth/login", {"username": "alice", "password": PASSWORD})["token"]
        task = call(f"{base}/api/tasks/next", token=token)
        ack = call(f"{base}/api/tasks/{task['task_id']}/answer", {"label": "pneumonia"}, token)
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=10)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(timeout=10)
    ws = Workspace.open(settings)
    try:
        with ws.db.session() as s:
            stored = s.get(Answer, ack["answer_id"])
            assert stored is not None
            assert (stored.task_id, stored.label) == (task["task_id"], 1)
            assert len(s.scalars(select(Answer).where(Answer.source == "crowd")).all()) == 1
    finally:
        ws.close()
