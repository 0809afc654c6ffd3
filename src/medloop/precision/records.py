"""Patient records into frames: tabular files, FHIR R4 bundles, free-text scrubbing.

Every patient leaves this module under a keyed pseudonym (`medloop.ingest.pseudonymize`);
names, identifiers, addresses and contact details are dropped, birth dates become birth
years (ages of 90 or more in a table become 90: `safe_harbor_ages`), the times of FHIR
facts move by the patient's keyed date shift (`medloop.ingest.dateshift`: intervals kept,
dates of care not), a table's column of dates is refused, and free text (notes, and
the names a person wrote: a concept's text, a local code system's display, a unit's
display; `_coding`) is scrubbed of the patient's own identifiers and of
identifier-shaped strings (e-mail, phone, long digit runs, dates, URLs). A
terminology's names for its codes (`TERMINOLOGIES`) lose the patient's own identifiers
only.

Frames (one row per fact, `patient` is the pseudonym):
- patients: patient, sex, birth_year, deceased
- observations: patient, code, system, name, value, unit, time, note, resource (the
  FHIR Observation's id, for error messages; never stored)
- conditions: patient, code, system, name, onset, note
- medications: patient, code, system, name, status, start, note
"""

from __future__ import annotations

import codecs
import csv as csv_module
import datetime
import decimal
import io
import json
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medloop.exceptions import IngestError, InvalidInputError
from medloop.ingest.dateshift import date_offset, shift_time
from medloop.ingest.deid import pseudonymize

logger = logging.getLogger(__name__)

PATIENT_COLUMNS = ["patient", "sex", "birth_year", "deceased"]
OBSERVATION_COLUMNS = [
    "patient", "code", "system", "name", "value", "unit", "time", "note", "resource"
]  # fmt: skip
CONDITION_COLUMNS = ["patient", "code", "system", "name", "onset", "note"]
MEDICATION_COLUMNS = ["patient", "code", "system", "name", "status", "start", "note"]

#: A month's name, written out or short ("March", "Mar.", "Sept").
_MONTH = (
    r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|"
    r"Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)\.?"
)
_DAY = r"\d{1,2}(?:st|nd|rd|th)?"
#: Dates as notes and tables write them: 2021-03-04 (with a time: 2021-03-04T10:30Z),
#: 2021/03/04, 04.03.2021, 3/4/21, 4 March 2021, the 4th of Mar, March 4, 2021, May 2021.
_DATE = re.compile(
    r"(?<!\d)\d{4}[-/.]\d{1,2}[-/.]\d{1,2}"
    r"(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?(?!\d)"
    r"|\b\d{1,2}[/.]\d{1,2}[/.]\d{2,4}\b"
    rf"|\b{_DAY}\s+(?:of\s+)?{_MONTH}(?:,?\s+\d{{4}})?(?![\w.])"
    rf"|\b{_MONTH}\s+(?:{_DAY}(?:,?\s+\d{{4}})?|\d{{4}})\b"
)
_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("[EMAIL]", re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")),
    ("[URL]", re.compile(r"\bhttps?://\S+|\bwww\.\S+", re.IGNORECASE)),
    ("[DATE]", _DATE),
    ("[PHONE]", re.compile(r"(?<!\w)\+?\d[\d\s().-]{7,}\d(?!\w)")),
    (
        "[ADDRESS]",  # a house number, a capitalised name and a street word: "12 Main Street"
        re.compile(
            r"\b\d{1,5}\s+(?:[A-Z][a-z]+\s+){1,3}(?:Street|St|Road|Rd|Avenue|Ave|Lane|Ln|"
            r"Drive|Dr|Boulevard|Blvd|Way|Court|Ct|Place|Pl|Square|Sq|Close|Crescent)\b\.?"
        ),
    ),
    ("[ID]", re.compile(r"\b(?=[A-Z0-9-]*\d)[A-Z0-9][A-Z0-9-]{5,}\b")),
]


#: One patient's identifiers as a compiled pattern (`identifier_pattern`), or as words.
Identifiers = Iterable[str] | re.Pattern[str] | None


def identifier_pattern(identifiers: Iterable[str]) -> re.Pattern[str] | None:
    """One pattern for all of `identifiers` (case-insensitive, whole words, the longest
    first), None without any: compiled once per patient, not once per text scrubbed.

    >>> identifier_pattern(["Jane", "Jane Roe"]).sub("[REDACTED]", "jane roe, Jane")
    '[REDACTED], [REDACTED]'
    """
    words = sorted({i.strip() for i in identifiers if i and i.strip()}, key=len, reverse=True)
    if not words:
        return None
    alternatives = "|".join(re.escape(word) for word in words)
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)


def scrub_identifiers(text: str | None, *, identifiers: Identifiers = ()) -> str | None:
    """Replace the given identifiers (names, record numbers; case-insensitive, whole
    words; or their `identifier_pattern`) with [REDACTED] and identifier-shaped strings
    with a typed placeholder.

    >>> scrub_identifiers("Jane Roe called 555-123-4567", identifiers=["Jane", "Roe"])
    '[REDACTED] [REDACTED] called [PHONE]'
    >>> scrub_identifiers("seen by Dr. Smith; pt John Doe is well; lives at 12 Main Street")
    'seen by Dr [NAME]; pt [NAME] is well; lives at [ADDRESS]'
    """
    if text is None:
        return None
    out = _redact(str(text), identifiers)
    out = _TITLED_NAME.sub(lambda m: f"{m.group(1)} [NAME]", out)
    for placeholder, pattern in _PATTERNS:
        out = pattern.sub(placeholder, out)
    return out


