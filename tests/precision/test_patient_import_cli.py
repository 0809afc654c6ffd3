"""`medloop patients import` of European exports and FHIR bundles, as a user types it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from cli_support import run as run_cli

Cli = Callable[..., tuple[int, str, str]]


@pytest.fixture
def cli(home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Cli:
    """`medloop ARGS...` in a fresh home: (exit code, stdout, stderr on one line)."""
    monkeypatch.setenv("MEDLOOP_SECRET_KEY", "k" * 32)

    def run(*args: str) -> tuple[int, str, str]:
        code, out, err = run_cli(monkeypatch, capsys, *args)
        return code, out, " ".join(err.split())  # as said, whatever the terminal's width

    return run


def features(cli: Cli, project: str) -> dict[str, dict]:
    code, out, err = cli("patients", "features", "-p", project, "--json")
    assert code == 0, err
    return {row["feature"]: row for row in json.loads(out)}


def test_a_semicolon_cp1252_export_with_decimal_commas_imports_with_its_options(
    cli: Cli, tmp_path: Path
) -> None:
    path = tmp_path / "labor.csv"
    path.write_bytes(
        (
            "fall_nr;alter;haemoglobin;thrombozyten;geschlecht\r\n"
            "1001;54;13,1;1.250;männlich\r\n"
            "1002;61;11,8;980;weiblich\r\n"
            "1003;47;n.a.;2.100;weiblich\r\n"
            "1004;72;14,0;-;männlich\r\n"
        ).encode("cp1252")
    )
    args = ("patients", "import", str(path), "-p", "c", "--id-column", "fall_nr")
    code, _, err = cli(*args)
    assert code != 0 and "--encoding cp1252" in err
    code, _, err = cli(*args, "--encoding", "cp1252")
    assert code != 0 and "use --decimal ," in err
    dialect = ("--encoding", "cp1252", "--decimal", ",", "--thousands", ".")
    code, _, err = cli(*args, *dialect)
    assert code != 0 and "--na-value 'n.a.'" in err
    code, out, err = cli(*args, *dialect, "--sep", ";", "--na-value", "n.a.", "--na-value", "-")
    assert code == 0, err
    assert "4 patients" in out
    described = features(cli, "c")
    assert described["haemoglobin"]["kind"] == "numeric"
    assert described["haemoglobin"]["median"] == pytest.approx(13.1)
    assert described["thrombozyten"]["median"] == pytest.approx(1250)
    assert described["haemoglobin"]["missing"] == described["thrombozyten"]["missing"] == 0.25


def test_a_patient_with_every_value_missing_counts_as_missing(cli: Cli, tmp_path: Path) -> None:
    """Patient 2 had no value at all, so was not counted: crp 0% missing, ldh 20%."""
    path = tmp_path / "missing.csv"
    path.write_text("id,crp,ldh\n1,5.2,210\n2,NA,\n3,12.0,NA\n4,0.4,190\n5,3.3,250\n6,8.1,230\n")
    code, _, err = cli("patients", "import", str(path), "-p", "c", "--id-column", "id")
    assert code == 0, err
    described = features(cli, "c")
    assert described["crp"]["missing"] == pytest.approx(1 / 6, abs=1e-4)
    assert described["ldh"]["missing"] == pytest.approx(2 / 6, abs=1e-4)


def test_a_fhir_import_says_what_it_left_out_and_what_it_had(cli: Cli, tmp_path: Path) -> None:
    def hb(oid: str, value: float, status: str) -> dict:
        return {
            "resource": {
                "resourceType": "Observation",
                "id": oid,
                "status": status,
                "code": {"coding": [{"system": "http://loinc.org", "code": "718-7"}]},
                "subject": {"reference": "Patient/p1"},
                "valueQuantity": {"value": value, "unit": "g/dL"},
            }
        }

    patient = {"resource": {"resourceType": "Patient", "id": "p1", "gender": "female"}}
    path = tmp_path / "b.json"
    entries = [patient, hb("hb1", 13.4, "final"), hb("hb2", 4.1, "entered-in-error")]
    path.write_text(json.dumps({"resourceType": "Bundle", "type": "collection", "entry": entries}))
    code, out, err = cli("patients", "import", str(path), "-p", "c")
    assert code == 0, err
    assert "1 facts" in out and "skipped (no fact about the patient): 1 Observation entered" in out
    code, out, err = cli("patients", "import", str(path), "-p", "c")
    assert code == 0, err
    assert "0 facts (1 stored already)" in out
    code, _, err = cli("patients", "import", str(path), "-p", "c", "--decimal", ",")
    assert code != 0 and "CSV options are for tables" in err
