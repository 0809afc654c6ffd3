"""FHIR bundle and table import: pseudonyms only, identifiers scrubbed, clear errors."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import pandas as pd
import pytest

from medloop.exceptions import IngestError, InvalidInputError
from medloop.ingest import pseudonymize
from medloop.ingest.dateshift import date_offset, shift_time
from medloop.precision import (
    CsvDialect,
    observations_to_wide,
    read_fhir_bundle,
    read_ids,
    read_table,
    safe_harbor_ages,
    scrub_identifiers,
)
from medloop.precision.records import identifier_pattern, sniff_separator

KEY = b"test-key"
DATE_KEY = b"test-date-shift-key-of-32-characters"

BUNDLE = {
    "resourceType": "Bundle",
    "type": "collection",
    "entry": [
        {
            "fullUrl": "urn:uuid:11111111-1111-1111-1111-111111111111",
            "resource": {
                "resourceType": "Patient",
                "id": "pat1",
                "identifier": [{"system": "urn:mrn", "value": "MRN-778899"}],
                "name": [{"family": "Smithers", "given": ["Waylon"]}],
                "gender": "male",
                "birthDate": "1961-04-12",
                "telecom": [{"system": "phone", "value": "+44 20 7946 0958"}],
            },
        },
        {
            "resource": {
                "resourceType": "Observation",
                "id": "o1",
                "status": "final",
                "code": {
                    "coding": [
                        {"system": "http://loinc.org", "code": "718-7", "display": "Hemoglobin"}
                    ]
                },
                "subject": {"reference": "Patient/pat1"},
                "effectiveDateTime": "2024-01-02T10:00:00Z",
                "valueQuantity": {"value": 13.5, "unit": "g/dL"},
                "note": [{"text": "Waylon Smithers (MRN-778899) feels fine, mail w@x.org"}],
            },
        },
        {
            "resource": {
                "resourceType": "Condition",
                "id": "c1",
                "code": {
                    "coding": [
                        {
                            "system": "http://snomed.info/sct",
                            "code": "44054006",
                            "display": "Diabetes mellitus type 2",
                        }
                    ]
                },
                "subject": {"reference": "urn:uuid:11111111-1111-1111-1111-111111111111"},
                "onsetDateTime": "2019-05-01",
            },
        },
        {
            "resource": {
                "resourceType": "MedicationStatement",
                "id": "m1",
                "status": "active",
                "medicationCodeableConcept": {
                    "coding": [{"code": "860975", "display": "metformin"}]
                },
                "subject": {"reference": "Patient/pat1"},
                "effectiveDateTime": "2019-06-01",
            },
        },
        {"resource": {"resourceType": "Organization", "id": "org1", "name": "Clinic"}},
    ],
}


def write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(data))
    return path


def test_fhir_bundle_import(tmp_path: Path) -> None:
    records = read_fhir_bundle(write(tmp_path, BUNDLE), key=KEY, date_key=DATE_KEY)
    pseudonym = pseudonymize("MRN-778899", key=KEY)
    assert records.patients.to_dict(orient="records") == [
        {"patient": pseudonym, "sex": "male", "birth_year": 1961, "deceased": False}
    ]
    obs = records.observations.iloc[0]
    assert (obs["patient"], obs["code"], obs["value"], obs["unit"]) == (
        pseudonym,
        "718-7",
        13.5,
        "g/dL",
    )
    assert obs["note"] == "[REDACTED] [REDACTED] ([REDACTED]) feels fine, mail [EMAIL]"
    assert records.conditions["code"].tolist() == ["44054006"]  # urn:uuid reference resolved
    assert records.conditions["patient"].tolist() == [pseudonym]
    assert records.medications[["name", "status"]].iloc[0].tolist() == ["metformin", "active"]
    text = pd.concat(
        [records.patients, records.observations, records.conditions, records.medications]
    ).to_csv()
    for secret in ("Smithers", "Waylon", "778899", "7946", "pat1", "1961-04-12"):
        assert secret not in text


def test_fhir_errors_name_the_file(tmp_path: Path) -> None:
    broken = json.loads(json.dumps(BUNDLE))
    broken["entry"][1]["resource"]["subject"]["reference"] = "Patient/nobody"
    with pytest.raises(IngestError, match=r"bundle\.json.*unknown patient 'Patient/nobody'"):
        read_fhir_bundle(write(tmp_path, broken), key=KEY, date_key=DATE_KEY)
    with pytest.raises(IngestError, match="expected a FHIR Bundle"):
        read_fhir_bundle(write(tmp_path, {"resourceType": "Patient"}), key=KEY, date_key=DATE_KEY)
    invalid = json.loads(json.dumps(BUNDLE))
    invalid["entry"][0]["resource"]["gender"] = ["not", "a", "code"]
    with pytest.raises(IngestError, match="invalid FHIR R4 bundle"):
        read_fhir_bundle(write(tmp_path, invalid), key=KEY, date_key=DATE_KEY)


def test_scrub_identifiers() -> None:
    text = (
        "John Doe, MRN 12345678, born 03/04/1950, phone (555) 123-4567, "
        "see https://example.org/x, john.doe@mail.com; ID AB12CD34; Hb 13.5 g/dL"
    )
    out = scrub_identifiers(text, identifiers=["John", "Doe"])
    assert out == (
        "[REDACTED] [REDACTED], MRN [PHONE], born [DATE], phone [PHONE], "
        "see [URL] [EMAIL]; ID [ID]; Hb 13.5 g/dL"
    ) or all(s not in out for s in ("John", "Doe", "12345678", "1950", "123-4567", "AB12CD34"))
    assert "13.5 g/dL" in out
    assert scrub_identifiers(None) is None


def test_read_table_pseudonymises_and_scrubs(tmp_path: Path) -> None:
    path = tmp_path / "patients.csv"
    path.write_text("mrn,age,Hb,comment\nA-1,50,13.1,A-1 says hi\nB-2,61,,call 555-111-2222\n")
    frame = read_table(
        path,
        key=KEY,
        id_column="mrn",
        columns={"age": "age", "Hb": "hemoglobin", "comment": "note"},
        text_columns=["comment"],
    )
    assert list(frame.index) == [pseudonymize("A-1", key=KEY), pseudonymize("B-2", key=KEY)]
    assert list(frame.columns) == ["age", "hemoglobin", "note"]
    assert frame["note"].tolist() == ["[REDACTED] says hi", "call [PHONE]"]
    assert pd.isna(frame["hemoglobin"].iloc[1])


def test_read_table_errors_name_file_and_column(tmp_path: Path) -> None:
    path = tmp_path / "patients.csv"
    path.write_text("mrn,age\nA,1\n,2\n")
    with pytest.raises(IngestError, match=r"patients\.csv.*'id'"):
        read_table(path, key=KEY, id_column="id")
    with pytest.raises(IngestError, match=r"patients\.csv.*\['weight'\]"):
        read_table(path, key=KEY, id_column="mrn", columns={"weight": "w"})
    with pytest.raises(IngestError, match=r"patients\.csv.*empty id \(line 3\)"):
        read_table(path, key=KEY, id_column="mrn")
    with pytest.raises(IngestError, match="no such file"):
        read_table(tmp_path / "missing.csv", key=KEY, id_column="mrn")


def test_read_table_refuses_short_rows_text_among_numbers_and_no_rows(tmp_path: Path) -> None:
    path = tmp_path / "cohort.csv"
    path.write_text("mrn,age,stage,event\n1,50,IIa,1\n2,abc,IIb,0\n3,60,I,0\n4,71,III,1\n")
    with pytest.raises(IngestError, match=r"cohort\.csv: column 'age' holds numbers, but line 3"):
        read_table(path, key=KEY, id_column="mrn")
    path.write_text("mrn,age,stage,event\n1,50,IIa,1\n2,61\n")
    with pytest.raises(IngestError, match=r"cohort\.csv: line 3 has 2 fields, the header 4"):
        read_table(path, key=KEY, id_column="mrn")
    path.write_text("mrn,age,stage,event\n1,50,IIa,1\n2,61,I,0\n1,70,III,1\n")
    with pytest.raises(
        IngestError, match=r"cohort\.csv: column 'mrn' repeats a patient id \(line 4"
    ):
        read_table(path, key=KEY, id_column="mrn")
    path.write_text("mrn,age,stage,event\n")
    with pytest.raises(IngestError, match=r"cohort\.csv: no patient rows"):
        read_table(path, key=KEY, id_column="mrn")
    # empty cells are missing values; a column mostly of text is a category
    path.write_text("mrn,age,stage,event\n1,50,1,1\n2,,IIb,0\n3,60,IIIa,0\n4,71,IV,1\n")
    frame = read_table(path, key=KEY, id_column="mrn")
    assert frame["age"].isna().sum() == 1 and frame["stage"].tolist() == ["1", "IIb", "IIIa", "IV"]
    table = frame.assign(age=["50", "x", "60", "71"]).reset_index(names="mrn")
    table.to_parquet(tmp_path / "cohort.parquet")  # Parquet: a row number, no header line
    with pytest.raises(IngestError, match=r"column 'age' holds numbers, but row 2 has 'x'"):
        read_table(tmp_path / "cohort.parquet", key=KEY, id_column="mrn")
    frame.reset_index(names="mrn").to_parquet(tmp_path / "clean.parquet")
    read = read_table(tmp_path / "clean.parquet", key=KEY, id_column="mrn")
    assert read.shape == (4, 3) and read["age"].isna().sum() == 1


def test_read_table_refuses_columns_that_identify_the_patient(tmp_path: Path) -> None:
    """Identifiers must not become features: a column named like one, or holding e-mail
    addresses, dates or phone numbers, or a value of its own for every patient, is refused
    with the ways out; dropped, mapped or scrubbed as text, the table imports."""
    n = 12
    base = pd.DataFrame(
        {
            "id": [f"A{i}" for i in range(n)],
            "age": range(40, 40 + n),
            "stage": ["I", "II", "III"] * 4,
            "family_history": ["yes", "no"] * 6,
        }
    )
    refusals = {
        "dob": ["1960-01-01"] * n,
        "DateOfBirth": ["x"] * n,
        "Zip_Code": ["02139"] * n,
        "patient_name": ["same"] * n,
        "contact": [f"p{i}@example.org" for i in range(n)],
        "seen_on": [f"2020-03-{i + 1:02d}" for i in range(n)],
        "callback": [f"555-010-{i:04d}" for i in range(n)],
        "remark": [f"felt unwell on day {i}" for i in range(n)],
    }
    for column, values in refusals.items():
        path = tmp_path / f"{column}.csv"
        base.assign(**{column: values}).to_csv(path, index=False)
        with pytest.raises(IngestError, match=rf"column '{column}' looks like an identifier"):
            read_table(path, key=b"k", id_column="id")
    path = tmp_path / "ok.csv"
    base.to_csv(path, index=False)
    assert list(read_table(path, key=b"k", id_column="id").columns) == [
        "age", "stage", "family_history",
    ]  # fmt: skip
    path = tmp_path / "mixed.csv"
    base.assign(dob=refusals["dob"], remark=refusals["remark"]).to_csv(path, index=False)
    with pytest.raises(IngestError, match=r"\(--drop dob\), keep it as scrubbed free text"):
        read_table(path, key=b"k", id_column="id")
    kept = read_table(path, key=b"k", id_column="id", drop_columns=["dob"], text_columns=["remark"])
    assert "dob" not in kept.columns and kept["remark"].iloc[0] == "felt unwell on day 0"
    with pytest.raises(
        IngestError, match=r"'dob' looks like an identifier \(line 2 holds a date\)"
    ):
        read_table(path, key=b"k", id_column="id", columns={"age": "age", "dob": "birth"})
    path = tmp_path / "drugs.csv"
    base.assign(drug_name=["tamoxifen", "letrozole"] * 6).to_csv(path, index=False)
    with pytest.raises(IngestError, match="its name says it identifies the patient"):
        read_table(path, key=b"k", id_column="id")
    chosen = read_table(path, key=b"k", id_column="id", columns={"age": "age", "drug_name": "drug"})
    assert list(chosen.columns) == ["age", "drug"]  # a name chosen in a mapping is trusted
    with pytest.raises(IngestError, match="columns to drop not in the file"):
        read_table(path, key=b"k", id_column="id", drop_columns=["nope"])


def test_fhir_text_values_are_scrubbed_facts_and_never_numbers(tmp_path: Path) -> None:
    """A valueString is scrubbed like a note; a coded answer (smoking status) stays its
    display text; neither becomes a number among the features."""
    data = json.loads(json.dumps(BUNDLE))
    social = {"coding": [{"system": "http://loinc.org", "code": "72166-2"}]}
    data["entry"] += [
        {
            "resource": {
                "resourceType": "Observation", "id": "o2", "status": "final",
                "code": {"coding": [{"code": "home"}]}, "subject": {"reference": "Patient/pat1"},
                "valueString": "Lives with Waylon Smithers jr, call +44 20 7946 0958",
            }
        },
        {
            "resource": {
                "resourceType": "Observation", "id": "o3", "status": "final", "code": social,
                "subject": {"reference": "Patient/pat1"},
                "valueCodeableConcept": {
                    "coding": [{"code": "449868002", "display": "Smokes tobacco daily"}]
                },
            }
        },
    ]  # fmt: skip
    records = read_fhir_bundle(write(tmp_path, data), key=KEY, date_key=DATE_KEY)
    values = records.observations.set_index("code")["value"]
    assert values["home"] == "Lives with [REDACTED] [REDACTED] jr, call [REDACTED]"  # their phone
    assert values["72166-2"] == "Smokes tobacco daily"
    wide = observations_to_wide(records.observations)
    assert list(wide.columns) == ["718-7"] and wide.iloc[0, 0] == 13.5


def test_fhir_bundle_with_one_patient_twice_is_refused(tmp_path: Path) -> None:
    data = json.loads(json.dumps(BUNDLE))
    data["entry"].append(json.loads(json.dumps(data["entry"][0])))
    data["entry"][-1]["fullUrl"] = "urn:uuid:22222222-2222-2222-2222-222222222222"
    with pytest.raises(IngestError, match=r"two Patient resources are one patient \('pat1'\)"):
        read_fhir_bundle(write(tmp_path, data), key=KEY, date_key=DATE_KEY)


@pytest.mark.parametrize(
    ("cell", "said"),
    [
        ("call wife 555-123-4567", "line 5 holds a phone number"),
        ("email john.doe@x.com", "line 5 holds an e-mail address"),
        ("seen on 2020-03-04", "line 5 holds a date"),
        ("patient anxious about the scan", "line 5 holds free text"),
    ],
)
def test_one_identifying_cell_is_enough_to_refuse_a_column(
    tmp_path: Path, cell: str, said: str
) -> None:
    """A comment column that is mostly "none" still must not carry one patient's phone
    number, e-mail, date or free text into the features as it is."""
    comments = ["none"] * 20
    comments[3] = cell
    path = tmp_path / "t.csv"
    pd.DataFrame({"id": range(20), "age": range(20), "comment": comments}).to_csv(path, index=False)
    with pytest.raises(IngestError, match=rf"column 'comment' looks like an identifier \({said}\)"):
        read_table(path, key=b"k", id_column="id")
    kept = read_table(path, key=b"k", id_column="id", text_columns=["comment"])
    assert kept["comment"].iloc[3] == scrub_identifiers(cell, identifiers=["3"])  # as --text


def test_read_ids_reads_only_the_id_column(tmp_path: Path) -> None:
    """An id list for checks before an import: pseudonyms as `read_table` gives them,
    without reading (or judging) the other columns."""
    frame = pd.DataFrame({"mrn": ["A1", None, "B2"], "note": ["x", "y", "z"], "age": [1, 2, 3]})
    frame.to_csv(tmp_path / "t.csv", index=False)
    frame.to_parquet(tmp_path / "t.parquet")
    for name in ("t.csv", "t.parquet"):
        ids = read_ids(tmp_path / name, key=KEY, id_column="mrn")
        assert list(ids) == [pseudonymize("A1", key=KEY), pseudonymize("B2", key=KEY)]
    with pytest.raises(IngestError, match="missing id column 'id'"):
        read_ids(tmp_path / "t.csv", key=KEY, id_column="id")


def test_numbers_that_identify_the_patient_are_refused(tmp_path: Path) -> None:
    """Record numbers and dates written as numbers must not become features either;
    follow-up days, ages and counts, unique or not, stay features."""
    n = 30
    base = pd.DataFrame(
        {
            "id": [f"A{i}" for i in range(n)],
            "time_days": [100 + 37 * i for i in range(n)],  # one value each: a measurement
            "pnodes": [i % 7 for i in range(n)],
        }
    )
    refusals = {
        "hospital_number": [9_000_000 + 37 * i for i in range(n)],
        "identifier": [4_820_000_000 + 7919 * i for i in range(n)],
        "born": [19480513 + i for i in range(n)],
        "post_code": [2139] * n,
    }
    for column, values in refusals.items():
        path = tmp_path / f"{column}.csv"
        base.assign(**{column: values}).to_csv(path, index=False)
        with pytest.raises(IngestError, match=rf"column '{column}' looks like an identifier"):
            read_table(path, key=b"k", id_column="id")
    base.to_csv(tmp_path / "ok.csv", index=False)
    assert list(read_table(tmp_path / "ok.csv", key=b"k", id_column="id").columns) == [
        "time_days", "pnodes",
    ]  # fmt: skip
    # platelets per microlitre: six digits, one value each, a measurement all the same
    platelets = [150_000 + 7_000 * i for i in range(n)]
    base.assign(platelets=platelets).to_csv(tmp_path / "lab.csv", index=False)
    assert "platelets" in read_table(tmp_path / "lab.csv", key=b"k", id_column="id").columns
    # a column chosen by name is the user's to vouch for, as the refusal says
    path = tmp_path / "identifier.csv"
    chosen = read_table(path, key=b"k", id_column="id", columns={"identifier": "lab_code"})
    assert list(chosen.columns) == ["lab_code"]


def test_notes_are_scrubbed_of_what_the_import_leaves_out(tmp_path: Path) -> None:
    """`--drop name --text notes`: the dropped name (and record number) is scrubbed from
    that patient's notes, not only the id."""
    frame = pd.DataFrame(
        {
            "id": ["A1", "A2", "A3"],
            "name": ["Jane Roe", "Alonso Quixote", "Wei Li"],
            "notes": [
                "Jane Roe admitted; Jane lives with daughter",
                "Quixote, MRN 4712, stable",
                "Li reports pain, 54 mg given",
            ],
            "mrn": ["4711", "4712", "4713"],
            "age": [54, 61, 54],
        }
    )
    frame.to_csv(tmp_path / "t.csv", index=False)
    read = read_table(
        tmp_path / "t.csv",
        key=b"k",
        id_column="id",
        drop_columns=["name", "mrn"],
        text_columns=["notes"],
    )
    assert list(read["notes"]) == [
        "[REDACTED] admitted; [REDACTED] lives with daughter",
        "[REDACTED], MRN [REDACTED], stable",
        "[REDACTED] reports pain, 54 mg given",  # a two-letter name too
    ]