def _redact(text: str, identifiers: Identifiers) -> str:
    """`text` with each of `identifiers` (case-insensitive, whole words) as [REDACTED]."""
    if identifiers is None:
        return text
    if not isinstance(identifiers, re.Pattern):
        identifiers = identifier_pattern(identifiers)
    return text if identifiers is None else identifiers.sub("[REDACTED]", text)


#: A capitalised name after a title or "pt"/"patient" ("Dr Smith", "pt John Doe"): the
#: names a note most often carries that are not the patient's own identifiers (a rule, not
#: a named-entity model; names without such a cue stay, so notes still need care).
_TITLED_NAME = re.compile(
    r"\b(Dr|Mr|Mrs|Ms|Miss|Mx|Prof|Nurse|Sister|pt|Pt|patient|Patient)\.?"
    r"\s+[A-Z][a-zA-Z'-]+(?:\s+[A-Z][a-zA-Z'-]+)?"
)


# --- tabular -----------------------------------------------------------------------------


@dataclass(frozen=True)
class CsvDialect:
    """How a CSV file is written (European exports differ from pandas' defaults): `sep`
    between cells (None: the one of ",", ";", tab and "|" that splits the header line
    into the most cells), the file's `encoding` (utf-8-sig reads UTF-8 with or without a
    byte-order mark; Excel exports are often cp1252), the `decimal` mark ("13,1"), the
    `thousands` separator ("1.250"; none by default), and `na_values`: cells that mean
    missing besides pandas' own (empty, "NA", "n/a", ...), such as "n.a." or "-"."""

    sep: str | None = None
    encoding: str = "utf-8-sig"
    decimal: str = "."
    thousands: str | None = None
    na_values: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.sep is not None and len(self.sep) != 1:
            raise InvalidInputError(f"a CSV separator is one character, not {self.sep!r}")
        if self.decimal not in {".", ","}:
            raise InvalidInputError(f"the decimal mark is '.' or ',', not {self.decimal!r}")
        if self.thousands is not None and len(self.thousands) != 1:
            raise InvalidInputError(f"a thousands separator is one character: {self.thousands!r}")
        if self.thousands == self.decimal:
            raise InvalidInputError(f"{self.decimal!r} cannot mark decimals and thousands both")
        if self.sep is not None and self.sep in {self.decimal, self.thousands}:
            raise InvalidInputError(f"{self.sep!r} cannot separate cells and mark numbers both")
        try:
            codecs.lookup(self.encoding)
        except LookupError as error:
            raise InvalidInputError(f"unknown encoding {self.encoding!r}") from error


def read_table(
    path: str | Path,
    *,
    key: bytes,
    id_column: str,
    columns: Mapping[str, str] | None = None,
    text_columns: Sequence[str] = (),
    drop_columns: Sequence[str] = (),
    named_identifiers: bool = True,
    dialect: CsvDialect = CsvDialect(),
) -> pd.DataFrame:
    """Read a CSV or Parquet file of one row per patient into a frame indexed by pseudonym.

    `columns` maps source column -> feature name (only mapped columns are kept, plus the
    id); without it every column but `id_column` and `drop_columns` is kept. Text columns
    are scrubbed (the patient's raw id counts as an identifier). A kept column that looks
    like an identifier is refused (`_check_not_identifying`; by its name too unless
    `columns` chose it or `named_identifiers` is False, as for gene symbols). A CSV file
    is read in its `dialect`. Errors name the file and the column, and the line where one
    is at fault: a line not in the file's encoding, a CSV row with missing fields, a cell
    of text in a column of numbers ("abc" among ages; empty cells are missing values),
    numbers written with a decimal comma the dialect does not expect, or "1.250" among
    numbers a thousand times larger (a thousands separator read as a decimal point).
    """
    path = Path(path)
    raw, cells = _read_raw(path, id_column=id_column, dialect=dialect)
    csv = cells is not None
    mapping = (
        dict(columns)
        if columns is not None
        else {c: c for c in raw.columns if c != id_column and c not in drop_columns}
    )
    missing = [c for c in mapping if c not in raw.columns]
    if missing:
        raise IngestError(path, f"mapped columns not in the file: {missing}")
    unknown = [c for c in drop_columns if c not in raw.columns]
    if unknown:
        raise IngestError(path, f"columns to drop not in the file: {unknown}")
    for c in text_columns:
        if c not in mapping:
            raise IngestError(path, f"text column {c!r} is not among the kept columns")
    if raw.empty:
        raise IngestError(path, "no patient rows (only a header)")
    ids = raw[id_column]
    if ids.isna().any():
        row = int(ids.isna().to_numpy().argmax()) + 2  # 1-based, after the header line
        raise IngestError(path, f"column {id_column!r} has an empty id (line {row})")
    frame = raw[list(mapping)].rename(columns=mapping).copy()
    scrubbed = {mapping[c] for c in text_columns}
    for source, target in mapping.items():
        if target not in scrubbed:
            chosen = columns is not None or not named_identifiers
            _check_not_identifying(path, source, frame[target], chosen=chosen, csv=csv)
            _check_numbers(path, source, frame[target], csv=csv, dialect=dialect)
            if cells is not None and dialect.thousands is None:
                _check_thousands(path, source, cells[source], decimal=dialect.decimal)
    if text_columns:
        private = _row_identifiers(raw, ids, left_out=[c for c in raw.columns if c not in mapping])
        for source in text_columns:
            target = mapping[source]
            frame[target] = [
                scrub_identifiers(None if pd.isna(v) else str(v), identifiers=row)
                for v, row in zip(frame[target], private, strict=True)
            ]
    frame.index = pd.Index([pseudonymize(str(i), key=key) for i in ids], name="patient")
    repeated = frame.index.duplicated()
    if repeated.any():
        row = int(repeated.argmax())
        where = f"line {row + 2}" if csv else f"row {row + 1}"
        raise IngestError(path, f"column {id_column!r} repeats a patient id ({where})")
    logger.info("read %d patients, %d columns from %s", len(frame), frame.shape[1], path.name)
    return frame


