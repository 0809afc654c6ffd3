"""A documented feature table: what each feature means, its unit, and how gaps are filled.

`Feature` documents one column (group: clinical, laboratory, lifestyle, genomic;
unit; kind numeric/binary/categorical; optional log1p transform). `FeatureTable` turns a
raw per-patient frame into the numeric matrix the models use: converts declared units,
fills missing numbers with the training median (plus a `<name>_missing` indicator),
one-hot encodes categories seen in training. `observations_to_wide` pivots long
observations (records.read_fhir_bundle) into one row per patient, converting units.
Gene expression has its own transformer (`genes.GeneExpression`: log2(x + 1), per-gene
z-scores, top-variance genes) whose `describe()` documents `gene:<name>` features in the
same shape, group "genomic".
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from medloop.exceptions import InvalidInputError, NotFittedError, UnknownOptionError

logger = logging.getLogger(__name__)

Group = Literal["clinical", "laboratory", "lifestyle", "genomic", "treatment"]
Kind = Literal["numeric", "binary", "categorical"]
GROUPS: tuple[str, ...] = ("clinical", "laboratory", "lifestyle", "genomic", "treatment")
KINDS: tuple[str, ...] = ("numeric", "binary", "categorical")

#: multiply a value in the first unit by the factor to get the second unit (units of
#: concentration, "g/dL" or "umol/L", are converted by `_concentration` instead)
UNIT_FACTORS: dict[tuple[str, str], float] = {
    ("mg/dL", "mmol/L glucose"): 1 / 18.016,
    ("lb", "kg"): 0.45359237,
    ("[lb_av]", "kg"): 0.45359237,  # UCUM's pound, as FHIR quantities write it
    ("kg", "[lb_av]"): 1 / 0.45359237,
    ("kg", "g"): 1000.0,
    ("g", "kg"): 0.001,
    ("cm", "m"): 0.01,
    ("m", "cm"): 100.0,
    ("mm", "cm"): 0.1,
    ("in", "cm"): 2.54,
    ("[in_i]", "cm"): 2.54,
    ("d", "year"): 1 / 365.25,
    ("year", "d"): 365.25,
    ("month", "d"): 30.4375,
}

#: grams per unit of mass, moles per unit of substance, litres per unit of volume, as
#: UCUM writes them (u for micro) and as displays do (µ, dl)
_MASS = {"g": 1.0, "mg": 1e-3, "ug": 1e-6, "µg": 1e-6, "ng": 1e-9, "pg": 1e-12}
_SUBSTANCE = {"mol": 1.0, "mmol": 1e-3, "umol": 1e-6, "µmol": 1e-6, "nmol": 1e-9, "pmol": 1e-12}
_VOLUME = {"L": 1.0, "l": 1.0, "dL": 0.1, "dl": 0.1, "mL": 1e-3, "ml": 1e-3}

#: g/mol of the analytes labs report in mass and in molar concentrations (haemoglobin as
#: the monomer, one haem: 1 g/dL = 0.6206 mmol/L; creatinine 1 mg/dL = 88.4 umol/L;
#: glucose 1 mg/dL = 0.0555 mmol/L)
MOLAR_MASS = {"hemoglobin": 16114.5, "creatinine": 113.12, "glucose": 180.16}
#: The analyte of a LOINC code, mass and molar codes alike (labs send either code with
#: either unit).
ANALYTES = {
    "718-7": "hemoglobin",  # Hemoglobin [Mass/volume] in Blood
    "59260-0": "hemoglobin",  # Hemoglobin [Moles/volume] in Blood
    "2160-0": "creatinine",  # Creatinine [Mass/volume] in Serum or Plasma
    "14682-9": "creatinine",  # Creatinine [Moles/volume] in Serum or Plasma
    "2345-7": "glucose",  # Glucose [Mass/volume] in Serum or Plasma
    "2339-0": "glucose",  # Glucose [Mass/volume] in Blood
    "14749-6": "glucose",  # Glucose [Moles/volume] in Serum or Plasma
    "15074-8": "glucose",  # Glucose [Moles/volume] in Blood
}


def _concentration(unit: str) -> tuple[str, float] | None:
    """("mass", grams per litre) or ("substance", moles per litre) of one `unit` of
    concentration ("mg/dL" -> ("mass", 0.01)), None for any other unit."""
    amount, slash, volume = unit.partition("/")
    if not slash or volume not in _VOLUME:
        return None
    for kind, table in (("mass", _MASS), ("substance", _SUBSTANCE)):
        if amount in table:
            return kind, table[amount] / _VOLUME[volume]
    return None


def convert_unit(
    values: pd.Series | float, source: str, target: str, *, analyte: str | None = None
) -> pd.Series | float:
    """Convert `values` from unit `source` to `target` (same unit: unchanged). Mass and
    molar concentrations convert into each other for an `analyte` of `MOLAR_MASS`.

    >>> round(convert_unit(13.4, "g/dL", "mmol/L", analyte="hemoglobin"), 2)
    8.32
    """
    if source == target:
        return values
    factor = UNIT_FACTORS.get((source, target))
    if factor is not None:
        return values * factor
    given, wanted = _concentration(source), _concentration(target)
    if given is None or wanted is None:
        raise InvalidInputError(f"cannot convert unit {source!r} to {target!r}")
    (given_kind, given_factor), (wanted_kind, wanted_factor) = given, wanted
    factor = given_factor / wanted_factor
    if given_kind != wanted_kind:
        if analyte not in MOLAR_MASS:
            of = f"of {analyte!r} " if analyte else ""
            raise InvalidInputError(
                f"cannot convert unit {source!r} to {target!r} without the molar mass "
                f"{of}(known for {sorted(MOLAR_MASS)})"
            )
        mass = MOLAR_MASS[analyte]
        factor *= mass if given_kind == "substance" else 1 / mass
    return values * factor


@dataclass(frozen=True)
class Feature:
    """One documented feature. `unit` is the unit the model sees; `source_unit` the unit
    of the raw column (converted on the way in) when it differs."""

    name: str
    group: str = "clinical"
    kind: str = "numeric"
    unit: str | None = None
    description: str = ""
    source_unit: str | None = None
    log1p: bool = False

    def __post_init__(self) -> None:
        if self.group not in GROUPS:
            raise UnknownOptionError(f"feature {self.name!r}: unknown group {self.group!r}")
        if self.kind not in KINDS:
            raise UnknownOptionError(f"feature {self.name!r}: unknown kind {self.kind!r}")


class FeatureTable:
    """Raw per-patient frame -> numeric feature matrix, documented by `describe()`.

    Learned: `medians_` (numeric fill values), `categories_` (per categorical feature),
    `missing_rate_`, `ranges_` (each numeric feature's lowest and highest value, in its
    unit), `columns_` (output column order).
    """

    def __init__(self, features: Sequence[Feature], *, missing_indicators: bool = True) -> None:
        self.features = list(features)
        self.missing_indicators = missing_indicators

    def _raw(self, frame: pd.DataFrame) -> pd.DataFrame:
        missing = [f.name for f in self.features if f.name not in frame.columns]
        if missing:
            raise InvalidInputError(f"feature table: missing columns {missing}")
        out = pd.DataFrame(index=frame.index)
        for f in self.features:
            col = frame[f.name]
            if f.kind == "categorical":
                out[f.name] = col.map(_category).astype("string")
                continue
            num = _number(col, f)
            if f.log1p:
                if (num.dropna() < 0).any():
                    raise InvalidInputError(f"column {f.name!r}: log1p needs values >= 0")
                num = np.log1p(num)
            out[f.name] = num
        return out

    def fit(self, frame: pd.DataFrame) -> FeatureTable:
        raw = self._raw(frame)
        self.missing_rate_ = raw.isna().mean().to_dict()
        self.medians_: dict[str, float] = {}
        self.categories_: dict[str, list[str]] = {}
        self.ranges_: dict[str, tuple[float, float]] = {}
        for f in self.features:
            if f.kind == "categorical":
                self.categories_[f.name] = sorted(raw[f.name].dropna().unique().tolist())
            else:
                median = raw[f.name].median()
                self.medians_[f.name] = 0.0 if pd.isna(median) else float(median)
                seen = _number(frame[f.name], f).dropna()
                if len(seen):
                    self.ranges_[f.name] = (float(seen.min()), float(seen.max()))
        self.columns_ = list(self._encode(raw).columns)
        return self

    def notes(self, frame: pd.DataFrame) -> dict[Any, list[str]]:
        """Per patient (index of `frame`) with something to note, what a doctor reading
        the model's answer should know about the values it saw: a missing feature, and
        the value it was filled with, and numbers outside the range the model was trained
        on, where its answer is an extrapolation."""
        notes: dict[Any, list[str]] = {}
        for f in self.features:
            col = frame[f.name] if f.name in frame.columns else pd.Series(np.nan, frame.index)
            for patient in col.index[col.isna()]:
                notes.setdefault(patient, []).append(self._missing_note(f))
            if f.name not in getattr(self, "ranges_", {}) or f.kind != "numeric":
                continue
            low, high = self.ranges_[f.name]
            values = _number(col, f)
            unit = f" {f.unit}" if f.unit else ""
            for patient, value in values[(values < low) | (values > high)].items():
                notes.setdefault(patient, []).append(
                    f"{f.name} {value:g}{unit} lies outside the values the model learnt "
                    f"from ({low:g} to {high:g}{unit}): its answer there is an extrapolation"
                )
        return notes

    def _missing_note(self, feature: Feature) -> str:
        if feature.kind == "categorical":
            if self.missing_indicators and self.missing_rate_.get(feature.name, 0.0) > 0:
                return f"{feature.name} is missing: the model knows it as missing"
            reference = self.categories_[feature.name][:1] or ["none"]
            return f"{feature.name} is missing: the model read it as {reference[0]!r}"
        fill = self.medians_[feature.name]
        fill = float(np.expm1(fill)) if feature.log1p else fill
        unit = f" {feature.unit}" if feature.unit else ""
        return f"{feature.name} is missing: the model assumed {fill:g}{unit}, the cohort's median"

    def _encode(self, raw: pd.DataFrame) -> pd.DataFrame:
        parts: dict[str, pd.Series] = {}
        for f in self.features:
            col = raw[f.name]
            if f.kind == "categorical":
                known = [_category(c) for c in self.categories_[f.name]]
                unseen = col.dropna()[~col.dropna().isin(known)]
                if not unseen.empty:  # all zeros would read as the reference category
                    raise InvalidInputError(
                        f"column {f.name!r}: {unseen.iloc[0]!r} is not among the categories "
                        f"the model was trained on {known}; retrain it on patients with it"
                    )
                if self.missing_indicators and self.missing_rate_.get(f.name, 0.0) > 0:
                    parts[f"{f.name}_missing"] = col.isna().astype(float)
                for cat in known[1:]:  # the first category is the reference
                    parts[f"{f.name}={cat}"] = (col == cat).fillna(False).astype(float)
                continue
            if self.missing_indicators and self.missing_rate_.get(f.name, 0.0) > 0:
                parts[f"{f.name}_missing"] = col.isna().astype(float)
            parts[f.name] = col.fillna(self.medians_[f.name])
        return pd.DataFrame(parts, index=raw.index)

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The feature matrix of `frame`; a feature it lacks altogether (a patient with
        no value for it) is missing and filled as at fit (`notes` says so)."""
        if not hasattr(self, "columns_"):
            raise NotFittedError("FeatureTable is not fitted; call fit first")
        absent = [f.name for f in self.features if f.name not in frame.columns]
        frame = frame.assign(**{name: np.nan for name in absent}) if absent else frame
        return self._encode(self._raw(frame)).reindex(columns=self.columns_, fill_value=0.0)

    def fit_transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        return self.fit(frame).transform(frame)

    def describe(self) -> pd.DataFrame:
        """One row per feature: name, group, kind, unit, description, transform, missing
        rate and fill value (after fit)."""
        rows = []
        for f in self.features:
            row = asdict(f)
            row["missing_rate"] = getattr(self, "missing_rate_", {}).get(f.name)
            row["fill_value"] = getattr(self, "medians_", {}).get(f.name)
            rows.append(row)
        return pd.DataFrame(rows)


