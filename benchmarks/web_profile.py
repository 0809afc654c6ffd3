"""Server CPU per annotator cycle: GET /api/tasks/next then POST its answer, in process.

Builds the same fresh SQLite home as `web_load.py` (its `build_home`), signs in
`--annotators` people and runs `--cycles` next-task + answer cycles through the ASGI app
(httpx's ASGITransport, no sockets), the people taking turns, one request at a time.
Each of `--repeats` repetitions measures the process CPU time (all threads) spent inside
the app per next-task and per answer, so the client's own work is left out; the JSON
line carries the medians. `--profile` prints a cProfile top-20 (own time) and medloop's
top-40 (cumulative) of one more repetition to stderr, with sync handlers run on the
event loop's thread so that the profiler sees them. `--home DIR` keeps the built home
and starts later runs from a copy of it (A/B comparisons start from the same state).

    python benchmarks/web_profile.py --cycles 300 --repeats 5
    python benchmarks/web_profile.py --cycles 300 --profile --home /tmp/profile-home
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio.to_thread
import httpx
from web_load import CLASSES, PASSWORD, SECRET, build_home

from medloop.config import Settings
from medloop.web.app import create_app


class CpuMeter:
    """An ASGI wrapper that adds up the process CPU time spent in each request, by method."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.spent = {"GET": 0.0, "POST": 0.0}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        before = time.process_time()
        try:
            await self.app(scope, receive, send)
        finally:
            if scope["type"] == "http":
                self.spent[scope["method"]] += time.process_time() - before


async def cycles(
    client: httpx.AsyncClient, people: list[dict[str, str]], n: int, start: int
) -> None:
    for k in range(start, start + n):
        headers = people[k % len(people)]
        task = await client.get("/api/tasks/next", headers=headers)
        if task.status_code != 200:
            raise RuntimeError(f"next task: {task.status_code} {task.text}")
        url = f"/api/tasks/{task.json()['task_id']}/answer"
        answer = await client.post(url, headers=headers, json={"label": CLASSES[k % 2]})
        if answer.status_code != 201:
            raise RuntimeError(f"answer: {answer.status_code} {answer.text}")


async def _inline(func: Callable[..., Any], *args: Any, **_: Any) -> Any:
    return func(*args)


async def measure(args: argparse.Namespace, home: Path) -> dict[str, Any]:
    meter = CpuMeter(create_app(Settings(home=home, secret_key=SECRET)))
    transport = httpx.ASGITransport(app=meter)
    async with httpx.AsyncClient(transport=transport, base_url="http://medloop") as client:
        people = []
        for n in range(args.annotators):
            body = {"username": f"ann{n:03d}", "password": PASSWORD}
            login = await client.post("/api/auth/login", json=body)
            login.raise_for_status()
            people.append({"Authorization": f"Bearer {login.json()['token']}"})
        await cycles(client, people, args.warmup, 0)
        done = args.warmup
        per_next, per_answer = [], []
        for _ in range(args.repeats):
            meter.spent = {"GET": 0.0, "POST": 0.0}
            await cycles(client, people, args.cycles, done)
            done += args.cycles
            per_next.append(1000 * meter.spent["GET"] / args.cycles)
            per_answer.append(1000 * meter.spent["POST"] / args.cycles)
        if args.profile:
            original = anyio.to_thread.run_sync
            anyio.to_thread.run_sync = _inline  # type: ignore[assignment]
            profiler = cProfile.Profile()
            profiler.enable()
            try:
                await cycles(client, people, args.cycles, done)
            finally:
                profiler.disable()
                anyio.to_thread.run_sync = original
            stats = pstats.Stats(profiler, stream=sys.stderr)
            stats.sort_stats("tottime").print_stats(20)
            stats.sort_stats("cumulative").print_stats("medloop", 40)
    per_cycle = [a + b for a, b in zip(per_next, per_answer, strict=True)]
    return {
        "benchmark": "web_profile",
        "annotators": args.annotators,
        "cycles": args.cycles,
        "repeats": args.repeats,
        "cpu_ms_per_cycle": round(statistics.median(per_cycle), 2),
        "cpu_ms_next_task": round(statistics.median(per_next), 2),
        "cpu_ms_answer": round(statistics.median(per_answer), 2),
        "cpu_ms_per_cycle_runs": [round(x, 2) for x in per_cycle],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=300, help="cycles per repetition")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=50, help="cycles before measuring")
    parser.add_argument("--annotators", type=int, default=50, help="people taking turns")
    parser.add_argument("--items", type=int, default=4000, help="images (all published)")
    parser.add_argument("--gold", type=int, default=100, help="doctor-labelled gold items")
    parser.add_argument(
        "--home", type=Path, help="keep the built home here and start from a copy of it next time"
    )
    parser.add_argument("--profile", action="store_true", help="cProfile one more repetition")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="medloop-profile-") as tmp:
        home = Path(tmp) / "home"
        if args.home is None or not args.home.exists():
            build_home(home, items=args.items, annotators=args.annotators, gold=args.gold)
            if args.home is not None:
                shutil.copytree(home, args.home)
        else:
            shutil.copytree(args.home, home)  # every run starts from the same fresh home
        result = asyncio.run(measure(args, home))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
