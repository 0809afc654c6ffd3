"""A FHIR bundle into a cohort: one unit per feature, whatever units the bundle mixes."""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from medloop.config import Settings
from medloop.exceptions import IngestError
from medloop.ingest.dateshift import date_offset
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


UCUM = "http://unitsofmeasure.org"
CRP, SYSTOLIC, DIASTOLIC = "1988-5", "8480-6", "8462-4"


def result(
    oid: str, patient: str, code: str, value: float, unit: str, when: str, **extra: Any
) -> dict[str, Any]:
    """An Observation as FHIR servers write it: a UCUM code beside the unit's display."""
    resource = observation(patient, code, value, unit)["resource"]
    resource["valueQuantity"] = {"value": value, "unit": unit, "system": UCUM, "code": unit}
    return {"resource": {**resource, "id": oid, "effectiveDateTime": when, **extra}}


def condition(cid: str, patient: str, code: str, verification: str) -> dict[str, Any]:
    status = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
    return {
        "resource": {
            "resourceType": "Condition",
            "id": cid,
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": code}]},
            "subject": {"reference": f"Patient/{patient}"},
            "verificationStatus": {"coding": [{"system": status, "code": verification}]},
        }
    }


def facts(ws: Workspace, project: str = "c") -> Any:
    with ws.db.session() as s:
        return prepo.observations_frame(s, project_id=repo.get_project(s, name=project).id)


def features(ws: Workspace, project: str = "c") -> Any:
    with ws.db.session() as s:
        return prepo.features_frame(s, project_id=repo.get_project(s, name=project).id)


def test_withdrawn_results_and_refuted_conditions_are_no_facts(
    ws: Workspace, tmp_path: Path
) -> None:
    """A haemoglobin of 4.1 the lab withdrew (entered-in-error, a mislabelled tube)
    replaced the 13.4 before it, and a refuted diagnosis set condition:C34.1 = 1."""
    day = "2024-03-1{}T07:00:00+01:00".format
    path = bundle(
        tmp_path / "b.json",
        [
            result("hb1", "p0", HAEMOGLOBIN, 13.4, "g/dL", day(0)),
            result("hb2", "p0", HAEMOGLOBIN, 4.1, "g/dL", day(1), status="entered-in-error"),
            result("hb3", "p0", HAEMOGLOBIN, 3.0, "g/dL", day(2), status="cancelled"),
            result("hb4", "p0", HAEMOGLOBIN, 2.0, "g/dL", day(3), status="registered"),
            result("hb5", "p1", HAEMOGLOBIN, 11.0, "g/dL", day(0), status="preliminary"),
            condition("c1", "p0", "C34.1", "refuted"),
            condition("c2", "p1", "C34.1", "entered-in-error"),
            condition("c3", "p1", "E11", "confirmed"),
        ],
    )
    try:
        summary = wf.import_fhir_bundle(ws, project="c", path=path)
        p0, p1 = (wf.resolve_patient(ws, project="c", patient=p) for p in ("p0", "p1"))
        wide = features(ws)
        stored = facts(ws)
    finally:
        ws.close()
    assert wide.loc[p0, HAEMOGLOBIN] == 13.4 and wide.loc[p1, HAEMOGLOBIN] == 11.0
    assert "condition:C34.1" not in wide.columns
    assert (wide.loc[p0, "condition:E11"], wide.loc[p1, "condition:E11"]) == (0.0, 1.0)
    assert sorted(stored.loc[stored["kind"] == "observation", "value"]) == [11.0, 13.4]
    assert stored.loc[stored["kind"] == "condition", "code"].tolist() == ["E11"]
    assert summary.skipped == {
        "Observation entered-in-error": 1,
        "Observation cancelled": 1,
        "Observation registered": 1,
        "Condition refuted": 1,
        "Condition entered-in-error": 1,
    }