def _number(col: pd.Series, feature: Feature) -> pd.Series:
    """A numeric or yes/no column as floats in the feature's unit (before any log1p)."""
    try:
        num = pd.to_numeric(col.map(_binary) if feature.kind == "binary" else col)
    except (ValueError, TypeError) as error:
        raise InvalidInputError(f"column {feature.name!r}: not numeric ({error})") from error
    num = num.astype(float)
    if feature.kind == "binary" and not num.dropna().isin((0.0, 1.0)).all():
        odd = num.dropna()[~num.dropna().isin((0.0, 1.0))].iloc[0]
        raise InvalidInputError(f"column {feature.name!r} is yes/no (0/1), but holds {odd:g}")
    if feature.source_unit and feature.unit:
        num = pd.Series(convert_unit(num, feature.source_unit, feature.unit), index=num.index)
    return num


def _category(value: object) -> object:
    """One spelling per category: grade 2 read as an integer, as 2.0 (a column with gaps)
    or as the text "2.0" is the category "2"; text is stripped."""
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return value
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return str(int(value)) if float(value).is_integer() else str(float(value))
    text = str(value).strip()
    return re.sub(r"^(-?\d+)\.0+$", r"\1", text)


def _binary(value: object) -> object:
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in {"yes", "y", "true", "1", "positive"}:
            return 1.0
        if lowered in {"no", "n", "false", "0", "negative"}:
            return 0.0
    return value


