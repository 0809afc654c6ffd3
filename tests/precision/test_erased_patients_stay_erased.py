"""A patient erased from a cohort (consent withdrawn) stays erased: importing the same
table, expression matrix or FHIR bundle again leaves them out, stores nothing of theirs
and says so."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import func, select
from test_fhir_import import HAEMOGLOBIN, bundle, observation
from test_gene_expression import matrix

from cli_support import run
from medloop.config import Settings
from medloop.ingest import pseudonymize
from medloop.store.models import Patient, PatientFeature, PatientObservation, RiskModelPatient
from medloop.workflows import Workspace
from medloop.workflows import precision as wf
from medloop.workflows.audit import audit_log

KEY = "k" * 32


@pytest.fixture(autouse=True)
def _key(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDLOOP_SECRET_KEY", KEY)


def _erase(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, raw: str) -> str:
    code, out, err = run(
        monkeypatch, capsys, "patients", "erase", raw, "-p", "c", "--reason", "withdrawn", "--yes"
    )
    assert code == 0, err
    assert "leave this patient out" in " ".join(out.split())
    return pseudonymize(raw, key=KEY.encode())


def _stored(pseudonym: str) -> int:
    """How many rows of any patient table name the patient `pseudonym`."""
    ws = Workspace.open(Settings())
    try:
        with ws.db.session() as s:
            ids = select(Patient.id).where(Patient.pseudonym == pseudonym)
            rows = int(s.scalar(select(func.count()).where(Patient.pseudonym == pseudonym)) or 0)
            for table in (PatientFeature, PatientObservation, RiskModelPatient):
                query = select(func.count()).select_from(table).where(table.patient_id.in_(ids))
                rows += int(s.scalar(query) or 0)
            return rows
    finally:
        ws.close()


def test_a_table_and_its_expression_matrix_imported_again_leave_the_erased_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    ids = [f"A{i}" for i in range(10)]
    table = tmp_path / "t.csv"
    pd.DataFrame(
        {"mrn": ids, "age": range(50, 60), "note": [f"seen {i}" for i in range(10)]}
    ).to_csv(table, index=False)
    expr = matrix(n=10, genes=12, seed=3)
    expr.index = pd.Index(ids, name="mrn")
    expr.reset_index().to_csv(tmp_path / "e.csv", index=False)
    args = ("patients", "import", str(table), "-p", "c", "--id-column", "mrn", "--text", "note")
    code, out, err = run(monkeypatch, capsys, *args, "--expression", str(tmp_path / "e.csv"))
    assert code == 0, err
    gone = _erase(monkeypatch, capsys, "A2")
    assert _stored(gone) == 0

    code, out, err = run(monkeypatch, capsys, *args, "--expression", str(tmp_path / "e.csv"))
    assert code == 0, err  # the matrix's row of the erased patient is no stranger
    said = " ".join(out.split())
    assert "imported 9 patients" in said
    assert "1 rows of erased patients skipped (consent withdrawn)" in said
    assert "expression: 9 patients" in said and said.count("erased patients skipped") == 2
    assert _stored(gone) == 0  # not even a feature or a note
    ws = Workspace.open(Settings())
    try:
        assert wf.count_patients(ws, project="c") == 9
        wf.import_expression(ws, project="c", path=tmp_path / "e.csv", id_column="mrn", refit=True)
        assert _stored(gone) == 0  # the new transform's lineage
        table_entry = audit_log(ws, action="import_patients").entries[0]
        assert table_entry.detail["erased_patients_skipped"] == 1
        assert table_entry.detail["patients"] == 9
    finally:
        ws.close()


def test_a_fhir_bundle_imported_again_leaves_the_erased_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    path = bundle(
        tmp_path / "b.json",
        [observation(f"p{i}", HAEMOGLOBIN, 12.0 + i, "g/dL") for i in range(3)],
    )
    code, out, err = run(monkeypatch, capsys, "patients", "import", str(path), "-p", "c")
    assert code == 0, err
    gone = _erase(monkeypatch, capsys, "p1")

    code, out, err = run(monkeypatch, capsys, "patients", "import", str(path), "-p", "c")
    assert code == 0, err
    said = " ".join(out.split())
    assert "imported 2 patients" in said
    assert "the records of 1 erased patients skipped (consent withdrawn)" in said
    assert _stored(gone) == 0
    ws = Workspace.open(Settings())
    try:
        again = wf.import_fhir_bundle(ws, project="c", path=path)
        assert (again.patients, again.erased) == (2, 1)
        assert wf.count_patients(ws, project="c") == 2
        entry = audit_log(ws, action="import_fhir").entries[0]
        assert entry.detail["erased_patients_skipped"] == 1
        assert gone not in json.dumps(entry.detail)
    finally:
        ws.close()
    assert _stored(gone) == 0