_CSV_SUFFIXES = {".csv", ".txt"}
_PARQUET_SUFFIXES = {".parquet", ".pq"}
#: Words shorter than this in a left-out column are not scrubbed from notes ("F", "54");
#: names as short as two letters are ("Li", "Ng").
_MIN_SCRUBBED = 3
_MIN_SCRUBBED_NAME = 2


def _row_identifiers(
    raw: pd.DataFrame, ids: pd.Series, *, left_out: list[str]
) -> list[re.Pattern[str] | None]:
    """Each row's identifiers for scrubbing its text (`identifier_pattern`): the raw id,
    and every value of the columns left out of the import (a dropped name, a record
    number) with its words."""
    rows = []
    for raw_id, row in zip(ids, raw[left_out].itertuples(index=False), strict=True):
        values = [str(v) for v in row if not pd.isna(v)]
        words = [
            w
            for v in values
            for w in [v, *v.split()]
            if len(w) >= (_MIN_SCRUBBED_NAME if w.isalpha() else _MIN_SCRUBBED)
        ]
        rows.append(identifier_pattern([str(raw_id), *words]))
    return rows


def _read_raw(
    path: Path, *, id_column: str, dialect: CsvDialect, only_ids: bool = False
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """A CSV or Parquet file as read, the id column as text (`only_ids`: that column
    alone, without reading the others), and for a CSV file its cells as written (text;
    missing values missing), for the checks that need to see how a number was written.
    Errors name the file."""
    if not path.is_file():
        raise IngestError(path, "no such file")
    suffix = path.suffix.lower()
    cells = None
    try:
        if suffix in _PARQUET_SUFFIXES:
            if dialect != CsvDialect():
                raise IngestError(path, "separator, encoding and number marks are for CSV files")
            raw = _decimals_as_floats(
                pd.read_parquet(path, columns=[id_column] if only_ids else None)
            )
        elif suffix in _CSV_SUFFIXES:
            text = _decode(path, dialect.encoding)
            sep = dialect.sep or sniff_separator(text)
            options: dict[str, Any] = {
                "sep": sep,
                "decimal": dialect.decimal,
                "thousands": dialect.thousands,
                "na_values": list(dialect.na_values),
            }
            if not only_ids:
                _check_row_lengths(path, text, sep=sep)
                cells = pd.read_csv(io.StringIO(text), dtype=str, **options)
            wanted = (lambda c: c == id_column) if only_ids else None
            raw = pd.read_csv(io.StringIO(text), dtype={id_column: str}, usecols=wanted, **options)
        else:
            raise IngestError(path, "expected a .csv or .parquet file")
    except IngestError:
        raise
    except Exception as error:  # parser and engine errors all mean "cannot read this file"
        raise IngestError(path, f"cannot read table: {error}") from error
    if id_column not in raw.columns:
        raise IngestError(path, f"missing id column {id_column!r}; columns: {list(raw.columns)}")
    return raw, cells


def _decimals_as_floats(raw: pd.DataFrame) -> pd.DataFrame:
    """Parquet decimal columns (decimal128 lab values) as floats: pandas reads them as
    Python `Decimal` objects, which would be stored as the text "0.92"."""
    for column in raw.columns:
        present = raw[column].dropna()
        if len(present) and present.map(lambda v: isinstance(v, decimal.Decimal)).all():
            raw[column] = raw[column].astype(float)
    return raw


def _decode(path: Path, encoding: str) -> str:
    """The text of a file in `encoding`; a byte that is not, refused with its line."""
    data = path.read_bytes()
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise IngestError(
            path,
            f"line {line} is not {encoding} text (byte 0x{data[error.start]:02x}): give the "
            "file's encoding, e.g. --encoding cp1252 for a Windows export",
        ) from error


#: The separators `sniff_separator` chooses among, the first on a tie.
SEPARATORS = (",", ";", "\t", "|")


def sniff_separator(text: str) -> str:
    """The separator of `SEPARATORS` that splits the first line of `text` (its header)
    into the most cells ("," when none splits it).

    >>> sniff_separator('fall_nr;alter;"Hb, g/dL"\\n1;54;"13,1"\\n')
    ';'
    """
    header = text.split("\n", 1)[0]
    cells = {sep: len(next(csv_module.reader([header], delimiter=sep), [])) for sep in SEPARATORS}
    return max(SEPARATORS, key=lambda sep: cells[sep])


def read_ids(
    path: str | Path, *, key: bytes, id_column: str, dialect: CsvDialect = CsvDialect()
) -> pd.Index:
    """The pseudonyms of the patients a CSV or Parquet file names in `id_column` (empty
    ids left out), read without the rest of the file: for checks before an import."""
    raw, _ = _read_raw(Path(path), id_column=id_column, dialect=dialect, only_ids=True)
    ids = raw[id_column].dropna()
    return pd.Index([pseudonymize(str(i), key=key) for i in ids], name="patient")


def _check_row_lengths(path: Path, text: str, *, sep: str) -> None:
    """pandas fills a CSV row's missing trailing fields with missing values: a row cut
    short (a broken export, a stray line) must be an error, not a patient with gaps.
    (Rows with too many fields are pandas' own error.)"""
    rows = csv_module.reader(io.StringIO(text, newline=""), delimiter=sep)
    header = next(rows, [])
    for number, row in enumerate(rows, start=2):
        if row and len(row) < len(header):
            raise IngestError(
                path, f"line {number} has {len(row)} fields, the header {len(header)}"
            )


#: Words in a column's name that say who the patient is (HIPAA Safe Harbor identifiers).
IDENTIFYING_WORDS = frozenset(
    {"name", "surname", "dob", "birthdate", "birthday", "email", "mail", "phone", "telephone",
     "mobile", "fax", "address", "street", "zip", "zipcode", "postcode", "ssn", "mrn",
     "passport", "nhs", "nino"}
)  # fmt: skip
_IDENTIFYING_PAIRS = (
    ("birth", "date"),
    ("birth", "dt"),
    ("postal", "code"),
    ("post", "code"),
    ("social", "security"),
    ("national", "insurance"),
    ("insurance", "number"),
    ("hospital", "number"),
    ("patient", "number"),
    ("record", "number"),
    ("medical", "record"),
)
#: What a cell that matches one of the scrubbing patterns holds.
_HELD = {
    "[EMAIL]": "an e-mail address",
    "[URL]": "a web address",
    "[DATE]": "a date",
    "[PHONE]": "a phone number",
    "[ADDRESS]": "an address",
}
_PATTERN = dict(_PATTERNS)
#: A text column with its own value for at least this share of patients (and 10 or more
#: of them) is free text or an identifier, not a category.
UNIQUE_SHARE = 0.9
#: A cell of this many words or more is free text ("Stage II", "hormone therapy" are not).
FREE_TEXT_WORDS = 4


def _name_words(column: str) -> set[str]:
    """The words of a column's name, lower-cased ("DateOfBirth" -> date, of, birth)."""
    return {w.lower() for w in re.findall(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])", column)}


def identifying_name(column: str) -> bool:
    """True when a column's name says it holds who the patient is ("dob", "Email",
    "patient_name", "DateOfBirth", "zip_code")."""
    words = _name_words(column)
    return bool(words & IDENTIFYING_WORDS) or any({a, b} <= words for a, b in _IDENTIFYING_PAIRS)


def _check_not_identifying(
    path: Path, column: str, values: pd.Series, *, chosen: bool, csv: bool
) -> None:
    """A kept column must not carry who the patient is into the features: one named like
    an identifier (unless the user chose it with a column mapping), or text with a cell
    that holds an e-mail address, web address, date or phone number, or free text, or a
    value of its own for (nearly) every patient, is refused with the ways to import the
    table anyway. One such cell is enough: it would be stored as it is."""
    why = None
    if not chosen and identifying_name(column):
        why = "its name says it identifies the patient"
    elif pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        # a column chosen by name (--map, a gene matrix) is the user's to vouch for:
        # platelets per microlitre or read counts are large numbers too; dates never are
        why = _identifying_numbers(values.dropna().astype(float), chosen=chosen)
    elif not pd.api.types.is_numeric_dtype(values):
        present = values.dropna().astype(str)
        checks = [(what, present.str.contains(_PATTERN[tag])) for tag, what in _HELD.items()]
        checks.append(("free text", present.str.split().str.len() >= FREE_TEXT_WORDS))
        for what, hits in checks:
            if hits.any():
                why = f"{_where(values, hits.idxmax(), csv=csv)} holds {what}"
                break
        else:
            if len(present) >= 10 and present.nunique() >= UNIQUE_SHARE * len(present):
                why = "nearly every patient has a value of their own: free text or an identifier"
    if why is not None:
        dates = why == _YYYYMMDD or why.endswith(f"holds {_HELD['[DATE]']}")
        ways = f"leave it out (--drop {column}), keep it as scrubbed free text (--text {column})"
        if not chosen and not dates:
            ways += ", or choose the columns to import (--map SOURCE=FEATURE)"
        if dates:
            ways += (
                "; a table's dates are never imported: give the intervals that matter "
                "(e.g. days from diagnosis), or the facts as a FHIR bundle, whose dates "
                "are shifted per patient"
            )
        raise IngestError(path, f"column {column!r} looks like an identifier ({why}); {ways}")


_YYYYMMDD = "its numbers are dates written as YYYYMMDD"
#: Integers of at least this many digits, one per patient, are record numbers, not counts.
RECORD_NUMBER_DIGITS = 7


def _identifying_numbers(present: pd.Series, *, chosen: bool = False) -> str | None:
    """Why a column of numbers identifies patients, or None: whole numbers that read as
    dates (19480513), or, unless the column was `chosen` by name, long whole numbers each
    patient has their own of (a hospital number, a national insurance number). Counts,
    days and lab values are left alone."""
    if present.empty or not np.all(np.mod(present, 1) == 0):
        return None
    whole = present.astype("int64")
    days, months = whole % 100, whole // 100 % 100
    if (
        whole.between(18000101, 21001231).all()
        and months.between(1, 12).all()
        and days.between(1, 31).all()
    ):
        return _YYYYMMDD
    if chosen:
        return None
    unique = len(present) >= 10 and whole.nunique() >= UNIQUE_SHARE * len(present)
    if unique and whole.abs().median() >= 10 ** (RECORD_NUMBER_DIGITS - 1):
        return (
            f"nearly every patient has a number of their own, {RECORD_NUMBER_DIGITS} digits "
            "or more: a record number"
        )
    return None


#: A number written with a decimal comma ("13,1", "-0,5", "1.234,5").
_DECIMAL_COMMA = re.compile(r"[+-]?(?:\d{1,3}(?:\.\d{3})+|\d+),\d+")
#: A number written like "1.250": a thousands separator, or three decimals.
_THOUSANDS_DOT = re.compile(r"[+-]?[1-9]\d{0,2}\.\d{3}")
#: Cells like "1.250" among numbers this many times larger (as medians) read as thousands.
THOUSANDS_RATIO = 100


def _where(values: pd.Series, label: Any, *, csv: bool) -> str:
    """The line (CSV, after its header) or row (Parquet) of the cell labelled `label`."""
    row = int(values.index.get_loc(label))
    return f"line {row + 2}" if csv else f"row {row + 1}"


def _check_numbers(
    path: Path, column: str, values: pd.Series, *, csv: bool, dialect: CsvDialect
) -> None:
    """A column that is mostly numbers (as `dialect` writes them) with some cells of text
    is a data error (a typo, "unknown" for a missing value): read as it is, it would turn
    into a category and every number in it into a label. So is a column of numbers
    written with a decimal comma the dialect does not expect ("13,1" would be a
    category). Columns mostly of text are categories."""
    if pd.api.types.is_numeric_dtype(values):
        return
    present = values.dropna()
    written = present.astype(str).str.strip()
    if dialect.thousands:
        written = written.str.replace(dialect.thousands, "", regex=False)
    numbers = pd.to_numeric(written.str.replace(dialect.decimal, ".", regex=False), errors="coerce")
    text = present[numbers.isna()]
    commas = text.astype(str).str.strip().str.fullmatch(_DECIMAL_COMMA)
    if commas.any() and numbers.notna().sum() + commas.sum() >= len(text) - commas.sum():
        first = commas.idxmax()
        ways = "use --decimal ,"
        if text[commas].astype(str).str.fullmatch(r"[+-]?\d{1,3},\d{3}").all():
            ways = "use --decimal , where the comma is the decimal mark, --thousands , where "
            ways += "it separates thousands"
        raise IngestError(
            path,
            f"column {column!r} holds numbers written with a comma ({text[first]!r}, "
            f"{_where(values, first, csv=csv)}; {int(commas.sum())} such cells): {ways}",
        )
    if text.empty or numbers.notna().sum() < len(text):
        return
    cells = f"{len(text)} such cell{'s' if len(text) > 1 else ''}"
    ways = "correct them, or leave a missing value's cell empty"
    if csv:
        ways += f" (or name the marker: --na-value {text.iloc[0]!r})"
    raise IngestError(
        path,
        f"column {column!r} holds numbers, but {_where(values, text.index[0], csv=csv)} has "
        f"{text.iloc[0]!r} ({cells}); {ways}",
    )


def _check_thousands(path: Path, column: str, cells: pd.Series, *, decimal: str) -> None:
    """A column of numbers in which cells written like "1.250" sit among numbers about a
    thousand times larger ("980") holds a thousands separator read as a decimal point
    (platelets 1250 stored as 1.25); in a file whose decimal mark is ",", any such cell
    does. Refused, with the option that reads it."""
    written = cells.dropna().astype(str).str.strip()
    dotted = written.str.fullmatch(_THOUSANDS_DOT)
    if not dotted.any():
        return
    others = written[~dotted].str.replace(decimal, ".", regex=False)
    numbers = pd.to_numeric(others, errors="coerce")
    if numbers.isna().any():  # text among them: a category, or `_check_numbers`' to refuse
        return
    first = dotted.idxmax()
    where = f"{written[first]!r} ({_where(cells, first, csv=True)}"
    if decimal == ",":
        why = f"holds {where}) in a file whose decimal mark is ','"
    else:
        small = pd.to_numeric(written[dotted]).abs().median()
        large = numbers.abs().median()
        if numbers.empty or not small > 0 or large < THOUSANDS_RATIO * small:
            return
        other = numbers.index[0]
        why = (
            f"mixes numbers written like {where}, read as {float(written[first]):g}) with "
            f"numbers about a thousand times larger ({written[other]!r}, "
            f"{_where(cells, other, csv=True)})"
        )
    raise IngestError(
        path,
        f"column {column!r} {why}: where '.' separates thousands use --thousands . (and "
        "--decimal , for decimal commas); otherwise correct the column",
    )


# --- FHIR --------------------------------------------------------------------------------


@dataclass
class PatientRecords:
    """Pseudonymised patient records as four frames (see the module docstring), and how
    many resources were left out as no fact about the patient, by why
    ("Observation entered-in-error": 2, "Condition refuted": 1)."""

    patients: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=PATIENT_COLUMNS))
    observations: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=OBSERVATION_COLUMNS)
    )
    conditions: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=CONDITION_COLUMNS)
    )
    medications: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=MEDICATION_COLUMNS)
    )
    skipped: dict[str, int] = field(default_factory=dict)