def test_fhir_names_and_coded_text_are_scrubbed_of_the_patients_own_words(tmp_path: Path) -> None:
    data = json.loads(json.dumps(BUNDLE))
    data["entry"][0]["resource"]["address"] = [
        {"line": ["Rosebank Cottage"], "city": "Little Whinging", "postalCode": "KT22 7AA"}
    ]
    data["entry"].append(
        {
            "resource": {
                "resourceType": "Condition", "id": "c9", "subject": {"reference": "Patient/pat1"},
                "code": {"text": "Fall at Rosebank Cottage (Waylon Smithers, MRN-778899)"},
            }
        }
    )  # fmt: skip
    data["entry"].append(
        {
            "resource": {
                "resourceType": "Observation", "id": "o9", "status": "final",
                "subject": {"reference": "Patient/pat1"},
                "code": {"coding": [{"system": "http://loinc.org", "code": "44261-6",
                                     "display": PHQ9}]},
                "valueString": "Lives alone at Rosebank Cottage, Little Whinging",
            }
        }
    )  # fmt: skip
    records = read_fhir_bundle(write(tmp_path, data), key=KEY, date_key=DATE_KEY)
    text = records.conditions.to_string() + records.observations.to_string()
    for own in ("Rosebank", "Whinging", "Smithers", "778899"):
        assert own not in text
    names = set(records.observations["name"])
    assert PHQ9 in names  # a terminology's name is not free text


