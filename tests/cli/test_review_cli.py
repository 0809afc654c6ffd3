"""`medloop review` as the review pages: a two-class model's suggestion with P(positive
class) and its cut, the model in use named, a signed final label corrected with a reason
(`review correct`) and an item's final labels listed (`review history`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from cli_support import run
from medloop.config import Settings
from medloop.ingest import encode_png
from medloop.store import assignments
from medloop.store import repository as repo
from medloop.types import REVIEWER_ROLES, LabelKind, LabelSource
from medloop.workflows import Workspace, accounts, review
from medloop.workflows.audit import audit_log

CLASSES = ["normal", "pneumonia"]


def table_rows(text: str) -> list[list[str]]:
    """The rows of a printed table, each cell's wrapped lines joined."""
    rows: list[list[str]] = []
    for line in text.splitlines():
        if not line.startswith("│"):
            continue
        cells = [cell.strip() for cell in line.strip("│").split("│")]
        if cells[0] or not rows:
            rows.append(cells)
        else:
            rows[-1] = [f"{a} {b}".strip() for a, b in zip(rows[-1], cells, strict=True)]
    return rows


def chest(*, model: bool = True) -> list[int]:
    """A project "chest" of four items with a crowd consensus, and (with `model`) a
    model deciding pneumonia at P >= 0.79 that predicted the first two items."""
    ws = Workspace.open(Settings())
    try:
        with ws.db.session() as s:
            project = repo.create_project(s, name="chest", classes=CLASSES, n_channels=1)
            new = [
                repo.NewItem(
                    source_ref=f"chest/{i}",
                    image_sha256=ws.blobs.put(encode_png(np.full((8, 8), i, dtype=np.uint8))),
                    split="train",
                )
                for i in range(4)
            ]
            repo.add_items(s, project=project, items=new)
            items = sorted(int(i) for i in repo.items_frame(s, project_id=project.id).index)
            repo.add_item_labels(
                s,
                project_id=project.id,
                labels=pd.Series(0, index=items),
                kind=LabelKind.CONSENSUS,
                source=LabelSource.CROWD,
                method="majority_vote",
                probabilities=pd.DataFrame([[0.6, 0.4]] * len(items), index=items),
            )
            if model:
                version = repo.add_model_version(
                    s,
                    project_id=project.id,
                    network="cnn",
                    checkpoint_path=str(ws.settings.model_dir / "chest" / "v1.pt"),
                    n_train=24,
                    metrics={"threshold": 0.79, "test_auc": 0.91, "test_acc": 0.85, "test_n": 6},
                )
                probabilities = pd.DataFrame(
                    [[0.26, 0.74], [0.1, 0.9]], index=items[:2], columns=[0, 1]
                )
                repo.save_predictions(s, model_version_id=version.id, probabilities=probabilities)
    finally:
        ws.close()
    return items


def test_the_queue_shows_p_positive_with_the_cut_and_the_model_in_use(
    home: Path, monkeypatch, capsys
) -> None:
    items = chest()
    code, out, err = run(monkeypatch, capsys, "review", "-p", "chest", "--json")
    assert code == 0, err
    listed = json.loads(out)
    rows = {row["item"]: row for row in listed["queue"]}
    first = rows[items[0]]
    assert first["model_label"] == "normal", "P(pneumonia) 0.74 is below the cut 0.79"
    assert (first["model_positive"], first["model_threshold"]) == (0.74, 0.79)
    assert first["positive_class"] == "pneumonia"
    assert rows[items[2]]["model_positive"] is None  # not predicted
    # the model in use, as the review page's model card and GET /api/review/{item} show it
    model = listed["model"]
    assert model["trained_at"].startswith("20")
    assert {k: v for k, v in model.items() if k != "trained_at"} == {
        "version": 1,
        "n_train": 24,
        "threshold": 0.79,
        "positive_class": "pneumonia",
        "test_auc": 0.91,
        "test_accuracy": 0.85,
        "test_n": 6,
        "labels_since": 0,
        "erased_patients": 0,
    }

    code, out, err = run(monkeypatch, capsys, "review", "-p", "chest")
    assert code == 0, err
    models = {int(row[0]): row[2] for row in table_rows(out)}
    assert models[items[0]] == "normal (P(pneumonia) 74%, cut 79%)"
    assert models[items[1]] == "pneumonia (P(pneumonia) 90%, cut 79%)"
    assert models[items[2]] == "-"
    assert "0.26" not in out and "26%" not in out, "not the decided class's 26%"
    said = " ".join(out.split())
    assert "model v1, trained " in said and " UTC on 24 images" in said
    assert "held-out test AUC 0.91, accuracy 85% (6 images)" in said
    assert "suggests pneumonia at P >= 79%" in said

    # a final label signed after the model was trained: the model has not learnt it
    assert run(monkeypatch, capsys, "users", "add", "dr_grey", "--role", "doctor")[0] == 0
    decide = ("--item", str(items[3]), "--label", "normal", "--doctor", "dr_grey")
    assert run(monkeypatch, capsys, "review", "-p", "chest", *decide)[0] == 0
    code, out, _ = run(monkeypatch, capsys, "review", "-p", "chest")
    assert "1 final label signed since it was trained: it has not learnt from it." in " ".join(
        out.split()
    )
    code, out, _ = run(monkeypatch, capsys, "review", "-p", "chest", "--json")
    assert code == 0 and json.loads(out)["model"]["labels_since"] == 1


