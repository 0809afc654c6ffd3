"""The doctor's patient list on GBSG2 (686 patients): time and SQL statements per request.

Builds a SQLite home with GBSG2 imported (scikit-survival's copy), a survival model
(`--method`, no bootstrap refits) and a linear T-learner effects model, a stored
recommendation for each of the first `--recommended` patients (pseudonym order), and
then `--changed` of them with a corrected value (their recommendation is outdated).
Then, through the ASGI app in process, a signed-in doctor requests the first page of
`/patients` (200 patients, pseudonym and risk order) and `/api/patients` with all 686;
each request runs `--repeats` times after one warm-up. The JSON line carries per
request the median wall time, the least process CPU time (all threads; ms: on a
shared machine, the run other processes disturbed least) and the SQL statements one
request ran. `--home DIR`
keeps the built home and starts later runs from a copy of it (A/B comparisons start
from the same state).

    python benchmarks/patient_list.py --repeats 7 --home /tmp/patient-list-home
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd
from fastapi.testclient import TestClient
from sqlalchemy import event

from medloop.config import Settings
from medloop.store import patients as prepo
from medloop.store import repository as repo
from medloop.types import Role
from medloop.web.app import create_app
from medloop.workflows import Workspace, accounts
from medloop.workflows import precision as wf
from medloop.workflows.demo import GBSG2_UNITS, gbsg2_table

SECRET = "patient-list-benchmark"
PASSWORD = "correct horse battery"
COHORT = "gbsg2"


def build_home(home: Path, *, method: str, recommended: int, changed: int) -> None:
    ws = Workspace.open(Settings(home=home, secret_key=SECRET))
    try:
        path = home / "gbsg2.csv"
        gbsg2_table().to_csv(path, index=False)
        wf.import_patients_table(
            ws, project=COHORT, path=path, id_column="patient_id", units=GBSG2_UNITS
        )
        outcome = {"project": COHORT, "event_column": "event", "time_column": "time"}
        wf.train_risk(ws, **outcome, exclude=["hormone_therapy"], method=method, n_bootstrap=0)
        wf.train_effects(
            ws, **outcome, treatment_column="hormone_therapy", base="linear", n_bootstrap=0
        )
        accounts.add_user(ws, username="dora", role=Role.DOCTOR, password=PASSWORD)
        rows = wf.list_patients(ws, project=COHORT, viewer="setup", limit=recommended)
        patients = [row["patient"] for row in rows]
        for patient in patients:
            wf.recommend(ws, project=COHORT, patient=patient)
        with ws.db.session() as s:
            project = repo.get_project(s, name=COHORT)
            frame = prepo.features_frame(s, project_id=project.id, pseudonyms=patients[:changed])
            later = pd.DataFrame({"age": frame["age"] + 1}, index=frame.index)
            prepo.upsert_features(s, project_id=project.id, frame=later)
    finally:
        ws.close()


def measure(home: Path, repeats: int) -> dict[str, Any]:
    app = create_app(Settings(home=home, secret_key=SECRET))
    with TestClient(app) as client:
        login = client.post("/api/auth/login", json={"username": "dora", "password": PASSWORD})
        login.raise_for_status()
        headers = {"Authorization": f"Bearer {login.json()['token']}"}
        ws: Workspace = app.state.ws
        statements = [0]

        def count(*_: Any) -> None:
            statements[0] += 1

        event.listen(ws.db.engine, "before_cursor_execute", count)
        requests = {
            "page_pseudonym": ("/patients", {"project": COHORT}),
            "page_risk": ("/patients", {"project": COHORT, "order": "risk"}),
            "api_all": ("/api/patients", {"project": COHORT, "limit": 1000}),
        }
        result: dict[str, Any] = {}
        for name, (url, params) in requests.items():
            client.get(url, params=params, headers=headers).raise_for_status()  # warm-up
            times, cpu = [], []
            for _ in range(repeats):
                statements[0] = 0
                start, start_cpu = time.perf_counter(), time.process_time()
                response = client.get(url, params=params, headers=headers)
                times.append(1000 * (time.perf_counter() - start))
                cpu.append(1000 * (time.process_time() - start_cpu))
                response.raise_for_status()
            result[f"{name}_ms"] = round(statistics.median(times), 1)
            result[f"{name}_cpu_ms"] = round(min(cpu), 1)  # the least disturbed run
            result[f"{name}_sql"] = statements[0]
            if name == "api_all":
                rows = response.json()
                result["api_rows"] = len(rows)
                result["api_outdated"] = sum(bool(r.get("outdated")) for r in rows)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--method", default="cox", help="survival model (cox, rsf, ...)")
    parser.add_argument("--recommended", type=int, default=686, help="patients recommended")
    parser.add_argument("--changed", type=int, default=50, help="of them corrected since")
    parser.add_argument(
        "--home", type=Path, help="keep the built home here and start from a copy of it next time"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="medloop-patients-") as tmp:
        home = Path(tmp) / "home"
        if args.home is None or not args.home.exists():
            home.mkdir()
            build_home(home, method=args.method, recommended=args.recommended, changed=args.changed)
            if args.home is not None:
                shutil.copytree(home, args.home)
        else:
            shutil.copytree(args.home, home)  # every run starts from the same fresh home
        result = {
            "benchmark": "patient_list",
            "repeats": args.repeats,
            **measure(home, args.repeats),
        }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