#: Observation statuses whose value is no result: withdrawn (entered-in-error), never
#: done (cancelled), not there yet (registered). Such an Observation is no fact.
NO_RESULT = frozenset({"entered-in-error", "cancelled", "registered"})
#: Condition verification statuses that say the patient does not have it.
NOT_A_CONDITION = frozenset({"refuted", "entered-in-error"})
#: The UCUM code system: a quantity's `code` in it is the unit, its `unit` a display.
UCUM = "http://unitsofmeasure.org"
#: Code systems whose displays are the terminology's own names for its codes, published
#: for all ("Patient Health Questionnaire 9 item (PHQ-9) total score", "COVID-19"), not
#: text a person wrote about this patient: only the patient's own identifiers are
#: redacted from them. So are those of every system under `HL7_TERMINOLOGY`.
TERMINOLOGIES = frozenset(
    {
        "http://loinc.org",
        "http://snomed.info/sct",
        "http://www.nlm.nih.gov/research/umls/rxnorm",
        "http://hl7.org/fhir/sid/icd-10",
        "http://hl7.org/fhir/sid/icd-10-cm",
        "http://hl7.org/fhir/sid/icd-9-cm",
        "http://fhir.de/CodeSystem/bfarm/icd-10-gm",
        "http://fhir.de/CodeSystem/bfarm/ops",
        "http://www.whocc.no/atc",
        "http://hl7.org/fhir/sid/ndc",
        "http://hl7.org/fhir/sid/cvx",
        UCUM,
    }
)
HL7_TERMINOLOGY = "http://terminology.hl7.org/CodeSystem/"