PHQ9 = "Patient Health Questionnaire 9 item (PHQ-9) total score [Reported]"
LOCAL = "http://hospital.example/codes"


def test_fhir_names_a_person_wrote_are_scrubbed_like_notes(tmp_path: Path) -> None:
    """A concept's text and a local code system's display are free text: another person's
    name, a phone number, a date, an e-mail address in them are scrubbed as in notes (they
    were kept); a terminology's names (LOINC, SNOMED CT, HL7's) only lose the patient's own
    words, so "Patient Health Questionnaire" and "COVID-19" stay as they are."""
    data = json.loads(json.dumps(BUNDLE))
    subject = {"reference": "Patient/pat1"}
    data["entry"] += [
        {"resource": {
            "resourceType": "Condition", "id": "c9", "subject": subject,
            "code": {"text": "Fall at home 3 March 2024, seen by Dr Hibbert (555-123-4567)"},
        }},
        {"resource": {
            "resourceType": "Condition", "id": "c10", "subject": subject,
            "code": {"coding": [{"system": LOCAL, "code": "F1",
                                 "display": "Referred by Dr Hibbert, hibbert@clinic.org"}]},
        }},
        {"resource": {
            "resourceType": "MedicationStatement", "id": "m9", "status": "active",
            "subject": subject,
            "medicationCodeableConcept": {"text": "Amoxicillin from Mrs Krabappel 2024-03-01"},
        }},
        {"resource": {
            "resourceType": "Observation", "id": "o9", "status": "final", "subject": subject,
            "code": {"coding": [{"system": "http://loinc.org", "code": "44261-6",
                                 "display": PHQ9}]},
            "component": [
                {"code": {"text": "asked by Nurse Hoover on 02/03/2024"},
                 "valueCodeableConcept": {"text": "Answered for him by Mr Flanders, 555-987-6543"}},
                {"code": {"coding": [{"system": "http://snomed.info/sct", "code": "840539006",
                                      "display": "COVID-19"}]},
                 "valueQuantity": {"value": 1, "unit": "score (ask Dr Hibbert)"}},
            ],
        }},
    ]  # fmt: skip
    records = read_fhir_bundle(write(tmp_path, data), key=KEY, date_key=DATE_KEY)
    frames = (records.conditions, records.medications, records.observations)
    written = [f[c] for f in frames for c in ("name", "value", "unit") if c in f.columns]
    text = " ".join(str(v) for column in written for v in column)
    for other in ("Hibbert", "Krabappel", "Hoover", "Flanders", "555-", "2024", "clinic.org"):
        assert other not in text
    assert records.conditions["name"].tolist()[-2:] == [
        "Fall at home [DATE], seen by Dr [NAME] ([PHONE])",
        "Referred by Dr [NAME], [EMAIL]",
    ]
    assert records.medications["name"].iloc[-1] == "Amoxicillin from Mrs [NAME] [DATE]"
    observed = records.observations.set_index("resource").loc["o9"]
    assert observed["name"].tolist() == ["asked by Nurse [NAME] on [DATE]", "COVID-19"]
    assert observed["value"].iloc[0] == "Answered for him by Mr [NAME], [PHONE]"
    assert observed["unit"].iloc[1] == "score (ask Dr [NAME])"


