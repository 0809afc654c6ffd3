"""A FHIR bundle into a cohort: one unit per feature, whatever units the bundle mixes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from medloop.config import Settings
from medloop.exceptions import IngestError
from medloop.store import patients as prepo
from medloop.store import repository as repo
from medloop.workflows import Workspace
from medloop.workflows import precision as wf

HAEMOGLOBIN, WEIGHT, PRESSURE = "718-7", "29463-7", "8480-6"


def observation(patient: str, code: str, value: float, unit: str) -> dict[str, Any]:
    return {
        "resource": {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "subject": {"reference": f"Patient/{patient}"},
            "effectiveDateTime": "2024-01-02T10:00:00Z",
            "valueQuantity": {"value": value, "unit": unit},
        }
    }


def bundle(path: Path, observations: list[dict[str, Any]]) -> Path:
    patients = [
        {"resource": {"resourceType": "Patient", "id": f"p{i}", "gender": "female"}}
        for i in range(3)
    ]
    path.write_text(
        json.dumps(
            {"resourceType": "Bundle", "type": "collection", "entry": patients + observations}
        )
    )
    return path


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return Workspace.open(Settings(home=tmp_path / "home", secret_key="k" * 32))


def test_values_in_other_units_are_converted_to_the_codes_usual_one(
    ws: Workspace, tmp_path: Path
) -> None:
    """Haemoglobin 135 g/L is 13.5 g/dL, and 154 lb is 69.9 kg: stored as 135 'g/dL' and
    154 'kg' before, the median of the column then 13.5."""
    path = bundle(
        tmp_path / "b.json",
        [
            observation("p0", HAEMOGLOBIN, 13.5, "g/dL"),
            observation("p1", HAEMOGLOBIN, 135.0, "g/L"),
            observation("p2", HAEMOGLOBIN, 9.0, "g/dL"),
            observation("p0", WEIGHT, 70.0, "kg"),
            observation("p1", WEIGHT, 154.0, "[lb_av]"),
            observation("p2", WEIGHT, 60.0, "kg"),
        ],
    )
    try:
        wf.import_fhir_bundle(ws, project="c", path=path)
        with ws.db.session() as s:
            project_id = repo.get_project(s, name="c").id
            features = prepo.features_frame(s, project_id=project_id)
            units = prepo.feature_units(s, project_id=project_id)
        p1 = wf.resolve_patient(ws, project="c", patient="p1")
        assert features.loc[p1, HAEMOGLOBIN] == pytest.approx(13.5)
        assert features.loc[p1, WEIGHT] == pytest.approx(154 * 0.45359237)
        assert sorted(features[HAEMOGLOBIN]) == pytest.approx([9.0, 13.5, 13.5])
        assert units[HAEMOGLOBIN] == "g/dL" and units[WEIGHT] == "kg"
    finally:
        ws.close()


def test_units_that_do_not_convert_refuse_the_bundle(ws: Workspace, tmp_path: Path) -> None:
    path = bundle(
        tmp_path / "b.json",
        [
            observation("p0", PRESSURE, 120.0, "mm[Hg]"),
            observation("p1", PRESSURE, 16.0, "kPa"),
            observation("p2", PRESSURE, 130.0, "mm[Hg]"),
        ],
    )
    try:
        with pytest.raises(IngestError, match=r"b\.json.*cannot convert unit 'kPa' to 'mm\[Hg\]'"):
            wf.import_fhir_bundle(ws, project="c", path=path)
        with ws.db.session() as s:  # nothing of the refused bundle was stored
            assert not [p.name for p in repo.list_projects(s) if p.name == "c"]
    finally:
        ws.close()
