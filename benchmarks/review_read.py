"""What a review page and the dashboard cost to read on a large project, in process.

Builds `web_load.build_home`'s SQLite project with `--items` items (3 lay answers
requested each), answers every task with 3 of 30 simulated people, then times
`repository.answers_frame` (the project's crowd answers as a frame) and
`review.review_detail` (one review page: the item, its answers, the crowd model's
reliability estimates) `--repeats` times each and prints the medians as one JSON line:
`review_detail_s` as a doctor paging through an unchanged project meets it (the
annotators' reliability kept in the workspace), `review_detail_cold_s` with that
forgotten before each read (the first view after the project gained an answer or label);
`dashboard_s` and `dashboard_cold_s` the same for the project's dashboard
(`dashboard.project_dashboard`: progress, answers per day, annotators, consensus on gold).
`*_answered_s` time the view just after one more lay answer as the server makes it
(``fresh=False``: the kept figures at once, recomputed in the background, awaited
untimed with `Workspace.settle` before the next answer), `*_answered_fresh_s` the same
view computed in the call (``fresh=True``, the library's default, and what every server
view after an answer cost before).

    python benchmarks/review_read.py --items 20000 --repeats 7
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from web_load import SECRET, build_home

from medloop.config import Settings
from medloop.store import repository as repo
from medloop.types import LabelSource, Role
from medloop.workflows import Workspace, dashboard, review

PEOPLE = 30


def answer_every_task(ws: Workspace, *, seed: int = 0) -> int:
    """Three answers from three different people for every task of the project."""
    rng = np.random.default_rng(seed)
    with ws.db.session() as s:
        project = repo.get_project(s, name="load")
        tasks = repo.tasks_frame(s, project_id=project.id)
        people = [repo.get_user(s, username=f"ann{n:03d}").id for n in range(PEOPLE)]
        task_ids, workers = [], []
        for task in tasks["task_id"]:
            for person in rng.choice(people, 3, replace=False):
                task_ids.append(int(task))
                workers.append(int(person))
        labels = rng.integers(0, 2, len(task_ids)).tolist()
        repo.add_answers(
            s, task_ids=task_ids, worker_ids=workers, labels=labels, source=LabelSource.CROWD
        )
    return len(task_ids)


def one_more_answer(ws: Workspace, *, task_number: int) -> None:
    """A late annotator (never an answerer before) answers the project's task number
    `task_number` (in id order): the project gains one answer."""
    with ws.db.session() as s:
        project = repo.get_project(s, name="load")
        task = int(repo.tasks_frame(s, project_id=project.id)["task_id"].iloc[task_number])
        late = repo.get_user(s, username="late").id
        repo.add_answers(
            s, task_ids=[task], worker_ids=[late], labels=[1], source=LabelSource.CROWD
        )


def median_seconds(call: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return round(statistics.median(times), 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        settings = Settings(home=Path(home), secret_key=SECRET)
        build_home(settings, items=args.items, annotators=PEOPLE, gold=50)
        ws = Workspace.open(settings)
        try:
            answers = answer_every_task(ws)
            with ws.db.session() as s:
                repo.create_user(s, username="late", role=Role.ANNOTATOR, password_hash="-")
            answered = iter(range(10_000))
            with ws.db.session() as s:
                project_id = repo.get_project(s, name="load").id
                item = int(repo.tasks_frame(s, project_id=project_id)["item"].iloc[100])

            def read_cold() -> object:
                ws.derived.clear()
                return review.review_detail(ws, item_id=item)

            def dashboard_cold() -> object:
                ws.derived.clear()
                return dashboard.project_dashboard(ws, project="load")

            def timed_after_answers(view: Callable[[], object]) -> float:
                """Median of `view` just after an answer, the answer and settling untimed."""
                times = []
                for _ in range(args.repeats):
                    ws.settle()
                    one_more_answer(ws, task_number=next(answered))
                    started = time.perf_counter()
                    view()
                    times.append(time.perf_counter() - started)
                ws.settle()
                return round(statistics.median(times), 3)

            def read_answers() -> object:
                with ws.db.session() as s:
                    return repo.answers_frame(s, project_id=project_id, sources=[LabelSource.CROWD])

            result = {
                "items": args.items,
                "answers": answers,
                "answers_frame_s": median_seconds(read_answers, args.repeats),
                "review_detail_s": median_seconds(
                    lambda: review.review_detail(ws, item_id=item), args.repeats
                ),
                "review_detail_cold_s": median_seconds(read_cold, args.repeats),
                "dashboard_s": median_seconds(
                    lambda: dashboard.project_dashboard(ws, project="load"), args.repeats
                ),
                "dashboard_cold_s": median_seconds(dashboard_cold, args.repeats),
                "review_detail_answered_s": timed_after_answers(
                    lambda: review.review_detail(ws, item_id=item, fresh=False)
                ),
                "review_detail_answered_fresh_s": timed_after_answers(
                    lambda: review.review_detail(ws, item_id=item, fresh=True)
                ),
                "dashboard_answered_s": timed_after_answers(
                    lambda: dashboard.project_dashboard(ws, project="load", fresh=False)
                ),
                "dashboard_answered_fresh_s": timed_after_answers(
                    lambda: dashboard.project_dashboard(ws, project="load", fresh=True)
                ),
            }
        finally:
            ws.close()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