def _observation(oid: str, **fields: object) -> dict:
    code = {"coding": [{"system": "http://loinc.org", "code": f"code-{oid}"}]}
    subject = {"reference": "Patient/pat1"}
    resource = {"resourceType": "Observation", "id": oid, "status": "final", "code": code}
    return {"resource": {**resource, "subject": subject, **fields}}


def test_an_observations_time_is_its_periods_start_else_end_else_when_issued(
    tmp_path: Path,
) -> None:
    """An Observation with only a period's end, or only its `issued` instant, was stored
    without a time (the latest result could then be an older one); a dated answer
    (valueDateTime) was stored without a value. All move by the patient's date shift."""
    data = json.loads(json.dumps(BUNDLE))
    value = {"valueQuantity": {"value": 1.0}}
    data["entry"] += [
        _observation("both", effectivePeriod={"start": "2024-02-01T08:00:00Z",
                                              "end": "2024-02-03T08:00:00Z"}, **value),
        _observation("end", effectivePeriod={"end": "2024-02-05T08:00:00Z"}, **value),
        _observation("issued", issued="2024-02-07T09:30:00+01:00", **value),
        _observation("period-over-issued", effectivePeriod={"end": "2024-02-09"},
                     issued="2024-02-10T09:30:00Z", **value),
        _observation("none", **value),
        _observation("dated", effectiveDateTime="2024-02-11", valueDateTime="2023-11-20"),
        _observation("dated-time", valueDateTime="2023-11-21T10:15:00+01:00"),
    ]  # fmt: skip
    records = read_fhir_bundle(write(tmp_path, data), key=KEY, date_key=DATE_KEY)
    offset = date_offset("MRN-778899", key=DATE_KEY)
    facts = records.observations.set_index("resource")
    times = {
        "both": "2024-02-01T08:00:00Z",
        "end": "2024-02-05T08:00:00Z",
        "issued": "2024-02-07T09:30:00+01:00",
        "period-over-issued": "2024-02-09",
    }
    for oid, original in times.items():
        moved = pd.Timestamp(str(facts.loc[oid, "time"]))
        assert moved == pd.Timestamp(original) + offset, oid
    assert facts.loc["none", "time"] is None
    assert facts.loc["dated", "value"] == shift_time("2023-11-20", offset)
    assert facts.loc["dated-time", "value"] == shift_time("2023-11-21T10:15:00+01:00", offset)
    assert facts.loc["dated-time", "value"].endswith("T10:15:00+01:00")


