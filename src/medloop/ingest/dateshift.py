"""Keyed per-patient date shifting: every date of one patient moves by the same number
of days, so the intervals between their events stay exact and the dates of care do not.

The offset is a whole number of weeks (weekdays are kept: clinics' weekly rhythms stay
in the data, and the weekday gives nothing of the offset away), drawn uniformly from
-`MAX_SHIFT_WEEKS` .. -1 and 1 .. `MAX_SHIFT_WEEKS` (never 0: no patient keeps their own
dates) by HMAC-SHA256 of a site's date-shift key and the patient's original identifier,
the value their pseudonym is made from. The same patient under the same key has the
same offset in every import, so re-imports and later exports line up; without the key
it can be neither recomputed nor told from the pseudonym. Up to a year either way hides
the season and the year of care as well as the day, as the Expert Determination tools
do (CTP's per-patient date increment, pydicom-deid's jitter), at the price of calendar
effects (seasons, a change of practice on a known date) across patients.

A year alone is not shifted (HIPAA Safe Harbor keeps years); a month without a day
("2021-03") moves with its middle day. `shift_time` moves FHIR's ISO 8601 forms,
`shift_dicom_time` DICOM's DA ("20210304") and DT ("20210304101500.5+0100") forms, by
the same rules: a patient's images and facts line up.

>>> offset = date_offset("MRN-1", key=b"k" * 32)
>>> offset == date_offset("MRN-1", key=b"k" * 32) and offset.days % 7 == 0
True
>>> shift_time("2021-03-04", datetime.timedelta(weeks=2))
'2021-03-18'
>>> shift_dicom_time("20210304101500+0100", datetime.timedelta(weeks=2), vr="DT")
'20210318101500+0100'
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import hmac
import logging
import os
import re
import secrets
from pathlib import Path
from typing import Any

from medloop.exceptions import ConfigError, InvalidInputError

logger = logging.getLogger(__name__)

#: The largest shift either way, in weeks (364 days).
MAX_SHIFT_WEEKS = 52
#: The shortest date-shift key accepted (characters of a setting or of the key file).
MIN_KEY_LENGTH = 32
_YEAR = re.compile(r"\d{4}")
_YEAR_MONTH = re.compile(r"(\d{4})-(\d{2})")
#: DICOM DT: YYYY[MM[DD[HH[MM[SS[.F{1,6}]]]]]][&ZZXX] (PS3.5 6.2); DA is its YYYYMMDD.
_DICOM_DT = re.compile(
    r"(?P<year>\d{4})(?:(?P<month>\d{2})(?:(?P<day>\d{2})"
    r"(?P<time>\d{2}(?:\d{2}(?:\d{2}(?:\.\d{1,6})?)?)?)?)?)?(?P<zone>[+-]\d{4})?"
)


def date_offset(identity: str, *, key: bytes) -> datetime.timedelta:
    """The offset every date of the patient known by `identity` (their original
    identifier, before pseudonymisation) moves by: whole weeks, uniform over
    ±1..`MAX_SHIFT_WEEKS`, from HMAC-SHA256(`key`, `identity`)."""
    if not isinstance(key, bytes | bytearray) or not key:
        raise InvalidInputError("the date-shift key must be non-empty bytes")
    text = str(identity).strip()
    if not text:
        raise InvalidInputError("cannot derive a date shift from an empty identifier")
    digest = hmac.new(key, b"medloop-date-shift\x00" + text.encode(), hashlib.sha256).digest()
    # 256 bits modulo 104: the bias is below 2**-248, the draw uniform in practice
    draw = int.from_bytes(digest, "big") % (2 * MAX_SHIFT_WEEKS)
    weeks = draw - MAX_SHIFT_WEEKS if draw < MAX_SHIFT_WEEKS else draw - MAX_SHIFT_WEEKS + 1
    return datetime.timedelta(weeks=weeks)


def shift_time(value: Any, offset: datetime.timedelta) -> Any:
    """`value` (a date, a date-time or its ISO 8601 text, as FHIR gives them) moved by
    `offset`, in the same form; the time of day and zone are kept. None stays None, a
    year alone stays as it is, a year and month moves with the 15th of that month.
    Raises `InvalidInputError` for text in no such form, or a date moved out of the
    calendar (before year 1, after 9999)."""
    if value is None:
        return None
    try:
        if isinstance(value, datetime.date):  # datetime.datetime and pd.Timestamp too
            return value + offset
        text = str(value).strip()
        if _YEAR.fullmatch(text):
            return text
        month = _YEAR_MONTH.fullmatch(text)
        if month:
            middle = datetime.date(int(month[1]), int(month[2]), 15) + offset
            return f"{middle:%Y-%m}"
        if len(text) == len("2021-03-04"):
            return (datetime.date.fromisoformat(text) + offset).isoformat()
        return (datetime.datetime.fromisoformat(text) + offset).isoformat()
    except OverflowError as error:
        raise InvalidInputError(
            f"{value} moved by {offset.days} days leaves the calendar"
        ) from error
    except ValueError as error:
        raise InvalidInputError(f"not an ISO 8601 date or date-time: {value!r}") from error


def shift_dicom_time(value: str, offset: datetime.timedelta, *, vr: str) -> str:
    """A DICOM date (`vr` "DA": YYYYMMDD) or date-time ("DT": its date part, down to
    the year, then the time of day and UTC offset, which are kept) moved by `offset`,
    in the same form. As `shift_time`: a year alone stays, a year and month moves with
    the 15th of that month. Raises `InvalidInputError` for a value in neither form."""
    if vr not in ("DA", "DT"):
        raise InvalidInputError(f"only DA and DT values are dates, not {vr}")
    text = str(value).strip()
    match = _DICOM_DT.fullmatch(text)
    partial = match is not None and (match["day"] is None or match["time"] or match["zone"])
    if match is None or (vr == "DA" and partial):
        raise InvalidInputError(f"not a DICOM {vr} value: {text!r}")
    if match["month"] is None:
        return text
    day = int(match["day"] or 15)
    try:
        moved = datetime.date(int(match["year"]), int(match["month"]), day) + offset
    except (ValueError, OverflowError) as error:
        raise InvalidInputError(f"not a DICOM {vr} value: {text!r}") from error
    date = f"{moved.year:04d}{moved.month:02d}" + (f"{moved.day:02d}" if match["day"] else "")
    return f"{date}{match['time'] or ''}{match['zone'] or ''}"


def load_or_create_key(path: Path) -> bytes:
    """The date-shift key kept in the file `path`; a new random one (256 bits, as hex)
    written there first, readable by its owner only, when there is none. Created once:
    of two processes that find no file, one writes it and both read the same key."""
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        draft = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
        descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(descriptor, "w") as file:
                file.write(secrets.token_hex(32) + "\n")
                file.flush()
                os.fsync(file.fileno())
            with contextlib.suppress(FileExistsError):  # another process wrote it first
                os.link(draft, path)  # never replaces a key file
                logger.info("created the date-shift key file %s", path)
        finally:
            draft.unlink()
    key = path.read_text().strip()
    if len(key) < MIN_KEY_LENGTH:
        raise ConfigError(
            f"the date-shift key file {path} holds fewer than {MIN_KEY_LENGTH} characters: "
            "restore it from a backup (a new key would move every patient's dates anew)"
        )
    return key.encode()
