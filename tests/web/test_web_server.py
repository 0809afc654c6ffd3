"""A real server on loopback: an acknowledged answer survives `kill -9`; idle
keep-alive connections outlive uvicorn's 5 s default."""

from __future__ import annotations

import http.client
import signal
import time
from pathlib import Path

from sqlalchemy import select
from web_support import (
    PASSWORD,
    build_project,
    call,
    free_port,
    open_tasks,
    start_server,
    stop_server,
)

from medloop.config import Settings
from medloop.store.models import Answer
from medloop.workflows import Workspace


def test_acknowledged_answer_survives_kill_9(tmp_path: Path) -> None:
    home = tmp_path / "home"
    settings = Settings(home=home, secret_key="server-test-secret")
    ws = Workspace.open(settings)
    build_project(ws)
    open_tasks(ws)
    ws.close()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = start_server(home, secret="server-test-secret", port=port)
    try:
        token = call(f"{base}/api/auth/login", {"username": "alice", "password": PASSWORD})["token"]
        task = call(f"{base}/api/tasks/next", token=token)
        ack = call(f"{base}/api/tasks/{task['task_id']}/answer", {"label": "pneumonia"}, token)
        assert_keeps_idle_connection(port, idle_seconds=6.0)
        stop_server(server, signal.SIGKILL)
    finally:
        stop_server(server)
    ws = Workspace.open(settings)
    try:
        with ws.db.session() as s:
            stored = s.get(Answer, ack["answer_id"])
            assert stored is not None
            assert (stored.task_id, stored.label) == (task["task_id"], 1)
            assert len(s.scalars(select(Answer).where(Answer.source == "crowd")).all()) == 1
    finally:
        ws.close()


def assert_keeps_idle_connection(port: int, *, idle_seconds: float) -> None:
    """A second request on one connection after `idle_seconds` of silence still works
    (http.client does not reconnect: a closed connection would raise)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        for pause in (idle_seconds, 0.0):
            connection.request("GET", "/api/health")
            response = connection.getresponse()
            assert response.status == 200
            response.read()
            time.sleep(pause)
    finally:
        connection.close()
