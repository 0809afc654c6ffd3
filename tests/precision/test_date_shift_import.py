"""FHIR imports store each patient's dates moved by their keyed date shift: intervals
kept, the same in every import, the dates of care nowhere in the database or on the
patient's page."""

from __future__ import annotations

import io
import json
import sqlite3
from pathlib import Path
from typing import Any

import pandas as pd
import pydicom
import pytest
from sqlalchemy import select

from dicom_support import write_dicoms
from medloop.config import Settings
from medloop.ingest.dateshift import MAX_SHIFT_WEEKS, date_offset
from medloop.store import patients as prepo
from medloop.store import repository as repo
from medloop.store.models import Item, Patient
from medloop.workflows import Workspace, ingest
from medloop.workflows import precision as wf

SECRET = "s" * 32
DATE_KEY = "a-date-shift-key-of-32-characters!"
#: The dates of care in the bundles, a day apart: no two differ by whole weeks, so no
#: shifted date can be one of them by chance.
DAYS = [f"2023-07-{day}" for day in range(19, 26)]


def fact(kind: str, fid: str, patient: str, when: dict[str, Any], **extra: Any) -> dict:
    code = {"coding": [{"system": "http://loinc.org", "code": f"code-{fid}"}]}
    resource: dict[str, Any] = {"resourceType": kind, "id": fid, **when, **extra}
    resource["subject"] = {"reference": f"Patient/{patient}"}
    if kind == "Observation":
        resource |= {"status": "final", "code": code, "valueQuantity": {"value": 1.0}}
    elif kind == "Condition":
        resource["code"] = code
    else:
        resource |= {"status": "active", "medicationCodeableConcept": code}
    return {"resource": resource}


def bundle(path: Path, facts: list[dict], patients: int = 2) -> Path:
    people = [
        {
            "resource": {
                "resourceType": "Patient",
                "id": f"p{i}",
                "identifier": [{"value": f"MRN-{i}"}],
                "birthDate": "1961-04-12",
            }
        }
        for i in range(patients)
    ]
    path.write_text(json.dumps({"resourceType": "Bundle", "type": "collection",
                                "entry": people + facts}))  # fmt: skip
    return path


def first_bundle(path: Path) -> Path:
    """Patient p0's facts in every form FHIR gives a time, p1's as dates."""
    return bundle(
        path,
        [
            fact(
                "Observation",
                "o1",
                "p0",
                {"effectiveDateTime": f"{DAYS[0]}T08:30:00+02:00"},
                note=[{"text": f"seen {DAYS[0]}T08:30, again on 20 July 2023"}],
            ),
            fact("Observation", "o2", "p0", {"effectiveDateTime": DAYS[1]}),
            fact("Condition", "c1", "p0", {"onsetDateTime": DAYS[2]}),
            fact(
                "MedicationStatement",
                "m1",
                "p0",
                {"effectivePeriod": {"start": f"{DAYS[3]}T09:00:00Z"}},
            ),
            fact("Observation", "o3", "p0", {"effectiveInstant": f"{DAYS[4]}T11:00:00Z"}),
            fact("Observation", "o4", "p1", {"effectiveDateTime": DAYS[5]}),
            fact("Condition", "c2", "p1", {"onsetDateTime": DAYS[6]}),
        ],
    )


def stored_times(ws: Workspace) -> pd.DataFrame:
    with ws.db.session() as s:
        facts = prepo.observations_frame(s, project_id=repo.get_project(s, name="c").id)
    facts["at"] = pd.to_datetime(facts["time"], format="ISO8601", utc=True)
    return facts


def original(day: int, time: str = "00:00:00+00:00") -> pd.Timestamp:
    return pd.Timestamp(f"{DAYS[day]}T{time}")


@pytest.fixture(autouse=True)
def no_keys_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MEDLOOP_SECRET_KEY", "MEDLOOP_DATE_SHIFT_KEY", "MEDLOOP_ENVIRONMENT"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def ws(tmp_path: Path) -> Any:
    workspace = Workspace.open(
        Settings(home=tmp_path / "home", secret_key=SECRET, date_shift_key=DATE_KEY)
    )
    yield workspace
    workspace.close()


def test_a_patients_dates_move_by_one_offset_keeping_every_interval(
    ws: Workspace, tmp_path: Path
) -> None:
    wf.import_fhir_bundle(ws, project="c", path=first_bundle(tmp_path / "b.json"))
    p0, p1 = (wf.resolve_patient(ws, project="c", patient=f"MRN-{i}") for i in range(2))
    facts = stored_times(ws).set_index("code")
    before = {
        "code-o1": original(0, "08:30:00+02:00"),
        "code-o2": original(1),
        "code-c1": original(2),
        "code-m1": original(3, "09:00:00+00:00"),
        "code-o3": original(4, "11:00:00+00:00"),
        "code-o4": original(5),
        "code-c2": original(6),
    }
    moved = {code: facts.loc[code, "at"] - when for code, when in before.items()}
    offsets = {p: {moved[c] for c in before if facts.loc[c, "patient"] == p} for p in (p0, p1)}
    assert offsets[p0] == {date_offset("MRN-0", key=DATE_KEY.encode())}
    assert offsets[p1] == {date_offset("MRN-1", key=DATE_KEY.encode())}
    assert offsets[p0] != offsets[p1]
    for (offset,) in offsets.values():
        assert offset.days % 7 == 0 and 0 < abs(offset.days) <= 7 * MAX_SHIFT_WEEKS
    assert facts.loc["code-o1", "time"].endswith("08:30:00+02:00")  # time of day and zone kept


