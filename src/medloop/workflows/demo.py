"""The demo a new user meets: a fresh home with real data, people, history and open work.

`prepare_demo` is what `medloop demo` runs before it serves the web platform:

1. a fresh home (an earlier demo home is replaced; a folder that is not a medloop home
   is refused, never deleted);
2. PneumoniaMNIST ingested from MEDLOOP_DATA_DIR, else the verified download (a subset
   with `limit`);
3. a short loop with a simulated lay crowd and a simulated doctor, so the dashboard has
   answers, annotators with reliability, model versions and a learning curve, and the
   review queue has items with crowd answers and model predictions;
4. one account per role (admin, doctor, annotator) with a generated password;
5. open labelling tasks for people, with gold questions (an annotator gets feedback on
   those), picked by the newest model's uncertainty;
6. a patient cohort for the precision pages: GBSG2 (686 breast-cancer patients of a
   German trial, bundled with scikit-survival), with a survival risk model and a
   hormone-therapy effect model.
"""

from __future__ import annotations

import logging
import shutil
import sqlite3
import tempfile
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from medloop import workflows
from medloop.config import Settings
from medloop.exceptions import ConflictError
from medloop.types import Role
from medloop.workflows.progress import Progress, no_progress

if TYPE_CHECKING:  # the demo's stages are imported when it runs: `medloop --help` stays fast
    from medloop.workflows.annotate import PublishedRound
    from medloop.workflows.ingest import IngestSummary
    from medloop.workflows.loop import RoundReport
    from medloop.workflows.precision import PatientImport
    from medloop.workflows.workspace import Workspace

logger = logging.getLogger(__name__)

DATASET = "pneumoniamnist"
DB_FILE = "medloop.db"
COHORT = "gbsg2-breast-cancer"
#: What a doctor finds at /patients when the demo has its cohort.
PATIENTS_TODO = "a breast-cancer cohort: open a patient, compute risk and treatment benefit"


@dataclass(frozen=True)
class DemoRole:
    """A demo account's role, where it starts in the web, and what to do there."""

    username: str
    role: Role
    page: str
    todo: str


DEMO_ROLES = (
    DemoRole(
        "demo-annotator",
        Role.ANNOTATOR,
        "/annotate",
        "label chest X-rays (keys 1, 2); some are gold questions that tell you the answer",
    ),
    DemoRole(
        "demo-doctor",
        Role.DOCTOR,
        "/review",
        "open an item the crowd and the model doubt, see their answers and the model's "
        "Grad-CAM, accept or correct it; /dashboard shows progress and retrains the model",
    ),
    DemoRole(
        "demo-admin",
        Role.ADMIN,
        "/audit",
        "who did what, when (every answer, decision and image read); plus all a doctor sees",
    ),
)


@dataclass(frozen=True)
class DemoOptions:
    """How big the demo is. The defaults prepare in a couple of minutes on 2 CPU cores."""

    limit: int | None = None
    rounds: int = 2
    per_round: int = 200
    doctor_budget: int = 30
    open_tasks: int = 60
    redundancy: int = 3
    gold_rate: float = 0.15
    max_epochs: int | None = None
    patients: bool = True
    seed: int = 0


@dataclass(frozen=True)
class DemoAccount:
    username: str
    role: Role
    password: str
    page: str
    todo: str


@dataclass(frozen=True)
class DemoResult:
    home: Path
    project: str
    ingest: IngestSummary
    rounds: list[RoundReport]
    accounts: list[DemoAccount]
    published: PublishedRound
    learning_curve: Path | None = None
    cohort: PatientImport | None = None


def demo_settings(base: Settings, *, home: Path | None = None) -> Settings:
    """Settings of the demo home: `home` (default MEDLOOP_HOME/demo) with its own SQLite
    database, whatever MEDLOOP_DATABASE_URL says; data dir and secret from `base`."""
    return Settings(
        home=home if home is not None else base.home / "demo",
        database_url=None,
        data_dir=base.data_dir,
        secret_key=base.secret_key,
    )


#: The file that marks a folder as a demo home, which the next demo may delete.
DEMO_MARKER = ".medloop-demo"


def reset_home(home: Path) -> None:
    """Delete an earlier demo home; refuse any other non-empty folder, a real medloop home
    above all (its patients, labels and models are not the demo's to delete)."""
    if not home.exists():
        return
    if home.is_dir() and (not any(home.iterdir()) or _is_demo_home(home)):
        shutil.rmtree(home)
        return
    what = "a medloop home that is not a demo's" if (home / DB_FILE).exists() else "not a demo home"
    raise ConflictError(
        f"{home} exists and is {what}; the demo will not delete it (choose another --home)"
    )


def _is_demo_home(home: Path) -> bool:
    """Marked by the demo that made it; or made before the marker, with the demo's admin."""
    if (home / DEMO_MARKER).exists():
        return True
    database = home / DB_FILE
    if not database.exists():
        return False
    try:
        with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as connection:
            query = "SELECT 1 FROM users WHERE username = ?"
            return connection.execute(query, (DEMO_ROLES[-1].username,)).fetchone() is not None
    except sqlite3.Error:
        return False


