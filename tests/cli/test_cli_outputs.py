"""Files the command line writes: a missing folder is made, a place that cannot be
written fails at once in one line, before any work and before any audit entry."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli_support import run
from medloop.config import Settings
from medloop.store import repository as repo
from medloop.workflows import Workspace

ANSWERS = "task,worker,label\n1,a,0\n1,b,0\n1,c,1\n2,a,1\n2,b,1\n2,c,1\n"


def test_outputs_go_into_folders_made_for_them(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    answers = tmp_path / "answers.csv"
    answers.write_text(ANSWERS)
    target = tmp_path / "new" / "deeper" / "labels.csv"
    code, _, _ = run(monkeypatch, capsys, "aggregate", str(answers), "--output", str(target))
    assert code == 0 and target.read_text().startswith("task,label,p_0,p_1")


def test_unwritable_outputs_fail_first_in_one_line(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = Workspace.open(Settings())
    with ws.db.session() as s:
        repo.create_project(s, name="chest", classes=["normal", "pneumonia"], n_channels=1)
    ws.close()
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    for args in (
        ("export", "answers", str(blocker / "a.csv"), "-p", "chest"),
        ("export", "coco", str(blocker / "x.json"), "-p", "chest"),
        ("aggregate", "-p", "chest", "--output", str(blocker / "l.csv")),
        ("export", "labels", str(tmp_path), "-p", "chest"),  # a folder, not a file
    ):
        code, out, err = run(monkeypatch, capsys, *args)
        assert code == 2, args
        said = " ".join(err.split())  # Rich wraps long lines at the terminal's width
        assert "Traceback" not in out + err and said.startswith("error:"), err
        assert f"{blocker} is a file, not a folder" in said or "is a folder; give" in said
    if Path("/dev/full").exists():  # writing fails only once the export is made
        for what in ("labels", "coco"):
            code, out, err = run(monkeypatch, capsys, "export", what, "/dev/full", "-p", "chest")
            assert code == 2 and "Traceback" not in out + err and "No space left" in err
    ws = Workspace.open(Settings())
    with ws.db.session() as s:
        assert not repo.audit_frame(s)["action"].str.startswith("export").any()
    ws.close()


def test_no_file_or_project_says_what_to_give(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(monkeypatch, capsys, "aggregate")
    assert code == 2 and "not both" not in err and "--project" in err