def test_a_later_bundle_lines_up_with_the_first_in_a_reopened_home(tmp_path: Path) -> None:
    """No key set: the key file the first import creates in the home gives a later
    export's copy of a fact the same shifted time (stored once), and its new fact the
    same offset."""
    settings = Settings(home=tmp_path / "home", secret_key=SECRET)
    january = bundle(
        tmp_path / "jan.json", [fact("Observation", "o1", "p0", {"effectiveDateTime": DAYS[0]})]
    )
    february = bundle(
        tmp_path / "feb.json",
        [
            fact("Observation", "o1", "p0", {"effectiveDateTime": DAYS[0]}),
            fact("Observation", "o2", "p0", {"effectiveDateTime": DAYS[3]}),
        ],
    )
    ws = Workspace.open(settings)
    try:
        wf.import_fhir_bundle(ws, project="c", path=january)
    finally:
        ws.close()
    key_file = tmp_path / "home" / "date-shift.key"
    key = key_file.read_bytes()
    ws = Workspace.open(settings)
    try:
        summary = wf.import_fhir_bundle(ws, project="c", path=february)
        facts = stored_times(ws).set_index("code")
    finally:
        ws.close()
    assert key_file.read_bytes() == key
    assert (summary.observations, summary.known) == (1, 1)
    offset = date_offset("MRN-0", key=key.strip())
    assert facts.loc["code-o1", "at"] == original(0) + offset
    assert facts.loc["code-o2", "at"] - facts.loc["code-o1", "at"] == pd.Timedelta(days=3)


def test_no_date_of_care_is_stored_or_shown(ws: Workspace, tmp_path: Path) -> None:
    """Neither the database (every table, the audit log too) nor the patient's page and
    API record hold a date of care, in the notes neither; nor is the key stored."""
    wf.import_fhir_bundle(ws, project="c", path=first_bundle(tmp_path / "b.json"))
    page = wf.view_patient(ws, project="c", patient="MRN-0", viewer="dr")
    url = ws.settings.resolved_database_url.removeprefix("sqlite:///")
    with sqlite3.connect(url) as connection:
        database = "\n".join(connection.iterdump())
    shown = json.dumps(page, default=str)
    assert "[DATE]" in shown  # the note's dates, scrubbed
    for text in (database, shown):
        for day in DAYS:
            assert day not in text and day.replace("-", "") not in text
        assert "July 2023" not in text
    assert DATE_KEY not in database


def test_homes_without_a_key_do_not_share_offsets(tmp_path: Path) -> None:
    """With neither key set, pseudonyms use the public development key, so two homes
    give the same pseudonyms; their dates still move by offsets of their own random
    keys, which nobody else can recompute."""
    path = bundle(
        tmp_path / "b.json",
        [fact("Observation", f"o{i}", f"p{i}", {"effectiveDateTime": DAYS[0]}) for i in range(10)],
        patients=10,
    )
    stored = []
    for home in ("one", "two"):
        ws = Workspace.open(Settings(home=tmp_path / home))
        try:
            wf.import_fhir_bundle(ws, project="c", path=path)
            stored.append(stored_times(ws).set_index("patient")["time"].sort_index())
        finally:
            ws.close()
    assert stored[0].index.equals(stored[1].index)
    assert not stored[0].equals(stored[1])
    assert (tmp_path / "one" / "date-shift.key").read_text() != (
        tmp_path / "two" / "date-shift.key"
    ).read_text()


def test_a_patients_images_move_by_the_offset_of_their_facts(ws: Workspace, tmp_path: Path) -> None:
    """A patient imported as a FHIR bundle and as DICOM images (PatientID their FHIR
    identifier) has one pseudonym and one date shift: an image taken the day of a
    result is dated the day the stored result is."""
    wf.import_fhir_bundle(ws, project="c", path=first_bundle(tmp_path / "b.json"))
    folder = tmp_path / "ct"
    write_dicoms(folder, 2)
    for file in folder.glob("*.dcm"):
        image = pydicom.dcmread(file)
        image.PatientID, image.StudyDate = "MRN-0", DAYS[1].replace("-", "")
        image.save_as(file)
    ingest.ingest_dicom_folder(ws, folder=folder, project="ct")
    with ws.db.session() as s:
        stored = s.execute(
            select(Item.dicom_sha256, Patient.pseudonym).join(
                Patient, Item.patient_id == Patient.id
            )
        ).all()
    result = stored_times(ws).set_index("code").loc["code-o2"]
    assert {pseudonym for _, pseudonym in stored} == {result["patient"]}
    for sha, _ in stored:
        image = pydicom.dcmread(io.BytesIO(ws.blobs.get(sha)))
        assert image.StudyDate == f"{result['at']:%Y%m%d}" != DAYS[1].replace("-", "")