def test_a_result_below_the_detection_limit_is_a_text_fact_not_a_number(
    ws: Workspace, tmp_path: Path
) -> None:
    """CRP '<0.5 mg/dL' was stored as 0.5: the comparator was dropped. It is kept as the
    text it is, and the feature is missing (told to the doctor as such) rather than 0.5
    or the older 12 mg/dL."""
    below = result("crp2", "p0", CRP, 0.5, "mg/dL", "2024-03-12T07:00:00Z")
    below["resource"]["valueQuantity"]["comparator"] = "<"
    path = bundle(
        tmp_path / "b.json",
        [
            result("crp1", "p0", CRP, 12.0, "mg/dL", "2024-03-01T07:00:00Z"),
            below,
            result("crp3", "p1", CRP, 3.0, "mg/dL", "2024-03-01T07:00:00Z"),
        ],
    )
    try:
        wf.import_fhir_bundle(ws, project="c", path=path)
        p0 = wf.resolve_patient(ws, project="c", patient="p0")
        wide, stored = features(ws), facts(ws)
    finally:
        ws.close()
    assert np.isnan(wide.loc[p0, CRP])
    assert sorted(wide[CRP].dropna()) == [3.0]
    censored = stored[stored["value_text"].notna()]
    assert censored[["value_text", "unit"]].values.tolist() == [["<0.5", "mg/dL"]]
    assert censored["value"].isna().all()