def _why_skipped(res: Any) -> str | None:
    """Why a resource states no fact about the patient ("entered-in-error"), or None."""
    kind = res.get_resource_type()
    if kind == "Observation" and res.status in NO_RESULT:
        return str(res.status)
    if kind == "Condition":
        code, _, _ = _coding(res.verificationStatus, None)
        return code if code in NOT_A_CONDITION else None
    if kind == "MedicationStatement" and res.status == "entered-in-error":
        return str(res.status)
    return None


def _coding(concept: Any, private: Identifiers) -> tuple[str | None, str | None, str | None]:
    """(code, system, name) of a CodeableConcept's first coding: its display, else the
    concept's text. A terminology's name for a code (`TERMINOLOGIES`) loses the patient's
    own identifiers (`private`); any other name, a local code system's display or the
    concept's text, is what a person wrote, scrubbed as free text (`scrub_identifiers`)."""
    if concept is None:
        return None, None, None
    codings = getattr(concept, "coding", None) or []
    first = codings[0] if codings else None
    code, system = (first.code, first.system) if first else (None, None)
    display = first.display if first else None
    if display and code and (system in TERMINOLOGIES or str(system).startswith(HL7_TERMINOLOGY)):
        return code, system, _redact(display, private)
    text = getattr(concept, "text", None)
    return code, system, scrub_identifiers(display or text, identifiers=private)


