"""The command line as a user meets it: exit codes, messages, files written."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from sqlalchemy import select

from cli_support import run
from medloop.config import Settings
from medloop.ingest.dateshift import date_offset, load_or_create_key, shift_dicom_time
from medloop.store.models import Item
from medloop.workflows import Workspace
from medloop.workflows.audit import audit_log


def test_help_lists_every_command(monkeypatch, capsys) -> None:
    code, out, _ = run(monkeypatch, capsys, "--help")
    assert code == 0
    for command in (
        "init",
        "ingest",
        "deid",
        "simulate",
        "aggregate",
        "plan",
        "train",
        "evaluate",
        "review",
        "loop",
        "demo",
        "bench",
    ):
        assert command in out


def test_init_creates_home(home: Path, monkeypatch, capsys) -> None:
    code, out, _ = run(monkeypatch, capsys, "init")
    assert code == 0
    assert (home / "medloop.db").exists()
    assert "ready" in out


def test_unknown_dataset_is_a_clear_error(
    home: Path, medmnist_dir: Path, monkeypatch, capsys
) -> None:
    monkeypatch.setenv("MEDLOOP_DATA_DIR", str(medmnist_dir))
    code, _, err = run(monkeypatch, capsys, "ingest", "medmnist", "pneumonimnist")
    assert code == 2
    assert "pneumoniamnist" in err  # did you mean


def test_ingest_medmnist_then_simulate_aggregate_review(
    home: Path, medmnist_dir: Path, monkeypatch, capsys
) -> None:
    monkeypatch.setenv("MEDLOOP_DATA_DIR", str(medmnist_dir))
    code, out, _ = run(monkeypatch, capsys, "ingest", "medmnist", "pneumoniamnist", "--limit", "50")
    assert code == 0 and "150 items" in out
    code, out, _ = run(monkeypatch, capsys, "simulate", "-p", "pneumoniamnist", "--items", "30")
    assert code == 0 and "90 answers" in out
    code, out, _ = run(monkeypatch, capsys, "aggregate", "-p", "pneumoniamnist", "--json")
    assert code == 0 and json.loads(out)["tasks"] == 30
    code, out, _ = run(monkeypatch, capsys, "review", "-p", "pneumoniamnist", "--json")
    queue = json.loads(out)["queue"]
    assert code == 0 and len(queue) == 20
    code, out, _ = run(monkeypatch, capsys, "review", "-p", "pneumoniamnist", "--limit", "3")
    shown = [line.split("│") for line in out.splitlines() if line.count("│") == 6]
    assert code == 0 and [int(row[1]) for row in shown if row[1].strip()] == [
        row["item"] for row in queue[:3]
    ]
    assert shown[0][2].split()[0] in {"normal", "pneumonia"}  # class names, not indices
    plan_csv = home / "plan.csv"
    code, out, _ = run(
        monkeypatch,
        capsys,
        "plan",
        "-p",
        "pneumoniamnist",
        "--budget",
        "25",
        "--doctor-cost",
        "5",
        "--output",
        str(plan_csv),
        "--json",
    )
    plan = json.loads(out)
    assert code == 0 and plan["candidates"] == 30 and 0 < plan["cost"] <= 25
    assert plan["lay_answers"] + 5 * plan["doctor_items"] == plan["cost"]
    assert len(pd.read_csv(plan_csv)) == plan["crowd_items"] + plan["doctor_items"]
    code, out, _ = run(monkeypatch, capsys, "plan", "-p", "pneumoniamnist", "--budget", "25")
    assert code == 0 and "labelling plan" in out
    code, out, _ = run(
        monkeypatch, capsys, "plan", "-p", "pneumoniamnist", "--budget", "25", "--doctor-cost",
        "5", "--publish", "--json",
    )  # fmt: skip
    published = json.loads(out)
    assert code == 0 and published["lay_answers"] == plan["lay_answers"]
    assert published["review_requests"] == plan["doctor_items"] > 0
    code, out, _ = run(monkeypatch, capsys, "review", "-p", "pneumoniamnist", "--json")
    asked = [row["requested"] for row in json.loads(out)["queue"]]
    requests = published["review_requests"]
    assert code == 0 and asked == [True] * requests + [False] * (len(asked) - requests)
    code, _, err = run(
        monkeypatch, capsys, "plan", "-p", "pneumoniamnist", "--budget", "5", "--lay-cost", "0"
    )
    assert code == 2 and "lay_cost" in err
    item = str(queue[0]["item"])
    decide = ("review", "-p", "pneumoniamnist", "--item", item, "--label", "pneumonia")
    code, _, err = run(monkeypatch, capsys, *decide)
    assert code == 2 and "--doctor" in err
    code, _, err = run(monkeypatch, capsys, *decide, "--doctor", "dr_grey")
    assert code == 2 and "no user named 'dr_grey'" in err  # a typo creates no account
    assert run(monkeypatch, capsys, "users", "add", "lay_1", "--role", "annotator")[0] == 0
    code, _, err = run(monkeypatch, capsys, *decide, "--doctor", "lay_1")
    assert code == 2 and "'lay_1' has the role annotator" in err
    assert run(monkeypatch, capsys, "users", "add", "dr_grey", "--role", "doctor")[0] == 0
    code, out, _ = run(monkeypatch, capsys, *decide, "--doctor", "dr_grey")
    assert code == 0 and "final label" in out
    assert run(monkeypatch, capsys, "users", "add", "dr_house", "--role", "doctor")[0] == 0
    code, _, err = run(
        monkeypatch, capsys, "review", "-p", "pneumoniamnist", "--item", item,
        "--label", "normal", "--doctor", "dr_house",
    )  # fmt: skip
    assert code == 2 and f"item {item} already has a final label" in err  # as in the web
    code, _, err = run(
        monkeypatch, capsys, "review", "-p", "pneumoniamnist", "--label", "normal",
        "--doctor", "dr_house",
    )  # fmt: skip
    assert code == 2 and "give --item ITEM" in err
    code, out, _ = run(
        monkeypatch, capsys, "review", "-p", "pneumoniamnist", "--json", "--limit", "100"
    )
    assert item not in {str(row["item"]) for row in json.loads(out)["queue"]}
    code, _, err = run(
        monkeypatch, capsys, "review", "-p", "pneumoniamnist", "--item", item, "--label", "cancer"
    )
    assert code == 2 and "cancer" in err


def test_aggregate_csv_with_gold_output_and_evaluation(tmp_path: Path, monkeypatch, capsys) -> None:
    answers = tmp_path / "answers.csv"
    answers.write_text(
        "task,worker,label\n"
        "t1,a,yes\nt1,b,yes\nt1,c,no\n"
        "t2,a,no\nt2,b,no\nt2,c,no\n"
        "t3,a,yes\nt3,b,no\nt3,c,no\n"
    )
    truth = tmp_path / "truth.csv"
    truth.write_text("task,label\nt1,yes\nt2,no\nt3,no\n")
    output = tmp_path / "labels.csv"
    code, out, _ = run(
        monkeypatch,
        capsys,
        "aggregate",
        str(answers),
        "--method",
        "majority_vote",
        "--output",
        str(output),
        "--evaluate",
        str(truth),
        "--json",
    )
    assert code == 0
    report = json.loads(out)
    assert report["accuracy"] == 1.0 and report["tasks_scored"] == 3
    written = output.read_text().splitlines()
    assert written[0] == "task,label,p_no,p_yes"
    assert written[1].startswith("t1,yes,")


def test_evaluate_scores_labelled_tasks_and_never_overwrites_an_input(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    """A truth file with a blank cell is read as floats (1.0): it still scores right, the
    blank task is not scored, and no output may replace a file the command reads."""
    answers = tmp_path / "answers.csv"
    answers.write_text("task,worker,label\nt1,a,1\nt1,b,1\nt2,a,0\nt2,b,0\nt3,a,1\nt3,b,1\n")
    truth = tmp_path / "truth.csv"
    truth.write_text("task,label\nt1,1\nt2,0\nt3,\n")
    code, out, _ = run(
        monkeypatch, capsys, "aggregate", str(answers), "--evaluate", str(truth), "--json"
    )
    report = json.loads(out)
    assert code == 0 and report["accuracy"] == 1.0 and report["tasks_scored"] == 2
    floats = tmp_path / "floats.csv"
    floats.write_text("task,label\nt1,1.0\nt2,0.0\nt3,0.0\n")
    code, out, _ = run(
        monkeypatch, capsys, "aggregate", str(answers), "--evaluate", str(floats), "--json"
    )
    assert code == 0 and json.loads(out)["accuracy"] == pytest.approx(2 / 3, abs=1e-3)
    typo = tmp_path / "typo.csv"
    typo.write_text("task,label\nt1,1\nt2,O\n")  # the letter O for 0
    code, out, err = run(
        monkeypatch, capsys, "aggregate", str(answers), "--evaluate", str(typo), "--json"
    )
    assert code == 0 and json.loads(out)["truth_not_among_classes"] == 1
    assert "a truth label none of the answers uses" in " ".join(err.split())
    assert "truth_not_among_classes" not in json.loads(
        run(monkeypatch, capsys, "aggregate", str(answers), "--evaluate", str(truth), "--json")[1]
    )
    before = answers.read_text()
    for target in (answers, floats):
        code, _, err = run(
            monkeypatch, capsys, "aggregate", str(answers), "--evaluate", str(floats),
            "--output", str(target),
        )  # fmt: skip
        assert code == 2 and "is also an input" in " ".join(err.split())
    assert answers.read_text() == before


def test_a_single_record_prints_one_field_per_line(tmp_path: Path, monkeypatch, capsys) -> None:
    """A report (aggregation, model metrics, bench) is a list of fields: in an 80-column
    terminal each field keeps its whole name, with its value on the same line."""
    answers = tmp_path / "answers.csv"
    answers.write_text("task,worker,label\nt1,a,yes\nt1,b,yes\nt2,a,no\nt2,b,yes\n")
    truth = tmp_path / "truth.csv"
    truth.write_text("task,label\nt1,yes\nt2,no\n")
    monkeypatch.setenv("COLUMNS", "80")
    code, out, _ = run(monkeypatch, capsys, "aggregate", str(answers), "--evaluate", str(truth))
    assert code == 0
    lines = {line.split()[1]: line.split()[3] for line in out.splitlines() if line.count("│") == 3}
    assert lines["method"] == "dawid_skene" and lines["tasks_scored"] == "2"
    assert {"tasks", "accuracy", "seconds"} <= set(lines)


def test_aggregate_bad_csv_names_the_file(tmp_path: Path, monkeypatch, capsys) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("task,person,label\nt1,a,yes\n")
    code, _, err = run(monkeypatch, capsys, "aggregate", str(bad))
    assert code == 2 and "bad.csv" in err and "worker" in err


def test_deid_command(home: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.delenv("MEDLOOP_DATE_SHIFT_KEY", raising=False)
    source = Path(get_testdata_file("CT_small.dcm", download=False))
    target = tmp_path / "out.dcm"
    code, out, _ = run(monkeypatch, capsys, "deid", str(source), str(target))
    assert code == 0 and "pseudonym" in out
    original, cleaned = pydicom.dcmread(source), pydicom.dcmread(target)
    assert cleaned.PatientID != original.PatientID
    assert cleaned.PixelData == original.PixelData
    # dates move by the patient's shift under the home's key, as a FHIR import's do
    assert (home / "date-shift.key").is_file()
    offset = date_offset("1CT1", key=load_or_create_key(home / "date-shift.key"))
    assert cleaned.StudyDate == shift_dicom_time(original.StudyDate, offset, vr="DA")
    code, _, err = run(
        monkeypatch, capsys, "deid", str(tmp_path / "missing.dcm"), str(tmp_path / "x.dcm")
    )
    assert code == 2 and "missing.dcm" in err


def test_images_that_may_show_the_patient_are_refused_unless_checked(
    home: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    source = Path(get_testdata_file("CT_small.dcm", download=False))
    burned = pydicom.dcmread(source)
    burned.BurnedInAnnotation = "YES"
    burned.save_as(tmp_path / "burned.dcm")
    code, _, err = run(monkeypatch, capsys, "deid", str(tmp_path / "burned.dcm"), "out.dcm")
    assert code == 2 and "BurnedInAnnotation is YES" in " ".join(err.split())
    assert not Path("out.dcm").exists()  # never stamped PatientIdentityRemoved
    folder = tmp_path / "Doe_John_MRN4711"
    folder.mkdir()
    screenshot = pydicom.dcmread(source)
    screenshot.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"  # secondary capture, unstated
    screenshot.save_as(folder / "Doe_John_19600101.dcm")
    code, _, err = run(monkeypatch, capsys, "ingest", "dicom", str(folder), "-p", "sc")
    assert code == 2 and "BurnedInAnnotation is not stated" in " ".join(err.split())
    code, _, err = run(
        monkeypatch,
        capsys,
        "ingest",
        "dicom",
        str(folder),
        "-p",
        "sc",
        "--classes",
        "a,b",
        "--pixels-checked",
    )
    assert code == 0, err
    ws = Workspace.open(Settings())
    try:
        (entry,) = audit_log(ws, action="ingest").entries
        with ws.db.session() as s:
            (ref,) = s.scalars(select(Item.source_ref))
    finally:
        ws.close()
    assert entry.detail["pixels_checked"] is True
    stored = json.dumps(entry.detail) + ref
    assert "Doe" not in stored and "MRN4711" not in stored and "19600101" not in stored


def test_corrupt_image_folder_ingests_nothing(
    home: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(4):
        Image.fromarray(np.full((8, 8), i * 40, dtype=np.uint8)).save(folder / f"{i}.png")
    (folder / "4.png").write_bytes(b"not a png")
    (folder / "labels.csv").write_text(
        "file,label,patient_id\n0.png,a,p1\n1.png,b,p1\n2.png,a,p2\n3.png,b,p3\n4.png,a,p4\n"
    )
    code, _, err = run(monkeypatch, capsys, "ingest", "images", str(folder), "-p", "x")
    assert code == 2 and "4.png" in err
    (folder / "4.png").unlink()
    labels = (folder / "labels.csv").read_bytes()
    (folder / "labels.csv").unlink()  # no labels and no --classes: no classes at all
    code, _, err = run(monkeypatch, capsys, "ingest", "images", str(folder), "-p", "x")
    assert code == 2 and "needs at least two classes" in err and "--classes" in err
    assert not list((home / "blobs").rglob("*.*")), "nothing stored for an ingest that failed"
    # a class a spreadsheet would run as a formula once exported (CSV injection)
    (folder / "labels.csv").write_text(
        "file,label,patient_id\n0.png,a,p1\n1.png,=cmd|' /C calc'!A0,p1\n2.png,a,p2\n"
    )
    code, _, err = run(monkeypatch, capsys, "ingest", "images", str(folder), "-p", "x")
    assert code == 2 and "would run as a formula" in " ".join(err.split())
    assert not list((home / "blobs").rglob("*.*")), "nothing stored for an ingest that failed"
    (folder / "labels.csv").write_bytes(labels)
    (folder / "labels.csv").write_text(
        "file,label,patient_id\n0.png,a,p1\n1.png,b,p1\n2.png,a,p2\n3.png,b,p3\n"
    )
    code, out, err = run(monkeypatch, capsys, "ingest", "images", str(folder), "-p", "x")
    assert code == 0 and "4 items (3 patients)" in out
    assert "ingest: storing images" in err and "4/4" in err  # a progress bar on stderr


def test_server_worker_processes_rebuild_the_settings_they_are_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`serve --workers N` (and the demo) hand their settings to worker processes as
    MEDLOOP_ variables; the worker's `Settings()` must come out equal."""
    from medloop.cli.web import settings_environment

    given = Settings(home=tmp_path / "demo", secret_key="s3cret" * 6, environment="production")
    for name in ("MEDLOOP_HOME", "MEDLOOP_DATABASE_URL", "MEDLOOP_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    for name, value in settings_environment(given).items():
        monkeypatch.setenv(name, value)
    assert Settings() == given


def test_the_loops_round_table_fits_a_terminal_without_cutting_a_word() -> None:
    from rich.console import Console

    from medloop.cli.loop import ROUND_COLUMNS, round_table

    row = dict.fromkeys(ROUND_COLUMNS, 0.8765) | {
        "round": 12,
        "labelled_items": 3650,
        "crowd_answers": 10950,
        "doctor_labels": 650,
        "cost": 23950.0,
        "seconds": 312.5,
        "reference_val_labels": 524,
    }
    console = Console(width=80, record=True, file=open(os.devnull, "w"))  # noqa: SIM115
    console.print(round_table([row, row], width=80))
    text = console.export_text()
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= 80
    assert "10950" in text and "23950" in text and "answers" in text
    assert "524 validation labels from the dataset" in " ".join(text.split())


def test_options_that_could_never_work_are_refused_before_any_work(
    home: Path, monkeypatch, capsys
) -> None:
    for args in (
        ("loop", "-p", "x", "--rounds", "0"),
        ("loop", "-p", "x", "--per-round", "0"),
        ("review", "-p", "x", "--limit", "0"),
        ("simulate", "-p", "x", "--gold-rate", "1.5"),
    ):
        code, _, err = run(monkeypatch, capsys, *args)
        assert code == 2 and "Invalid value" in err, args
    code, _, err = run(monkeypatch, capsys, "loop", "-p", "x", "--strategy", "entropi")
    assert code == 2 and "entropy" in err  # the project is not even opened
    code, _, err = run(monkeypatch, capsys, "recommend", "P1", "-p", "x", "--reason", "why")
    assert code == 2 and "add --accept or --override" in " ".join(err.split())


def test_a_labelled_folder_signed_by_a_doctor_trains_at_once(
    home: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    """A hospital's already-labelled images: --final-by makes the CSV's labels a doctor's
    final labels (audited), so `train` runs without any crowd; without it they are
    reference labels only, and the command says how to change that."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "images"
    folder.mkdir()
    rows = ["file,label,patient_id"]
    for i in range(120):
        label = "b" if i % 2 else "a"
        image = rng.integers(0, 60, (28, 28)) + (150 if label == "b" else 0)
        Image.fromarray(image.astype(np.uint8)).save(folder / f"{i}.png")
        rows.append(f"{i}.png,{label},p{i}")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    ingest = ("ingest", "images", str(folder))
    code, _, err = run(monkeypatch, capsys, *ingest, "-p", "x", "--final-by", "dr_who")
    assert code == 2 and "no user named 'dr_who'" in err  # before any image is read
    code, out, _ = run(monkeypatch, capsys, *ingest, "-p", "ref")
    assert code == 0 and "120 labels are reference labels" in " ".join(out.split())
    assert run(monkeypatch, capsys, "users", "add", "dr_who", "--role", "doctor")[0] == 0
    code, out, _ = run(monkeypatch, capsys, *ingest, "-p", "x", "--final-by", "dr_who")
    assert code == 0 and "120 labels are final labels by dr_who" in out
    code, out, err = run(monkeypatch, capsys, "train", "-p", "x", "--max-epochs", "1", "--json")
    assert code == 0, err
    assert json.loads(out)["n_train"] > 10
    code, out, _ = run(monkeypatch, capsys, "train", "-p", "ref", "--max-epochs", "1")
    assert code == 2
