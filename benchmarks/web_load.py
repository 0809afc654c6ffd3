"""Load on the web API: simulated annotators fetch their next task and answer it.

Starts `medloop serve [--workers N]` on 127.0.0.1 over a fresh home (SQLite, or a
throw-away PostgreSQL database with `--postgres URL`; synthetic 28x28 images,
published tasks with redundancy 3 and 10% gold questions), signs in `--annotators`
people and lets each loop for `--seconds` (starting at a random moment within the first
think time): GET /api/tasks/next, think, POST the answer.
Prints one JSON object: requests, errors, answers, latency percentiles (ms) of next-task
and answer, the tasks that got more answers than they asked for, and the load average.

    python benchmarks/web_load.py --seconds 60 --annotators 50 --think 1.0
    python benchmarks/web_load.py --seconds 30 --think 0      # saturation: no think time
    python benchmarks/web_load.py --workers 2 --postgres postgresql+psycopg://postgres@127.0.0.1/test
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from medloop.cli.web import settings_environment
from medloop.config import Settings
from medloop.ingest import encode_png
from medloop.store import repository as repo
from medloop.store.models import Answer, Task
from medloop.types import Role, Split
from medloop.workflows import Workspace, accounts, annotate, record_decisions

PASSWORD = "load test password"
CLASSES = ["normal", "pneumonia"]
SECRET = "web-load-benchmark"


def build_home(settings: Settings, *, items: int, annotators: int, gold: int) -> int:
    """A project of `items` distinct synthetic training images, people, `gold` doctor-
    labelled items and every other item published; returns the number of open tasks."""
    ws = Workspace.open(settings)
    try:
        rng = np.random.default_rng(0)
        new = [
            repo.NewItem(
                source_ref=f"synthetic/{i}",
                image_sha256=ws.blobs.put(
                    encode_png(rng.integers(0, 256, size=(28, 28), dtype=np.uint8))
                ),
                split=Split.TRAIN.value,
                reference_label=i % 2,
            )
            for i in range(items)
        ]
        password_hash = accounts.hash_password(PASSWORD)
        with ws.db.session() as s:
            project = repo.create_project(s, name="load", classes=CLASSES, n_channels=1)
            repo.add_items(s, project=project, items=new)
            ids = repo.items_frame(s, project_id=project.id).index.tolist()
            repo.create_user(s, username="doctor", role=Role.DOCTOR, password_hash=password_hash)
            for n in range(annotators):
                repo.create_user(
                    s, username=f"ann{n:03d}", role=Role.ANNOTATOR, password_hash=password_hash
                )
        finals = pd.Series([i % 2 for i in range(gold)], index=ids[:gold])
        record_decisions(ws, project="load", decisions=finals, doctor="doctor")
        published = annotate.publish_tasks(
            ws, project="load", k=items, strategy="random", redundancy=3, gold_rate=0.1
        )
        return published.tasks
    finally:
        ws.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def postgres_database(server_url: str) -> Iterator[str]:
    """A fresh PostgreSQL database on `server_url`'s server, dropped afterwards."""
    name = f"medloop_load_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def start_server(settings: Settings, port: int, log: Path, workers: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDLOOP_")}
    env.update(settings_environment(settings))
    command = [sys.executable, "-c", "from medloop.cli import main; main()"]
    return subprocess.Popen(
        [*command, "serve", "--port", str(port), "--workers", str(workers)],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


async def wait_healthy(client: httpx.AsyncClient, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while True:
        try:
            if (await client.get("/api/health")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the server did not start")
        await asyncio.sleep(0.2)


class Stats:
    def __init__(self) -> None:
        self.latency: dict[str, list[float]] = {"next": [], "answer": []}
        self.errors: dict[str, int] = {}
        self.answers = 0
        self.no_task = 0

    def error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1


async def sign_in(client: httpx.AsyncClient, name: str) -> dict[str, str]:
    login = await client.post("/api/auth/login", json={"username": name, "password": PASSWORD})
    login.raise_for_status()
    return {"Authorization": f"Bearer {login.json()['token']}"}


async def annotator(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    stats: Stats,
    *,
    until: float,
    think: float,
    seed: int,
) -> None:
    rng = random.Random(seed)
    await asyncio.sleep(rng.uniform(0, think))  # people do not all start in the same instant
    while time.monotonic() < until:
        start = time.perf_counter()
        try:
            task = await client.get("/api/tasks/next", headers=headers)
        except httpx.HTTPError as error:
            stats.error(f"next: {type(error).__name__}")
            continue
        stats.latency["next"].append(time.perf_counter() - start)
        if task.status_code == 204:
            stats.no_task += 1
            await asyncio.sleep(1.0)
            continue
        if task.status_code != 200:
            stats.error(f"next: {task.status_code}")
            continue
        if think:
            await asyncio.sleep(rng.uniform(0.5 * think, 1.5 * think))
        body = {"label": rng.choice(CLASSES)}
        start = time.perf_counter()
        try:
            answer = await client.post(
                f"/api/tasks/{task.json()['task_id']}/answer", headers=headers, json=body
            )
        except httpx.HTTPError as error:
            stats.error(f"answer: {type(error).__name__}")
            continue
        stats.latency["answer"].append(time.perf_counter() - start)
        if answer.status_code == 201:
            stats.answers += 1
        else:
            stats.error(f"answer: {answer.status_code}")


def percentiles(seconds: list[float]) -> dict[str, float | None]:
    if not seconds:
        return {"p50": None, "p95": None, "p99": None, "max": None}
    ms = np.asarray(seconds) * 1000
    return {
        "p50": round(float(np.percentile(ms, 50)), 1),
        "p95": round(float(np.percentile(ms, 95)), 1),
        "p99": round(float(np.percentile(ms, 99)), 1),
        "max": round(float(ms.max()), 1),
    }


def over_answered(settings: Settings) -> int:
    """Ordinary tasks that got more answers than their redundancy asked for."""
    ws = Workspace.open(settings)
    try:
        with ws.db.session() as s:
            counts = (
                select(Answer.task_id, func.count(Answer.id).label("n"))
                .where(Answer.source == "crowd")
                .group_by(Answer.task_id)
                .subquery()
            )
            query = (
                select(func.count())
                .select_from(Task)
                .join(counts, counts.c.task_id == Task.id)
                .where(Task.is_gold.is_(False), counts.c.n > Task.required_answers)
            )
            return int(s.scalar(query) or 0)
    finally:
        ws.close()


async def run(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    tasks = build_home(settings, items=args.items, annotators=args.annotators, gold=args.gold)
    port = free_port()
    server = start_server(settings, port, settings.home / "server.log", args.workers)
    limits = httpx.Limits(max_connections=args.annotators + 5)
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=30
        ) as client:
            await wait_healthy(client, server)
            people = [f"ann{n:03d}" for n in range(args.annotators)]
            signed_in = [await sign_in(client, name) for name in people]  # Argon2: not timed
            stats = Stats()
            started = time.monotonic()
            until = started + args.seconds
            await asyncio.gather(
                *(
                    annotator(client, headers, stats, until=until, think=args.think, seed=n)
                    for n, headers in enumerate(signed_in)
                )
            )
            elapsed = time.monotonic() - started
            load = os.getloadavg()
    finally:
        server.terminate()
        server.wait(timeout=30)
    requests = len(stats.latency["next"]) + len(stats.latency["answer"])
    return {
        "benchmark": "web_load",
        "annotators": args.annotators,
        "workers": args.workers,
        "database": "postgresql" if settings.database_url else "sqlite",
        "seconds": args.seconds,
        "think_s": args.think,
        "published_tasks": tasks,
        "requests": requests,
        "errors": sum(stats.errors.values()),
        "error_kinds": stats.errors,
        "answers": stats.answers,
        "no_task_replies": stats.no_task,
        "requests_per_s": round(requests / elapsed, 1),
        "next_task_ms": percentiles(stats.latency["next"]),
        "answer_ms": percentiles(stats.latency["answer"]),
        "all_ms": percentiles(stats.latency["next"] + stats.latency["answer"]),
        "over_answered_tasks": over_answered(settings),
        "loadavg_1_5_15": [round(x, 2) for x in load],
        "cpus": os.cpu_count(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to load")
    parser.add_argument("--annotators", type=int, default=50)
    parser.add_argument("--think", type=float, default=1.0, help="mean think time (s); 0: none")
    parser.add_argument("--items", type=int, default=4000, help="images (all published)")
    parser.add_argument("--gold", type=int, default=100, help="doctor-labelled gold items")
    parser.add_argument("--home", type=Path, help="keep the home here (default: temporary)")
    parser.add_argument("--workers", type=int, default=1, help="server processes")
    parser.add_argument("--postgres", help="PostgreSQL server URL (a fresh database on it)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="medloop-load-") as tmp:
        home = args.home or Path(tmp) / "home"
        if args.postgres:
            with postgres_database(args.postgres) as url:
                settings = Settings(home=home, secret_key=SECRET, database_url=url)
                result = asyncio.run(run(args, settings))
        else:
            result = asyncio.run(run(args, Settings(home=home, secret_key=SECRET)))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
