"""Keyed per-patient date shifts: whole weeks within ±52, the same under the same key,
unknowable without it; the key file created once."""

from __future__ import annotations

import datetime
import os
import stat
import threading
from collections import Counter
from pathlib import Path

import pytest

from medloop.config import Settings
from medloop.exceptions import ConfigError, InvalidInputError
from medloop.ingest.dateshift import (
    MAX_SHIFT_WEEKS,
    date_offset,
    load_or_create_key,
    shift_dicom_time,
    shift_time,
)

KEY = b"a-date-shift-key-of-32-characters!"
OTHER_KEY = b"another-date-shift-key-of-32-chars"
IDS = [f"MRN-{i:06d}" for i in range(5000)]


def test_offsets_are_whole_weeks_spread_uniformly_over_a_year_either_way() -> None:
    """Every one of the 104 non-zero shifts of up to 52 weeks occurs, about equally often,
    and none other (no patient keeps their own dates)."""
    weeks = Counter(date_offset(i, key=KEY) / datetime.timedelta(weeks=1) for i in IDS)
    expected = {float(w) for w in range(-MAX_SHIFT_WEEKS, MAX_SHIFT_WEEKS + 1) if w != 0}
    assert set(weeks) == expected
    mean = len(IDS) / len(expected)  # 48 a week
    assert all(0.5 * mean < n < 1.5 * mean for n in weeks.values())


def test_the_same_patient_has_the_same_offset_and_two_patients_different_ones() -> None:
    assert date_offset("MRN-000001", key=KEY) == date_offset(" MRN-000001 ", key=KEY)
    assert date_offset("MRN-000001", key=KEY) != date_offset("MRN-000002", key=KEY)
    assert len({date_offset(i, key=KEY) for i in IDS[:100]}) > 50


def test_the_offset_is_not_derivable_without_the_key() -> None:
    """Under another key the offsets agree no more often than by chance (1 in 104)."""
    same = sum(date_offset(i, key=KEY) == date_offset(i, key=OTHER_KEY) for i in IDS)
    assert same < 0.03 * len(IDS)


def test_dates_and_date_times_move_keeping_time_of_day_and_zone() -> None:
    offset = datetime.timedelta(weeks=-3)
    zone = datetime.timezone(datetime.timedelta(hours=1))
    moved = shift_time(datetime.datetime(2024, 3, 11, 10, 15, tzinfo=zone), offset)
    assert moved == datetime.datetime(2024, 2, 19, 10, 15, tzinfo=zone)
    assert shift_time(datetime.date(2024, 1, 2), offset) == datetime.date(2023, 12, 12)
    assert shift_time("2024-01-02", offset) == "2023-12-12"
    assert shift_time("2024-01-02T10:00:00Z", offset) == "2023-12-12T10:00:00+00:00"
    assert shift_time(None, offset) is None


def test_a_year_alone_stays_and_a_month_moves_with_its_middle() -> None:
    assert shift_time("2021", datetime.timedelta(weeks=52)) == "2021"
    assert shift_time("2021-03", datetime.timedelta(weeks=3)) == "2021-04"  # 15 + 21 days
    assert shift_time("2021-03", datetime.timedelta(weeks=-2)) == "2021-03"


def test_a_missing_key_file_is_created_once_and_then_reused(tmp_path: Path) -> None:
    path = tmp_path / "home" / "date-shift.key"
    key = load_or_create_key(path)
    assert len(key) == 64 and path.read_text().strip().encode() == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    written = path.stat().st_mtime_ns
    assert load_or_create_key(path) == key
    assert path.stat().st_mtime_ns == written
    assert os.listdir(path.parent) == ["date-shift.key"]  # no draft left behind


def test_processes_that_find_no_key_file_at_once_all_get_the_one_written(
    tmp_path: Path,
) -> None:
    path = tmp_path / "date-shift.key"
    start = threading.Barrier(8)
    keys: list[bytes] = []

    def load() -> None:
        start.wait()
        keys.append(load_or_create_key(path))

    threads = [threading.Thread(target=load) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(keys) == 8 and len(set(keys)) == 1
    assert keys[0] == path.read_text().strip().encode()


def test_a_damaged_key_file_is_refused_not_replaced(tmp_path: Path) -> None:
    path = tmp_path / "date-shift.key"
    path.write_text("short\n")
    with pytest.raises(ConfigError, match="restore it from a backup"):
        load_or_create_key(path)
    assert path.read_text() == "short\n"


def test_a_date_shift_key_setting_must_be_long(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="MEDLOOP_DATE_SHIFT_KEY"):
        Settings(home=tmp_path, date_shift_key="too short")
    assert Settings(home=tmp_path, date_shift_key="d" * 32).date_shift_key == "d" * 32
    assert Settings(home=tmp_path, date_shift_key=" ").date_shift_key is None


def test_dicom_dates_and_date_times_move_like_fhir_ones() -> None:
    """DA and DT forms move as `shift_time` moves FHIR's: the date part by the offset,
    the time of day, fraction and UTC offset kept, a year alone kept, a year and month
    with its 15th."""
    offset = datetime.timedelta(weeks=-3)
    assert shift_dicom_time("20240102", offset, vr="DA") == "20231212"
    assert shift_dicom_time(" 20240102 ", offset, vr="DA") == "20231212"
    assert shift_dicom_time("20240102", offset, vr="DT") == "20231212"
    assert shift_dicom_time("20240311101530.123456+0100", offset, vr="DT") == (
        "20240219101530.123456+0100"
    )
    assert shift_dicom_time("2024031110-0500", offset, vr="DT") == "2024021910-0500"
    assert shift_dicom_time("2024", offset, vr="DT") == "2024"
    assert shift_dicom_time("202403", offset, vr="DT") == shift_time("2024-03", offset).replace(
        "-", ""
    )
    moved = shift_time("2024-03-11T10:15:30+01:00", offset)
    assert shift_dicom_time("20240311101530+0100", offset, vr="DT")[:8] == moved[:10].replace(
        "-", ""
    )


@pytest.mark.parametrize(
    ("value", "vr"),
    [
        ("2024-01-02", "DA"),
        ("20241302", "DA"),
        ("20240230", "DA"),
        ("202401", "DA"),
        ("20240102101500", "DA"),
        ("10.01.2020", "DT"),
        ("20240102T1015", "DT"),
        ("", "DA"),
        ("101500", "TM"),
    ],
)
def test_what_is_no_dicom_date_is_refused(value: str, vr: str) -> None:
    with pytest.raises(InvalidInputError):
        shift_dicom_time(value, datetime.timedelta(weeks=1), vr=vr)