def prepare_demo(
    settings: Settings,
    *,
    options: DemoOptions = DemoOptions(),
    progress: Progress = no_progress,
    on_round: Callable[[RoundReport], None] | None = None,
    train_config: Any = None,
) -> DemoResult:
    """Build a fresh demo home at `settings.home` (see the module docstring).

    `train_config` (a `learning.TrainConfig`) overrides `options.max_epochs`.
    """
    reset_home(settings.home)
    ws = workflows.Workspace.open(settings)
    (settings.home / DEMO_MARKER).write_text("made by `medloop demo`; the next demo replaces it\n")
    try:
        return _prepare(ws, options, progress, on_round, train_config)
    finally:
        ws.close()


def _prepare(
    ws: Workspace,
    options: DemoOptions,
    progress: Progress,
    on_round: Callable[[RoundReport], None] | None,
    train_config: Any,
) -> DemoResult:
    if train_config is None:
        from medloop.learning import TrainConfig  # torch only when the demo trains

        config = TrainConfig(seed=options.seed)
        if options.max_epochs is not None:
            config = TrainConfig(
                seed=options.seed,
                max_epochs=options.max_epochs,
                patience=min(config.patience, options.max_epochs),
            )
        train_config = config
    summary = workflows.ingest_medmnist(ws, name=DATASET, limit=options.limit, progress=progress)
    loop = workflows.LoopSettings(
        rounds=options.rounds,
        per_round=options.per_round,
        doctor_budget=options.doctor_budget,
        redundancy=options.redundancy,
        seed=options.seed,
    )
    reports = workflows.run_loop(
        ws,
        project=summary.project,
        settings=loop,
        train_config=train_config,
        on_round=on_round,
        progress=progress,
    )
    progress("people: accounts and open tasks", 0, 2)
    made = []
    for role in DEMO_ROLES:
        password = workflows.accounts.generate_password()
        workflows.accounts.add_user(ws, username=role.username, role=role.role, password=password)
        made.append(DemoAccount(role.username, role.role, password, role.page, role.todo))
    progress("people: accounts and open tasks", 1, 2)
    published = workflows.annotate.publish_tasks(
        ws,
        project=summary.project,
        k=options.open_tasks,
        redundancy=options.redundancy,
        gold_rate=options.gold_rate,
        round=len(reports),
        seed=options.seed,
    )
    progress("people: accounts and open tasks", 2, 2)
    cohort = None
    if options.patients:
        progress("patients: GBSG2 cohort and models", 0, 1)
        cohort = seed_cohort(ws, seed=options.seed)
        progress("patients: GBSG2 cohort and models", 1, 1)
    curve = None
    if reports:
        from medloop.plots import learning_curve

        curve = learning_curve(
            [r.as_dict() for r in reports],
            ws.settings.home / "learning_curve.png",
            title="medloop demo on PneumoniaMNIST (simulated crowd + doctor)",
        )
    logger.info(
        "demo ready: %d items, %d rounds, %d open tasks",
        summary.items,
        len(reports),
        published.tasks,
    )
    return DemoResult(
        home=ws.settings.home,
        project=summary.project,
        ingest=summary,
        rounds=reports,
        accounts=made,
        published=published,
        learning_curve=curve,
        cohort=cohort,
    )


def gbsg2_table() -> pd.DataFrame:
    """GBSG2 as a patient table: one row per patient with a made-up id, numeric features,
    `hormone_therapy` (0/1), follow-up `time` in days and `event` (recurrence or death)."""
    from sksurv.datasets import load_gbsg2

    features, outcome = load_gbsg2()
    return pd.DataFrame(
        {
            "patient_id": [f"GBSG2-{i + 1:04d}" for i in range(len(features))],
            "age": features["age"].astype(float),
            "menopausal": (features["menostat"] == "Post").astype(int),
            "tumor_size": features["tsize"].astype(float),
            "grade": features["tgrade"].astype(str).map({"I": 1, "II": 2, "III": 3}),
            "positive_nodes": features["pnodes"].astype(float),
            "progesterone_receptor": features["progrec"].astype(float),
            "estrogen_receptor": features["estrec"].astype(float),
            "hormone_therapy": (features["horTh"] == "yes").astype(int),
            "time": outcome["time"],
            "event": outcome["cens"].astype(int),
        }
    )


#: Units of `gbsg2_table`'s columns, as the GBSG2 documentation gives them (R's TH.data,
#: which scikit-survival's copy follows).
GBSG2_UNITS = {
    "age": "years",
    "tumor_size": "mm",
    "positive_nodes": "nodes",
    "progesterone_receptor": "fmol",
    "estrogen_receptor": "fmol",
    "time": "days",
}


def seed_cohort(ws: Workspace, *, seed: int = 0) -> PatientImport:
    """Import GBSG2 as the cohort `COHORT` and train its risk and effect models."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "gbsg2.csv"
        gbsg2_table().to_csv(path, index=False)
        summary = workflows.precision.import_patients_table(
            ws, project=COHORT, path=path, id_column="patient_id", units=GBSG2_UNITS
        )
    workflows.precision.train_risk(
        ws,
        project=COHORT,
        time_column="time",
        event_column="event",
        exclude=["hormone_therapy"],
        method="cox",
        seed=seed,
    )
    workflows.precision.train_effects(
        ws,
        project=COHORT,
        treatment_column="hormone_therapy",
        event_column="event",
        time_column="time",
        base="linear",
        seed=seed,
        treated="hormone therapy",
        control="no hormone therapy",
    )
    return summary
