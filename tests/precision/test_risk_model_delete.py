"""Deleting a cohort's risk model version (`medloop risk delete`): its pickled model,
which keeps per-patient rows, leaves the blob store; its row stays marked deleted, so
recommendations and the history still name it; a version in use is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from test_gene_expression import matrix
from test_precision_workflow import trial_csv

from cli_support import run
from medloop.config import Settings
from medloop.store.models import Recommendation, RiskModelVersion
from medloop.workflows import Workspace, storage
from medloop.workflows import precision as wf
from medloop.workflows.audit import audit_log


def _versions(ws: Workspace) -> dict[tuple[str, int], RiskModelVersion]:
    with ws.db.session() as s:
        return {(v.kind, v.version): v for v in wf.prepo.risk_models(s, project_id=1)}


def test_a_risk_model_not_in_use_is_deleted_and_its_history_kept(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    ws = Workspace.open(Settings())
    try:
        wf.import_patients_table(
            ws, project="trial", path=trial_csv(tmp_path / "t.csv", n=120), id_column="mrn"
        )
        survival = dict(project="trial", time_column="time", event_column="event",
                        method="cox", n_bootstrap=0)  # fmt: skip
        wf.train_risk(ws, **survival, exclude=["tx"])
        first = wf.recommend(ws, project="trial", patient="MRN000001").recommendation_id
        wf.train_risk(ws, **survival, exclude=["tx", "marker"])
        blob = _versions(ws)["survival", 1].blob_sha256
    finally:
        ws.close()
    args = ("risk", "delete", "-p", "trial")

    code, out, err = run(monkeypatch, capsys, *args, "survival", "2", "--yes")
    said = " ".join(err.split())
    assert code != 0 and "survival model v2 of 'trial' is in use as the cohort's risk" in said
    assert "(medloop risk use -p trial survival 1)" in said
    code, out, err = run(monkeypatch, capsys, *args, "survival", "1")
    assert code == 0 and "would delete" in out and "dry run" in out, err
    ws = Workspace.open(Settings())
    try:
        assert ws.blobs.exists(blob) and _versions(ws)["survival", 1].deleted_at is None
    finally:
        ws.close()

    code, out, err = run(monkeypatch, capsys, *args, "survival", "1", "--yes", "--json")
    assert code == 0, err
    done = json.loads(out)
    assert (done["deleted"], done["version"], done["blobs"]) == (True, "survival v1", 1)
    ws = Workspace.open(Settings())
    try:
        assert not ws.blobs.exists(blob)
        assert _versions(ws)["survival", 1].deleted_at is not None
        with ws.db.session() as s:  # the recommendation made with it still names it
            recommendation = s.get(Recommendation, first)
            assert recommendation is not None
            assert recommendation.risk_model_id == _versions(ws)["survival", 1].id
        record = wf.patient_record(ws, project="trial", patient="MRN000001")
        assert record["recommendation"] is not None  # the patient's page still opens
        assert "its file was deleted on" in record["trained_on"][0]["values"]
        entry = audit_log(ws, action="risk.delete").entries[0]
        assert (entry.actor, entry.detail["kind"], entry.detail["version"]) == (
            "cli",
            "survival",
            1,
        )
        assert storage.verify_blobs(ws).problems == []  # a deleted blob is no problem
    finally:
        ws.close()

    code, out, err = run(monkeypatch, capsys, "risk", "list", "-p", "trial", "--json")
    listed = json.loads(out)
    assert [v["deleted_at"] is not None for v in listed["versions"]] == [True, False]
    assert [p["version"] for p in listed["in_use"]] == [1, 2]  # its period in use stays
    code, out, err = run(monkeypatch, capsys, "risk", "list", "-p", "trial")
    assert "deleted (their files are gone; kept for the history): survival v1" in " ".join(
        out.split()
    )
    for again in (("risk", "use", "-p", "trial", "survival", "1"), (*args, "survival", "1")):
        code, out, err = run(monkeypatch, capsys, *again)
        said = " ".join(err.split())
        assert code != 0 and "survival model v1 of 'trial' was deleted on" in said


def test_the_expression_transform_gene_features_are_scaled_by_is_not_deleted(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    ids = [f"A{i}" for i in range(10)]
    pd.DataFrame({"mrn": ids, "age": range(50, 60)}).to_csv(tmp_path / "t.csv", index=False)
    expr = matrix(n=10, genes=12, seed=3)
    expr.index = pd.Index(ids, name="mrn")
    expr.reset_index().to_csv(tmp_path / "e.csv", index=False)
    ws = Workspace.open(Settings())
    try:
        wf.import_patients_table(ws, project="c", path=tmp_path / "t.csv", id_column="mrn")
        for _ in range(2):  # version 2 replaces version 1
            wf.import_expression(
                ws, project="c", path=tmp_path / "e.csv", id_column="mrn", refit=True
            )
    finally:
        ws.close()
    code, out, err = run(monkeypatch, capsys, "risk", "delete", "-p", "c", "expression", "2")
    said = " ".join(err.split())
    assert code != 0 and "the transform the cohort's gene features are scaled by" in said
    code, out, err = run(
        monkeypatch, capsys, "risk", "delete", "-p", "c", "expression", "1", "--yes"
    )
    assert code == 0 and "deleted model expression v1 of c" in " ".join(out.split()), err
    ws = Workspace.open(Settings())
    try:  # imports still scale by version 2
        assert len(wf.expression_features(ws, project="c")) > 0
    finally:
        ws.close()