def test_a_date_its_shift_moves_out_of_the_calendar_is_refused_naming_the_resource(
    tmp_path: Path,
) -> None:
    """Year 1 moved back, or 9999 moved on, was an OverflowError's traceback."""
    early = date_offset("MRN-778899", key=DATE_KEY) < datetime.timedelta(0)
    data = json.loads(json.dumps(BUNDLE))
    far = "0001-01-02" if early else "9999-12-30"
    data["entry"].append(_observation("far", valueDateTime=far))
    with pytest.raises(IngestError, match=r"Observation 'far': .* leaves the calendar"):
        read_fhir_bundle(write(tmp_path, data), key=KEY, date_key=DATE_KEY)


def test_patients_of_90_or_more_share_one_birth_year(tmp_path: Path) -> None:
    """HIPAA Safe Harbor counts ages over 89 as identifying: 1925 was stored as it was."""
    data = json.loads(json.dumps(BUNDLE))
    data["entry"][0]["resource"]["birthDate"] = "1925-01-01"
    oldest = datetime.date.today().year - 90
    (year,) = read_fhir_bundle(write(tmp_path, data), key=KEY, date_key=DATE_KEY).patients[
        "birth_year"
    ]
    assert year == oldest
    younger = read_fhir_bundle(write(tmp_path, BUNDLE), key=KEY, date_key=DATE_KEY).patients[
        "birth_year"
    ]
    assert younger.tolist() == [1961]