def test_without_a_model_the_queue_says_so(home: Path, monkeypatch, capsys) -> None:
    chest(model=False)
    code, out, _ = run(monkeypatch, capsys, "review", "-p", "chest")
    assert code == 0 and "no model yet: only the crowd's opinion is shown" in out
    assert {row[1] for row in table_rows(out)} == {"normal (60%)"}
    code, _, err = run(monkeypatch, capsys, "review", "--limit", "3")
    assert code == 2 and "give the project" in err
    code, out, _ = run(monkeypatch, capsys, "review", "-p", "chest", "--json")
    listed = json.loads(out)
    assert code == 0 and listed["model"] is None and len(listed["queue"]) == 4


def test_the_queue_table_fits_80_columns_with_a_flags_words_as_written(
    home: Path, monkeypatch, capsys
) -> None:
    items = chest()
    assert run(monkeypatch, capsys, "users", "add", "dr_grey", "--role", "doctor")[0] == 0
    ws = Workspace.open(Settings())
    try:
        doctor = accounts.account_in_role(ws, username="dr_grey", roles=REVIEWER_ROLES)
        reason = "needs a second opinion [see notes]"
        review.flag_item(ws, account=doctor, item_id=items[1], reason=reason)
    finally:
        ws.close()
    code, out, _ = run(monkeypatch, capsys, "review", "-p", "chest")
    assert code == 0 and "…" not in out
    assert max(len(line) for line in out.splitlines()) <= 80
    why = {int(row[0]): row[4] for row in table_rows(out)}
    assert why[items[1]].endswith(f"flagged: {reason}"), "not read as markup"


def test_a_final_label_is_corrected_with_a_reason_and_its_history_listed(
    home: Path, monkeypatch, capsys
) -> None:
    items = chest()
    item = str(items[0])
    assert run(monkeypatch, capsys, "users", "add", "dr_grey", "--role", "doctor")[0] == 0
    assert run(monkeypatch, capsys, "users", "add", "dr_house", "--role", "doctor")[0] == 0
    decide = ("review", "-p", "chest", "--item", item, "--label", "normal")
    assert run(monkeypatch, capsys, *decide, "--doctor", "dr_grey")[0] == 0
    # the same decision again is taken as done; another doctor's is refused, naming who
    code, out, _ = run(monkeypatch, capsys, *decide, "--doctor", "dr_grey")
    assert code == 0 and "final label 'normal' by dr_grey" in out
    code, _, err = run(
        monkeypatch, capsys, "review", "-p", "chest", "--item", item, "--label", "pneumonia",
        "--doctor", "dr_house",
    )  # fmt: skip
    said = " ".join(err.split())
    assert code == 2 and f"item {item} already has a final label: 'normal', signed by" in said
    assert "dr_grey at 20" in said and "correct it with a reason" in said

    correct = ("review", "correct", "-p", "chest", item, "pneumonia", "--was", "normal")
    reason = "slipped on the key; consolidation [left lower lobe] on a second look"
    code, _, err = run(monkeypatch, capsys, *correct, "--reason", reason)
    assert code == 2 and "needs --doctor USERNAME" in err
    code, _, err = run(monkeypatch, capsys, *correct, "--reason", "  ", "--doctor", "dr_house")
    assert code == 2 and "a correction needs a reason" in err
    code, _, err = run(
        monkeypatch, capsys, "review", "correct", "-p", "nope", item, "pneumonia",
        "--was", "normal", "--reason", reason, "--doctor", "dr_house",
    )  # fmt: skip
    assert code == 2 and f"item {item} is not in project 'nope'" in err
    code, out, err = run(monkeypatch, capsys, *correct, "--reason", reason, "--doctor", "dr_house")
    assert code == 0 and "corrected from 'normal' to 'pneumonia' by dr_house" in out, err
    code, _, err = run(monkeypatch, capsys, *correct, "--reason", "again", "--doctor", "dr_house")
    said = " ".join(err.split())
    assert code == 2 and "is now 'pneumonia', signed by dr_house at" in said
    assert "changed it meanwhile" in said

    ws = Workspace.open(Settings())
    try:
        with ws.db.session() as s:
            assert assignments.final_labels_for(s, item_ids=[int(item)]) == {int(item): 1}
        (entry,) = audit_log(ws, action="label.final.corrected").entries
    finally:
        ws.close()
    assert entry.actor == "dr_house"

    code, out, _ = run(monkeypatch, capsys, "review", "history", "-p", "chest", item, "--json")
    history = json.loads(out)
    assert code == 0 and [(h["label"], h["by"]) for h in history] == [
        ("normal", "dr_grey"),
        ("pneumonia", "dr_house"),
    ]
    assert (history[1]["replaced"], history[1]["reason"]) == ("normal", reason)
    assert history[0]["replaced"] is None and history[0]["at"].endswith(" UTC")
    code, out, _ = run(monkeypatch, capsys, "review", "history", "-p", "chest", item)
    shown = table_rows(out)
    assert code == 0 and "final labels of item" in out
    assert [row[:2] for row in shown] == [["normal", "dr_grey"], ["pneumonia", "dr_house"]]
    assert shown[1][3:] == ["normal", reason], "the reason as written, [brackets] too"
    code, _, err = run(monkeypatch, capsys, "review", "-p", "chest", "history", item)
    assert code == 2 and "give the options after `review history`" in err
    code, out, _ = run(monkeypatch, capsys, "review", "history", "-p", "chest", str(items[1]))
    assert code == 0 and f"item {items[1]} has no final label yet" in out
