"""`medloop demo` as a new user meets it: a fresh home, accounts that work, open work."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest

from cli_support import run
from medloop.cli.demo import _summary
from medloop.config import Settings
from medloop.store import repository as repo
from medloop.workflows import Workspace, accounts, precision
from medloop.workflows.annotate import PublishedRound
from medloop.workflows.demo import COHORT, DemoResult
from medloop.workflows.ingest import IngestSummary

TINY = (
    "--limit", "40", "--rounds", "1", "--per-round", "20", "--doctor-budget", "5",
    "--tasks", "10", "--max-epochs", "1", "--no-serve",
)  # fmt: skip
# A password may end in "-" (URL-safe base64), where \b finds no word boundary.
LOGIN = re.compile(
    r"\b(annotator|doctor|admin)\s+(demo-[a-z]+)\s+([A-Za-z0-9_-]{16})(?![A-Za-z0-9_-])"
)


def test_demo_prepares_a_fresh_home_people_can_use(
    home: Path, medmnist_dir: Path, monkeypatch, capsys
) -> None:
    monkeypatch.setenv("MEDLOOP_DATA_DIR", str(medmnist_dir))
    monkeypatch.setattr("medloop.cli.demo.run_server", lambda *a, **k: pytest.fail("served"))
    code, out, err = run(monkeypatch, capsys, "demo", *TINY)
    assert code == 0, err
    logins = {user: (role, password) for role, user, password in LOGIN.findall(out)}
    assert set(logins) == {"demo-admin", "demo-doctor", "demo-annotator"}
    assert "http://127.0.0.1:8000" in out and "/annotate" in out and "/review" in out

    demo_home = home / "demo"
    ws = Workspace.open(Settings(home=demo_home))
    try:
        for user, (role, password) in logins.items():
            account = accounts.authenticate(ws, username=user, password=password)
            assert account is not None and account.role == role
        with ws.db.session() as s:
            project = repo.get_project(s, name="pneumoniamnist")
            tasks = repo.tasks_frame(s, project_id=project.id)
            versions = repo.model_versions(s, project_id=project.id)
        open_tasks = tasks[tasks["status"] == "open"]
        assert len(open_tasks) >= 10 and open_tasks["is_gold"].any()
        assert [v.version for v in versions] == [1]
        patients = precision.list_patients(ws, project=COHORT, viewer="test", limit=1000)
        assert len(patients) == 686
    finally:
        ws.close()

    # a second run replaces the home: the old passwords stop working
    code, out, err = run(monkeypatch, capsys, "demo", *TINY, "--no-patients")
    assert code == 0, err
    ws = Workspace.open(Settings(home=demo_home))
    try:
        old = logins["demo-doctor"][1]
        assert accounts.authenticate(ws, username="demo-doctor", password=old) is None
    finally:
        ws.close()


def test_demo_never_deletes_a_folder_that_is_not_a_medloop_home(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    precious = tmp_path / "thesis"
    precious.mkdir()
    (precious / "chapter1.tex").write_text("keep me")
    code, _, err = run(monkeypatch, capsys, "demo", "--home", str(precious), *TINY)
    assert code == 2 and "not a demo home" in err
    assert (precious / "chapter1.tex").read_text() == "keep me"


def test_demo_never_deletes_a_real_medloop_home(tmp_path: Path, monkeypatch, capsys) -> None:
    real = tmp_path / "hospital"
    ws = Workspace.open(Settings(home=real))
    try:
        accounts.add_user(ws, username="dr_house", role="doctor", password="a-long-passphrase-1")
    finally:
        ws.close()
    code, _, err = run(monkeypatch, capsys, "demo", "--home", str(real), *TINY)
    assert code == 2 and "a medloop home that is not a demo's" in " ".join(err.split())
    ws = Workspace.open(Settings(home=real))
    try:
        assert accounts.authenticate(ws, username="dr_house", password="a-long-passphrase-1")
    finally:
        ws.close()


def test_demo_says_when_the_port_is_taken_before_preparing(home: Path, monkeypatch, capsys) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        code, _, err = run(monkeypatch, capsys, "demo", "--port", port)
    assert code == 2 and port in err and "--port" in err
    assert not (home / "demo").exists()


def test_a_demo_that_leaves_nothing_to_label_says_what_to_change(tmp_path: Path) -> None:
    ingest = IngestSummary("p", ["a", "b"], 200, {"train": 140, "val": 30, "test": 30}, 0)
    result = DemoResult(tmp_path, "p", ingest, [], [], PublishedRound(tasks=0, gold_tasks=0))
    said = _summary(result).plain
    assert "Published 0 open labelling tasks" in said and "a larger --limit" in said
    busy = DemoResult(tmp_path, "p", ingest, [], [], PublishedRound(tasks=60, gold_tasks=6))
    assert "a larger --limit" not in _summary(busy).plain