def _notes(resource: Any, identifiers: Identifiers) -> str | None:
    notes = [n.text for n in (getattr(resource, "note", None) or []) if n.text]
    return scrub_identifiers(" | ".join(notes), identifiers=identifiers) if notes else None


def _value(obs: Any, private: Identifiers, shift: datetime.timedelta) -> tuple[Any, str | None]:
    """An Observation's (or an Observation component's) value and unit: a number
    (quantity, integer, boolean), or text (a coded answer's name (`_coding`) or code, a
    string scrubbed of the patient's identifiers, a date or date-time moved by the
    patient's date `shift` (ISO 8601), or a quantity with a comparator, "<0.5": a
    result below a detection limit is no number to compute with), which is kept as a
    fact and never read as a number. A quantity's unit is its UCUM code where it has
    one, else its display (scrubbed as free text)."""
    q = getattr(obs, "valueQuantity", None)
    if q is not None:
        unit = (
            q.code
            if q.system == UCUM and q.code
            else (scrub_identifiers(q.unit, identifiers=private) or q.code)
        )
        if q.value is None:
            return None, unit
        if q.comparator:
            return f"{q.comparator}{q.value}", unit
        return float(q.value), unit
    for name in ("valueInteger", "valueBoolean"):
        v = getattr(obs, name, None)
        if v is not None:
            return float(v), None
    if getattr(obs, "valueString", None) is not None:
        return scrub_identifiers(obs.valueString, identifiers=private), None
    if getattr(obs, "valueCodeableConcept", None) is not None:
        code, _, answer = _coding(obs.valueCodeableConcept, private)
        return answer or code, None
    if getattr(obs, "valueDateTime", None) is not None:
        return _iso(shift_time(obs.valueDateTime, shift)), None
    return None, None


def _medication(statement: Any) -> Any:
    """A MedicationStatement's drug: its medicationCodeableConcept, or the code of the
    Medication its medicationReference names among its contained resources ("#m1")."""
    if statement.medicationCodeableConcept is not None:
        return statement.medicationCodeableConcept
    ref = statement.medicationReference.reference if statement.medicationReference else None
    for contained in statement.contained or []:
        if ref and ref == f"#{contained.id}" and contained.get_resource_type() == "Medication":
            return contained.code
    return None


def _iso(value: Any) -> str:
    """A (shifted) FHIR date or date-time as ISO 8601 text, as the bundle writes them."""
    return value.isoformat() if isinstance(value, datetime.date) else str(value)


def _observation_time(res: Any) -> Any:
    """When an Observation holds: its effective date-time or instant, else its effective
    period's start, else that period's end, else when it was issued (None without any)."""
    period = res.effectivePeriod
    effective = res.effectiveDateTime or res.effectiveInstant
    return effective or (period and (period.start or period.end)) or res.issued