def test_ages_of_90_or_more_in_a_table_become_90(tmp_path: Path) -> None:
    """The tabular twin of the birth-year rule: an age of 97 was stored as it was. Only
    columns named for ages are capped (a stage or a dosage of 120 is not an age), in the
    column's unit; an age in a unit not known is refused."""
    path = tmp_path / "patients.csv"
    path.write_text(
        "id,AgeAtDiagnosis,age_years,age_months,stage,dosage,sex\n"
        "p1,97,89.5,1200,2,120,F\np2,54,104,900,3,95,M\np3,,90,1079,1,10,F\n"
    )
    frame = safe_harbor_ages(read_table(path, key=KEY, id_column="id"), {"age_months": "month"})
    assert frame["AgeAtDiagnosis"].tolist()[:2] == [90, 54]
    assert pd.isna(frame["AgeAtDiagnosis"].iloc[2])
    assert frame["age_years"].tolist() == [89.5, 90, 90]
    assert frame["age_months"].tolist() == [1080, 900, 1079]
    assert frame["stage"].tolist() == [2, 3, 1]
    assert frame["dosage"].tolist() == [120, 95, 10]
    with pytest.raises(InvalidInputError, match=r"age_months.*'fortnight'"):
        safe_harbor_ages(frame, {"age_months": "fortnight"})