def observations_to_wide(
    observations: pd.DataFrame,
    *,
    codes: Mapping[str, str] | None = None,
    units: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """One row per patient, one column per observation code: the latest result by time,
    where it is a number. A latest result that is text (a coded answer, a value below a
    detection limit, "<0.5") leaves the feature missing rather than letting an older
    number stand in for it.

    `codes` maps code -> feature name (others dropped); `units` maps feature name ->
    wanted unit (values in other units are converted, mass and molar concentrations of
    the analytes in `ANALYTES` too, or raise, naming code, unit and, where the frame has
    a `resource` column, the Observations).
    """
    needed = {"patient", "code", "value", "unit", "time"}
    missing = needed - set(observations.columns)
    if missing:
        raise InvalidInputError(f"observations: missing columns {sorted(missing)}")
    obs = observations.dropna(subset=["code", "value"]).copy()
    if codes is not None:
        obs = obs[obs["code"].isin(list(codes))]
        obs["feature"] = obs["code"].map(dict(codes))
    else:
        obs["feature"] = obs["code"]
    # numbers only: text (coded answers, free text) is a fact, not a feature
    obs["number"] = pd.to_numeric(
        obs["value"].where(~obs["value"].map(lambda v: isinstance(v, str))), errors="coerce"
    )
    for name, wanted in (units or {}).items():
        rows = (obs["feature"] == name) & obs["number"].notna() & obs["unit"].notna()
        for (code, unit), group in obs[rows].groupby(["code", "unit"], sort=False):
            try:
                converted = convert_unit(
                    group["number"], str(unit), wanted, analyte=ANALYTES.get(str(code))
                )
            except InvalidInputError as error:
                raise InvalidInputError(
                    f"observation {name!r}: {error}{_resources(group)}"
                ) from error
            obs.loc[group.index, "number"] = converted
            obs.loc[group.index, "unit"] = wanted
    # as text, so that stored times ("2024-03-11 10:15:00+01:00") and a bundle's (dates,
    # date-times) are read alike; pandas would take the first one's format for them all
    written = obs["time"].map(lambda t: None if t is None or t is pd.NaT else str(t))
    obs["_t"] = pd.to_datetime(written, format="ISO8601", errors="coerce", utc=True)
    obs = obs.sort_values(["patient", "feature", "_t"], na_position="first", kind="stable")
    latest = obs.groupby(["patient", "feature"]).tail(1).dropna(subset=["number"])
    wide = latest.set_index(["patient", "feature"])["number"].unstack("feature")
    wide.columns.name = None
    return wide


def _resources(group: pd.DataFrame, shown: int = 5) -> str:
    """The Observations a refused group of rows came from: ' (Observation a, b and 3 more)'."""
    if "resource" not in group.columns or group["resource"].isna().all():
        return ""
    ids = [str(i) for i in group["resource"].dropna().unique()]
    more = f" and {len(ids) - shown} more" if len(ids) > shown else ""
    return f" (Observation {', '.join(ids[:shown])}{more})"