def _observation_rows(
    res: Any, patient: str, private: Identifiers, shift: datetime.timedelta
) -> list[dict[str, Any]]:
    """An Observation's facts: its own value, and one per component (the systolic and
    diastolic pressure of a blood-pressure panel), each under the component's code, at
    the Observation's time (`_observation_time`) moved by the patient's date `shift`."""
    time = shift_time(_observation_time(res), shift)
    note = _notes(res, private)
    components = list(res.component or [])
    own = _value(res, private, shift)[0] is not None or not components
    rows = []
    for part in [res] * own + components:
        code, system, name = _coding(part.code, private)
        value, unit = _value(part, private, shift)
        rows.append(
            {
                "patient": patient,
                "code": code,
                "system": system,
                "name": name,
                "value": value,
                "unit": unit,
                "time": time,
                "note": note,
                "resource": res.id,
            }
        )
    return rows


#: Patients this old or older share one birth year (HIPAA Safe Harbor: ages over 89 are
#: identifying, so they are one group, "90 or older").
OLDEST_AGE = 90


def _safe_harbor_year(born: Any) -> int | None:
    """A birth year, with the patients of `OLDEST_AGE` or more given the year that age
    begins this year."""
    if born is None:
        return None
    return max(int(born.year), datetime.date.today().year - OLDEST_AGE)


def age_column(column: str) -> bool:
    """True when a column's name says it holds ages ("age", "Age", "age_years",
    "AgeAtDiagnosis"; not "stage" or "dosage")."""
    return "age" in _name_words(column)


#: `OLDEST_AGE` in the units an age column may be given in (none given: years).
_OLDEST_IN = {
    None: OLDEST_AGE, "year": OLDEST_AGE, "years": OLDEST_AGE, "yr": OLDEST_AGE, "y": OLDEST_AGE,
    "a": OLDEST_AGE,
    "month": OLDEST_AGE * 12, "months": OLDEST_AGE * 12, "mo": OLDEST_AGE * 12,
    "week": OLDEST_AGE * 52, "weeks": OLDEST_AGE * 52, "wk": OLDEST_AGE * 52,
    "d": OLDEST_AGE * 365, "day": OLDEST_AGE * 365, "days": OLDEST_AGE * 365,
}  # fmt: skip


def safe_harbor_ages(frame: pd.DataFrame, units: Mapping[str, str] | None = None) -> pd.DataFrame:
    """`frame` with every age of `OLDEST_AGE` years or more given as `OLDEST_AGE` (in the
    column's unit from `units`, years where none is given), as FHIR birth dates become
    birth years: HIPAA Safe Harbor counts ages over 89 as identifying. Only numeric
    columns named for ages (`age_column`) are changed; an age in a unit not known here is
    refused rather than left as it is."""
    out = frame.copy()
    for column in frame.columns:
        values = frame[column]
        if not age_column(str(column)) or not pd.api.types.is_numeric_dtype(values):
            continue
        if pd.api.types.is_bool_dtype(values):
            continue
        unit = (units or {}).get(str(column))
        if unit not in _OLDEST_IN:
            known = sorted(u for u in _OLDEST_IN if u)
            raise InvalidInputError(
                f"column {column!r} holds ages in {unit!r}; give them in one of {known}"
            )
        oldest = values >= _OLDEST_IN[unit]
        if oldest.any():
            logger.info(
                "%d ages in column %r are %d years or more: kept as %d (HIPAA Safe Harbor)",
                int(oldest.sum()),
                column,
                OLDEST_AGE,
                OLDEST_AGE,
            )
            out[column] = values.mask(oldest, _OLDEST_IN[unit])
    return out


def _own_words(patient: Any) -> list[str]:
    """What a Patient resource says about who the patient is, as text to scrub from every
    other text of theirs: names (with prefixes and suffixes), address parts, phone and
    e-mail."""
    parts: list[str | None] = []
    for n in patient.name or []:
        parts += [*(n.given or []), *(n.prefix or []), *(n.suffix or []), n.family, n.text]
    for a in patient.address or []:
        parts += [*(a.line or []), a.city, a.district, a.postalCode, a.text]
    parts += [t.value for t in patient.telecom or []]
    return [p for p in parts if p]


def _subject(resource: Any, path: Path) -> str:
    ref = getattr(resource, "subject", None)
    if ref is None or not ref.reference:
        raise IngestError(path, f"{resource.get_resource_type()} {resource.id!r} has no subject")
    return str(ref.reference)


#: The resources whose facts are read, in the order of `PatientRecords`' frames.
_FACT_KINDS = ("Observation", "Condition", "MedicationStatement")


def _fact_rows(
    kind: str, res: Any, patient: str, private: Identifiers, shift: datetime.timedelta
) -> list[dict[str, Any]]:
    """The rows of one Observation, Condition or MedicationStatement of `patient`, its
    names and notes scrubbed (`private`: the patient's own words), its times moved by
    their date `shift`. Raises `InvalidInputError` for a time the shift cannot move."""
    if kind == "Observation":
        return _observation_rows(res, patient, private, shift)
    if kind == "Condition":
        code, system, name = _coding(res.code, private)
        return [
            {
                "patient": patient,
                "code": code,
                "system": system,
                "name": name,
                "onset": shift_time(res.onsetDateTime, shift),
                "note": _notes(res, private),
            }
        ]
    code, system, name = _coding(_medication(res), private)
    start = res.effectiveDateTime or (res.effectivePeriod.start if res.effectivePeriod else None)
    return [
        {
            "patient": patient,
            "code": code,
            "system": system,
            "name": name,
            "status": res.status,
            "start": shift_time(start, shift),
            "note": _notes(res, private),
        }
    ]