#: A German lab system's export: semicolons, Windows encoding, decimal commas, thousands
#: points, "n.a." and "-" for missing values, a trailing separator on every line.
EUROPEAN = (
    "fall_nr;alter;haemoglobin;thrombozyten;geschlecht;\r\n"
    '1001;54;"13,1";1.250;männlich;\r\n'
    "1002;61;11,8;980;weiblich;\r\n"
    "1003;47;n.a.;2.100;weiblich;\r\n"
    "1004;72;-;1.875;männlich;\r\n"
)
GERMAN = CsvDialect(encoding="cp1252", decimal=",", thousands=".", na_values=("n.a.", "-"))


def test_a_european_export_is_read_in_its_dialect(tmp_path: Path) -> None:
    path = tmp_path / "labor.csv"
    path.write_bytes(EUROPEAN.encode("cp1252"))
    frame = read_table(path, key=KEY, id_column="fall_nr", dialect=GERMAN)
    assert frame["haemoglobin"].tolist()[:2] == [13.1, 11.8]
    assert frame["haemoglobin"].isna().tolist() == [False, False, True, True]
    assert frame["thrombozyten"].tolist() == [1250, 980, 2100, 1875]
    assert frame["geschlecht"].tolist() == ["männlich", "weiblich", "weiblich", "männlich"]
    assert CsvDialect(encoding="cp1252").sep is None  # the separator is found in the header
    assert sniff_separator(EUROPEAN) == ";" and sniff_separator("id\n1\n") == ","


def test_a_european_export_read_as_an_english_one_is_refused_where_it_goes_wrong(
    tmp_path: Path,
) -> None:
    """'13,1' became the category '13,1', '1.250' platelets 1.25, and a cp1252 file was
    refused without saying where; the short-row check split lines on ',' whatever the
    separator."""
    path = tmp_path / "labor.csv"
    path.write_bytes(EUROPEAN.encode("cp1252"))
    with pytest.raises(IngestError, match=r"line 2 is not utf-8-sig text.*--encoding cp1252"):
        read_table(path, key=KEY, id_column="fall_nr")
    cp1252 = CsvDialect(encoding="cp1252", na_values=("n.a.", "-"))
    with pytest.raises(IngestError, match=r"'haemoglobin'.*comma \('13,1', line 2.*--decimal ,"):
        read_table(path, key=KEY, id_column="fall_nr", dialect=cp1252)
    commas = CsvDialect(encoding="cp1252", decimal=",", na_values=("n.a.", "-"))
    with pytest.raises(
        IngestError,
        match=r"'thrombozyten' holds '1.250' \(line 2\) in a file whose decimal "
        r"mark is ',': where '.' separates thousands use --thousands \.",
    ):
        read_table(path, key=KEY, id_column="fall_nr", dialect=commas)
    platelets = tmp_path / "platelets.csv"
    platelets.write_text("id,thrombozyten,leukozyten\n1,1.250,7\n2,980,8\n3,2.100,6\n")
    with pytest.raises(
        IngestError,
        match=r"'thrombozyten' mixes numbers written like '1.250' \(line 2, read "
        r"as 1.25\) with .* \('980', line 3\).*--thousands \.",
    ):
        read_table(platelets, key=KEY, id_column="id")
    with pytest.raises(IngestError, match=r"line 4 has 'n.a.'.*--na-value 'n.a.'"):
        read_table(path, key=KEY, id_column="fall_nr", dialect=CsvDialect(
            encoding="cp1252", decimal=",", thousands="."
        ))  # fmt: skip
    short = tmp_path / "short.csv"
    short.write_text("id;age;crp\n1;54;5,2\n2;61\n")
    with pytest.raises(IngestError, match="line 3 has 2 fields, the header 3"):
        read_table(short, key=KEY, id_column="id", dialect=CsvDialect(decimal=","))
    # three decimals are no thousands separator where no number is far larger
    fine = tmp_path / "fine.csv"
    fine.write_text("id,creatinine,marker\n1,0.920,1.250\n2,1.35,-1.125\n3,1.1,0.5\n")
    frame = read_table(fine, key=KEY, id_column="id")
    assert frame["creatinine"].tolist() == [0.92, 1.35, 1.1]
    assert frame["marker"].tolist() == [1.25, -1.125, 0.5]


@pytest.mark.parametrize(
    ("options", "said"),
    [
        ({"decimal": ";"}, "decimal mark is '.' or ','"),
        ({"decimal": ",", "thousands": ","}, "cannot mark decimals and thousands both"),
        ({"sep": ",", "decimal": ","}, "cannot separate cells and mark numbers both"),
        ({"encoding": "klingon"}, "unknown encoding 'klingon'"),
        ({"sep": ";;"}, "one character"),
    ],
)
def test_a_dialect_that_cannot_be_read_is_refused(options: dict, said: str) -> None:
    with pytest.raises(InvalidInputError, match=said):
        CsvDialect(**options)


