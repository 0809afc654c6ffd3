"""Shared pieces of the web tests: a small synthetic project, people, a signed-in client."""

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from fastapi.testclient import TestClient

from medloop.annotation import plan_tasks
from medloop.ingest import encode_png
from medloop.store import assignments
from medloop.store import repository as repo
from medloop.types import LabelKind, Role, Split
from medloop.workflows import Workspace, accounts, annotate, record_decisions

PASSWORD = "correct horse battery"
CLASSES = ["normal", "pneumonia"]
PEOPLE = {
    "alice": Role.ANNOTATOR,
    "bob": Role.ANNOTATOR,
    "carol": Role.ANNOTATOR,
    "dora": Role.DOCTOR,
    "adam": Role.ADMIN,
}


@dataclass
class Site:
    ws: Workspace
    client: TestClient
    gold_items: dict[int, int]  # item id -> final label

    def token(self, username: str) -> str:
        response = self.client.post(
            "/api/auth/login", json={"username": username, "password": PASSWORD}
        )
        assert response.status_code == 200, response.text
        return str(response.json()["token"])

    def headers(self, username: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(username)}"}

    def hand(self, username: str, task_id: int) -> None:
        """Hand `task_id` to `username` as `GET /api/tasks/next` would, with a hold that
        has already expired (it keeps no place on the task)."""
        with self.ws.db.writing() as w:
            worker = repo.get_user(w, username=username).id
            held = assignments.hold_first(w, worker_id=worker, task_ids=[task_id], now=0, seconds=1)
            assert held == task_id


def build_project(ws: Workspace, *, n_train: int = 24, n_val: int = 6) -> dict[int, int]:
    """Project 'chest' with distinct random images; returns gold items (id -> final label)."""
    rng = np.random.default_rng(0)
    items = []
    for split, n in ((Split.TRAIN, n_train), (Split.VAL, n_val)):
        for row in range(n):
            image = rng.integers(0, 256, size=(8, 8), dtype=np.uint8)
            items.append(
                repo.NewItem(
                    source_ref=f"synthetic/{split.value}/{row}",
                    image_sha256=ws.blobs.put(encode_png(image)),
                    split=split.value,
                    reference_label=row % 2,
                )
            )
    with ws.db.session() as s:
        project = repo.create_project(s, name="chest", classes=CLASSES, n_channels=1)
        repo.add_items(s, project=project, items=items)
        ids = repo.items_frame(s, project_id=project.id).index.tolist()
        for name, role in PEOPLE.items():
            repo.create_user(
                s, username=name, role=role, password_hash=accounts.hash_password(PASSWORD)
            )
    gold = {int(ids[0]): 0, int(ids[1]): 1, int(ids[2]): 0, int(ids[3]): 1}
    record_decisions(ws, project="chest", decisions=pd.Series(gold), doctor="dora")
    return gold


def open_tasks(ws: Workspace, *, k: int = 8, redundancy: int = 2, gold_rate: float = 0.2) -> None:
    """Open tasks for the first `k` unlabelled training items plus gold questions, as
    `annotate.publish_tasks` does with the random strategy (without importing torch)."""
    with ws.db.session() as s:
        project = repo.get_project(s, name="chest")
        items = repo.items_frame(s, project_id=project.id)
        finals = repo.current_labels(s, project_id=project.id, kind=LabelKind.FINAL)
        train = [int(i) for i in items.index[items["split"] == Split.TRAIN]]
        gold = [i for i in train if i in finals.index]
        plans = plan_tasks(
            [i for i in train if i not in gold][:k],
            redundancy=redundancy,
            gold_item_ids=gold,
            gold_rate=gold_rate,
            seed=1,
        )
        repo.create_tasks(
            s,
            project_id=project.id,
            item_ids=[p.item_id for p in plans],
            required_answers=[annotate.GOLD_ANSWERS if p.is_gold else p.redundancy for p in plans],
            is_gold=[p.is_gold for p in plans],
        )


# --- a real server on loopback ------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def call(url: str, body: dict[str, Any] | None = None, token: str | None = None) -> Any:
    """A JSON request with urllib (no client library between the test and the server)."""
    request = urllib.request.Request(url, data=None if body is None else json.dumps(body).encode())
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read() or b"null")


SERVE = "from medloop.cli import main; main()"


def start_server(
    home: Path, *, secret: str, port: int, workers: int = 1
) -> subprocess.Popen[bytes]:
    """`medloop serve` over `home` (SQLite) on 127.0.0.1:`port`, once it answers health."""
    env = {**os.environ, "MEDLOOP_HOME": str(home), "MEDLOOP_SECRET_KEY": secret}
    env.pop("MEDLOOP_DATABASE_URL", None)
    server = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from medloop.cli import main; main()",
            "serve",
            "--port",
            str(port),
            "--workers",
            str(workers),
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


def stop_server(server: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    """Send `sig` unless the server has already exited; kill it if it lingers."""
    if server.poll() is None:
        server.send_signal(sig)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)