def read_fhir_bundle(path: str | Path, *, key: bytes, date_key: bytes) -> PatientRecords:
    """Read a FHIR R4 bundle (JSON) of Patient, Observation, Condition, MedicationStatement.

    Patients are keyed by a pseudonym of their first identifier's value (else their
    resource id); references such as "Patient/123" or "urn:uuid:..." are resolved to it.
    Every time of a patient's facts moves by their date shift, keyed by `date_key` and
    that same value (`medloop.ingest.dateshift.date_offset`): the same in every bundle;
    so do dated answers (valueDateTime, kept as ISO 8601 text). An Observation's time is
    its effective time, else its period's start, else its end, else when it was issued.
    A time its shift moves out of the calendar raises `IngestError` naming the resource.
    Other resource types are skipped (logged), and so are resources that state no fact
    (`NO_RESULT` Observations, `NOT_A_CONDITION` Conditions, MedicationStatements entered
    in error), counted in `PatientRecords.skipped`. An Observation with components (a
    blood-pressure panel) gives one row per component.
    """
    from fhir.resources.R4B.bundle import Bundle

    path = Path(path)
    if not path.is_file():
        raise IngestError(path, "no such file")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise IngestError(path, f"not JSON: {error}") from error
    if not isinstance(data, dict) or data.get("resourceType") != "Bundle":
        raise IngestError(path, "expected a FHIR Bundle (resourceType 'Bundle')")
    try:
        bundle = Bundle.model_validate(data)
    except Exception as error:  # pydantic's ValidationError: the bundle breaks FHIR R4
        raise IngestError(path, f"invalid FHIR R4 bundle: {error}") from error

    entries: list[tuple[str | None, Any]] = [
        (e.fullUrl, e.resource) for e in (bundle.entry or []) if e.resource is not None
    ]
    pseudonyms: dict[str, str] = {}
    identifiers: dict[str, re.Pattern[str] | None] = {}
    shifts: dict[str, datetime.timedelta] = {}
    patients: list[dict[str, Any]] = []
    for full_url, res in entries:
        if res.get_resource_type() != "Patient":
            continue
        idents = [i.value for i in (res.identifier or []) if i.value]
        raw_id = idents[0] if idents else res.id
        if not raw_id:
            raise IngestError(path, "a Patient has neither an identifier nor an id")
        pseudonym = pseudonymize(str(raw_id), key=key)
        if any(p["patient"] == pseudonym for p in patients):
            raise IngestError(path, f"two Patient resources are one patient ({res.id!r})")
        private = identifier_pattern([*idents, *([res.id] if res.id else []), *_own_words(res)])
        shift = date_offset(str(raw_id), key=date_key)
        for ref in (f"Patient/{res.id}" if res.id else None, full_url):
            if ref:
                pseudonyms[ref] = pseudonym
                identifiers[ref] = private
                shifts[ref] = shift
        patients.append(
            {
                "patient": pseudonym,
                "sex": res.gender,
                "birth_year": _safe_harbor_year(res.birthDate),
                "deceased": bool(res.deceasedBoolean or res.deceasedDateTime),
            }
        )

    facts: dict[str, list[dict[str, Any]]] = {k: [] for k in _FACT_KINDS}
    skipped: dict[str, int] = {}
    for _, res in entries:
        kind = res.get_resource_type()
        if kind == "Patient":
            continue
        if kind not in _FACT_KINDS:
            logger.info("skipping %s resource in %s", kind, path.name)
            continue
        ref = _subject(res, path)
        if ref not in pseudonyms:
            raise IngestError(path, f"{kind} {res.id!r} refers to unknown patient {ref!r}")
        why = _why_skipped(res)
        if why is not None:
            logger.info("skipping %s %r in %s: %s", kind, res.id, path.name, why)
            skipped[f"{kind} {why}"] = skipped.get(f"{kind} {why}", 0) + 1
            continue
        try:
            facts[kind] += _fact_rows(kind, res, pseudonyms[ref], identifiers[ref], shifts[ref])
        except InvalidInputError as error:  # a date its shift moves out of the calendar
            raise IngestError(path, f"{kind} {res.id!r}: {error}") from error
    if not patients:
        raise IngestError(path, "the bundle holds no Patient resource")
    observations, conditions, medications = (facts[k] for k in _FACT_KINDS)
    logger.info(
        "read %d patients, %d observations, %d conditions, %d medications from %s (skipped: %s)",
        len(patients),
        len(observations),
        len(conditions),
        len(medications),
        path.name,
        skipped or "none",
    )
    return PatientRecords(
        patients=pd.DataFrame(patients, columns=PATIENT_COLUMNS),
        observations=pd.DataFrame(observations, columns=OBSERVATION_COLUMNS),
        conditions=pd.DataFrame(conditions, columns=CONDITION_COLUMNS),
        medications=pd.DataFrame(medications, columns=MEDICATION_COLUMNS),
        skipped=skipped,
    )


def check_columns(frame: pd.DataFrame, required: Iterable[str], *, what: str) -> None:
    """Raise `InvalidInputError` naming `what` and the missing columns."""
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise InvalidInputError(f"{what}: missing columns {missing}")