def test_blood_pressure_components_are_one_fact_each(ws: Workspace, tmp_path: Path) -> None:
    """A blood-pressure panel (85354-9) keeps its values in components: it was stored
    as one fact with no value, and neither pressure became a feature."""
    component = {
        code: {
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "valueQuantity": {"value": value, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"},
        }
        for code, value in ((SYSTOLIC, 142), (DIASTOLIC, 91))
    }
    panel = {
        "resourceType": "Observation",
        "id": "bp1",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
        "subject": {"reference": "Patient/p0"},
        "effectiveDateTime": "2024-03-11T10:15:00+01:00",
        "component": list(component.values()),
    }
    path = bundle(tmp_path / "b.json", [{"resource": panel}])
    try:
        wf.import_fhir_bundle(ws, project="c", path=path)
        p0 = wf.resolve_patient(ws, project="c", patient="p0")
        wide, stored = features(ws), facts(ws)
        with ws.db.session() as s:
            units = prepo.feature_units(s, project_id=repo.get_project(s, name="c").id)
        key = wf.date_shift_key(ws.settings)
    finally:
        ws.close()
    assert (wide.loc[p0, SYSTOLIC], wide.loc[p0, DIASTOLIC]) == (142.0, 91.0)
    assert units[SYSTOLIC] == units[DIASTOLIC] == "mm[Hg]"
    rows = stored[["patient", "code", "value", "unit", "time"]].values.tolist()
    zone = datetime.timezone(datetime.timedelta(hours=1))
    # the time of care moved by p0's date shift (test_date_shift_import.py)
    shifted = str(datetime.datetime(2024, 3, 11, 10, 15, tzinfo=zone) + date_offset("p0", key=key))
    assert rows == [
        [p0, SYSTOLIC, 142.0, "mm[Hg]", shifted],
        [p0, DIASTOLIC, 91.0, "mm[Hg]", shifted],
    ]


def test_molar_units_convert_by_the_analytes_molar_mass(ws: Workspace, tmp_path: Path) -> None:
    """Haemoglobin 8.1 mmol/L (a Dutch lab) and creatinine 97 umol/L were refused beside
    g/dL and mg/dL; a display 'g/dl' beside the UCUM code 'g/dL' was a unit of its own."""
    hb_dl = result("hb2", "p2", HAEMOGLOBIN, 9.0, "g/dL", "2024-01-02T10:00:00Z")
    hb_dl["resource"]["valueQuantity"]["unit"] = "g/dl"
    path = bundle(
        tmp_path / "b.json",
        [
            result("hb0", "p0", HAEMOGLOBIN, 13.1, "g/dL", "2024-01-02T10:00:00Z"),
            result("hb1", "p1", HAEMOGLOBIN, 8.1, "mmol/L", "2024-01-02T10:00:00Z"),
            hb_dl,
            result("cr0", "p0", "2160-0", 0.9, "mg/dL", "2024-01-02T10:00:00Z"),
            result("cr1", "p1", "2160-0", 1.1, "mg/dL", "2024-01-02T10:00:00Z"),
            result("cr2", "p2", "2160-0", 97.0, "umol/L", "2024-01-02T10:00:00Z"),
        ],
    )
    later = bundle(  # a later export in mmol/L only: converted to the cohort's g/dL
        tmp_path / "later.json",
        [result("hb9", "p0", HAEMOGLOBIN, 8.0, "mmol/L", "2024-02-02T10:00:00Z")],
    )
    try:
        wf.import_fhir_bundle(ws, project="c", path=path)
        p0, p1, p2 = (wf.resolve_patient(ws, project="c", patient=f"p{i}") for i in range(3))
        first = features(ws)
        wf.import_fhir_bundle(ws, project="c", path=later)
        second = features(ws)
        with ws.db.session() as s:
            units = prepo.feature_units(s, project_id=repo.get_project(s, name="c").id)
    finally:
        ws.close()
    assert first.loc[p1, HAEMOGLOBIN] == pytest.approx(8.1 / 0.6206, rel=1e-3)
    assert first.loc[p2, HAEMOGLOBIN] == 9.0
    assert first.loc[p2, "2160-0"] == pytest.approx(97 / 88.42, rel=1e-3)
    assert second.loc[p0, HAEMOGLOBIN] == pytest.approx(8.0 / 0.6206, rel=1e-3)
    assert units[HAEMOGLOBIN] == "g/dL" and units["2160-0"] == "mg/dL"


def test_units_that_do_not_convert_name_the_observations(ws: Workspace, tmp_path: Path) -> None:
    cholesterol = "2093-3"  # no molar mass known here: mmol/L beside mg/dL is refused
    path = bundle(
        tmp_path / "b.json",
        [
            result("ch0", "p0", cholesterol, 190.0, "mg/dL", "2024-01-02T10:00:00Z"),
            result("ch1", "p1", cholesterol, 210.0, "mg/dL", "2024-01-02T10:00:00Z"),
            result("ch2", "p2", cholesterol, 5.2, "mmol/L", "2024-01-02T10:00:00Z"),
        ],
    )
    try:
        with pytest.raises(IngestError, match=r"'mmol/L' to 'mg/dL'.*\(Observation ch2\)"):
            wf.import_fhir_bundle(ws, project="c", path=path)
    finally:
        ws.close()


def test_importing_a_bundle_again_stores_each_fact_once(ws: Workspace, tmp_path: Path) -> None:
    """Features were replaced on a second import, but every fact was added again."""
    path = bundle(
        tmp_path / "b.json",
        [
            result("hb0", "p0", HAEMOGLOBIN, 13.1, "g/dL", "2024-01-02T10:00:00Z"),
            result("hb1", "p1", HAEMOGLOBIN, 12.0, "g/dL", "2024-01-02T10:00:00Z"),
            condition("c1", "p1", "E11", "confirmed"),
        ],
    )
    try:
        first = wf.import_fhir_bundle(ws, project="c", path=path)
        again = wf.import_fhir_bundle(ws, project="c", path=path)
        stored = facts(ws)
    finally:
        ws.close()
    assert (first.observations, first.known) == (3, 0)
    assert (again.observations, again.known) == (0, 3)
    assert len(stored) == 3


def test_a_bundle_of_new_results_keeps_the_earlier_ones(ws: Workspace, tmp_path: Path) -> None:
    """A monthly export of new results only left p0's haemoglobin of January missing
    (p1 had one in February) and their diabetes 0, though both were stored as facts."""
    january = bundle(
        tmp_path / "jan.json",
        [
            result("hb0", "p0", HAEMOGLOBIN, 13.4, "g/dL", "2024-01-05"),
            result("hb1", "p1", HAEMOGLOBIN, 12.0, "g/dL", "2024-01-05T08:00:00+01:00"),
            condition("c0", "p0", "E11", "confirmed"),
        ],
    )
    february = bundle(
        tmp_path / "feb.json",
        [
            result("hb2", "p1", HAEMOGLOBIN, 8.0, "mmol/L", "2024-02-05T08:00:00+01:00"),
            condition("c1", "p1", "E11", "confirmed"),
        ],
    )
    try:
        wf.import_fhir_bundle(ws, project="c", path=january)
        wf.import_fhir_bundle(ws, project="c", path=february)
        p0, p1 = (wf.resolve_patient(ws, project="c", patient=p) for p in ("p0", "p1"))
        wide = features(ws)
    finally:
        ws.close()
    assert wide.loc[p0, HAEMOGLOBIN] == 13.4
    assert wide.loc[p1, HAEMOGLOBIN] == pytest.approx(8.0 / 0.6206, rel=1e-3)
    assert (wide.loc[p0, "condition:E11"], wide.loc[p1, "condition:E11"]) == (1.0, 1.0)