def test_a_parquet_file_has_no_dialect(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    pd.DataFrame({"id": ["1"], "age": [54]}).to_parquet(path)
    with pytest.raises(IngestError, match="for CSV files"):
        read_table(path, key=KEY, id_column="id", dialect=CsvDialect(decimal=","))


def test_one_pattern_redacts_a_patients_identifiers_longest_first() -> None:
    pattern = identifier_pattern(["Jane", "Jane Roe", " ", "Roe"])
    assert pattern is not None and identifier_pattern(["", " "]) is None
    text = "jane roe saw Jane; Roe's file; Janet stays"
    assert pattern.sub("[R]", text) == "[R] saw [R]; [R]'s file; Janet stays"
    assert scrub_identifiers(text, identifiers=pattern) == scrub_identifiers(
        text, identifiers=["Jane", "Jane Roe", "Roe"]
    )


def test_parquet_decimals_are_numbers(tmp_path: Path) -> None:
    """A decimal128 column (creatinine 0.92) was read as Decimal objects and stored as
    the text '0.92', a category."""
    import decimal

    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "cohort.parquet"
    values = [decimal.Decimal("0.92"), None, decimal.Decimal("1.35")]
    pq.write_table(
        pa.table({"id": ["a", "b", "c"], "creatinine": pa.array(values, pa.decimal128(5, 2))}),
        path,
    )
    frame = read_table(path, key=KEY, id_column="id")
    assert pd.api.types.is_float_dtype(frame["creatinine"])
    assert frame["creatinine"].tolist()[::2] == [0.92, 1.35]


def test_a_contained_medication_is_the_statements_drug(tmp_path: Path) -> None:
    """A drug given as a contained Medication ("#m1") was stored with no code or name."""
    data = json.loads(json.dumps(BUNDLE))
    statement = data["entry"][3]["resource"]
    del statement["medicationCodeableConcept"]
    statement["contained"] = [
        {
            "resourceType": "Medication",
            "id": "m1",
            "code": {"coding": [{"system": "http://www.whocc.no/atc", "code": "L01XC03",
                                 "display": "Trastuzumab"}]},
        }
    ]  # fmt: skip
    statement["medicationReference"] = {"reference": "#m1"}
    records = read_fhir_bundle(write(tmp_path, data), key=KEY, date_key=DATE_KEY)
    assert records.medications[["code", "name"]].iloc[0].tolist() == ["L01XC03", "Trastuzumab"]


def test_notes_lose_dates_however_they_are_written() -> None:
    """Only 2021-03-04 and 04.03.2021 were scrubbed: a date with a time, with slashes
    year first, or with the month's name stayed in the note as it was. Words beside
    numbers that are no dates stay."""
    dates = ["2021-03-04T10:30:00+01:00", "2021-03-04T10:30Z", "2021/03/04", "4 March 2021",
             "4th of Mar", "March 4, 2021", "Sept 4", "May 2021"]  # fmt: skip
    for written in dates:
        assert scrub_identifiers(f"seen {written}; stable") == "seen [DATE]; stable", written
    text = "Mark 12 tablets, may 2 doses, Stage II March, v1.2.3, dose 2.5 mg"
    assert scrub_identifiers(text) == text


def test_a_tables_dates_are_refused_even_in_a_chosen_column(tmp_path: Path) -> None:
    """A date column chosen with --map stored 20210304 as a number, and dates with the
    month's name ("4 March 2021") as categories; the refusal says how to give them."""
    n = 12
    for name, visits in (
        ("numbers", [20210304 + i for i in range(n)]),
        ("names", [f"{i + 1} March 2021" for i in range(n)]),
        ("months", ["March 2021", "May 2021"] * (n // 2)),
    ):
        path = tmp_path / f"{name}.csv"
        pd.DataFrame({"id": range(n), "age": range(n), "visit": visits}).to_csv(path, index=False)
        for columns in (None, {"age": "age", "visit": "visit"}):
            with pytest.raises(IngestError, match="a table's dates are never imported") as error:
                read_table(path, key=b"k", id_column="id", columns=columns)
            assert "--map" not in str(error.value)


def test_fhir_times_are_shifted_by_the_patients_offset(tmp_path: Path) -> None:
    """The observation, condition onset and medication start of the patient move by one
    offset of whole weeks (their intervals kept); under another key by another."""
    records = read_fhir_bundle(write(tmp_path, BUNDLE), key=KEY, date_key=DATE_KEY)
    offset = date_offset("MRN-778899", key=DATE_KEY)
    assert offset.days % 7 == 0 and offset.days != 0
    zulu = datetime.UTC
    assert records.observations["time"].tolist() == [
        datetime.datetime(2024, 1, 2, 10, tzinfo=zulu) + offset
    ]
    assert records.conditions["onset"].tolist() == [datetime.date(2019, 5, 1) + offset]
    assert records.medications["start"].tolist() == [datetime.date(2019, 6, 1) + offset]
    other = read_fhir_bundle(write(tmp_path, BUNDLE), key=KEY, date_key=b"x" * 32)
    assert other.conditions["onset"].tolist() != records.conditions["onset"].tolist()
    assert other.patients["patient"].tolist() == records.patients["patient"].tolist()
