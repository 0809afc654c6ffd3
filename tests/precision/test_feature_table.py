"""The documented feature table: units, missing values, categories, observations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medloop.exceptions import InvalidInputError, NotFittedError, UnknownOptionError
from medloop.precision import Feature, FeatureTable, convert_unit, observations_to_wide


def table() -> FeatureTable:
    return FeatureTable(
        [
            Feature("age", unit="year", description="age at baseline"),
            Feature(
                "hb", group="laboratory", unit="g/L", source_unit="g/dL", description="haemoglobin"
            ),
            Feature("smoker", group="lifestyle", kind="binary"),
            Feature("stage", kind="categorical"),
            Feature("nodes", log1p=True),
        ]
    )


def raw() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "age": [50.0, 60.0, np.nan],
            "hb": [13.0, np.nan, 15.0],
            "smoker": ["yes", "no", "no"],
            "stage": ["I", "II", None],
            "nodes": [0.0, 3.0, 9.0],
        },
        index=["p1", "p2", "p3"],
    )


def test_units_missing_values_and_categories() -> None:
    ft = table().fit(raw())
    X = ft.transform(raw())
    assert X.loc["p1", "hb"] == pytest.approx(130.0)  # g/dL -> g/L
    assert X.loc["p2", "hb"] == pytest.approx(140.0)  # median of 130 and 150
    assert X["hb_missing"].tolist() == [0.0, 1.0, 0.0]
    assert X.loc["p3", "age"] == pytest.approx(55.0)
    assert X["smoker"].tolist() == [1.0, 0.0, 0.0]
    assert X["stage=II"].tolist() == [0.0, 1.0, 0.0]  # "I" is the reference category
    assert X.loc["p3", "nodes"] == pytest.approx(np.log(10.0))
    assert "nodes_missing" not in X.columns  # no gaps seen in training
    new = pd.DataFrame(
        {"age": [40.0], "hb": [12.0], "smoker": ["yes"], "stage": ["IV"], "nodes": [1.0]}
    )
    # an unseen category read as all zeros would be the reference: stage IV as stage I
    with pytest.raises(InvalidInputError, match=r"'IV' is not among the categories"):
        ft.transform(new)
    assert list(ft.transform(new.assign(stage=["II"])).columns) == ft.columns_
    described = ft.describe().set_index("name")
    assert described.loc["hb", "unit"] == "g/L"
    assert described.loc["hb", "missing_rate"] == pytest.approx(1 / 3)
    assert described.loc["hb", "group"] == "laboratory"


def test_categories_are_matched_by_value_and_yes_no_columns_hold_0_or_1() -> None:
    """Grade 2 read as 2, 2.0 (a column with gaps) or "2.0" is one category; a gap is its
    own indicator, not the reference; a yes/no column holding 7 is an error."""
    grades = Feature("grade", kind="categorical")
    ft = FeatureTable([grades]).fit(pd.DataFrame({"grade": [1, 2, 3, 2]}))
    as_floats = ft.transform(pd.DataFrame({"grade": [1.0, 2.0, 3.0]}))
    as_text = ft.transform(pd.DataFrame({"grade": ["1", "2.0", "3"]}))
    assert as_floats["grade=2"].tolist() == [0.0, 1.0, 0.0] == as_text["grade=2"].tolist()
    gaps = FeatureTable([grades]).fit(pd.DataFrame({"grade": [1.0, 2.0, np.nan, 3.0]}))
    assert gaps.transform(pd.DataFrame({"grade": [np.nan]}))["grade_missing"].tolist() == [1.0]
    with pytest.raises(InvalidInputError, match="yes/no"):
        FeatureTable([Feature("smoker", kind="binary")]).fit(pd.DataFrame({"smoker": [0, 1, 7]}))


def test_errors() -> None:
    with pytest.raises(NotFittedError):
        table().transform(raw())
    with pytest.raises(InvalidInputError, match="missing columns \\['nodes'\\]"):
        table().fit(raw().drop(columns="nodes"))
    with pytest.raises(InvalidInputError, match="column 'age'"):
        table().fit(raw().assign(age=["a", "b", "c"]))
    with pytest.raises(UnknownOptionError, match="group"):
        Feature("x", group="astrology")
    with pytest.raises(InvalidInputError, match="cannot convert"):
        convert_unit(1.0, "kg", "mmol/L")


def test_notes_say_what_was_filled_in_and_what_lies_outside_the_training_range() -> None:
    """A doctor reads a risk with what the model was not told (a missing value it filled
    in) and where it extrapolates; a patient with no value at all for a feature (the
    column absent from their one-row frame) is scored as missing, not refused."""
    ft = table().fit(raw())
    assert ft.ranges_["hb"] == (130.0, 150.0)  # in the model's unit
    assert ft.ranges_["nodes"] == (0.0, 9.0)  # before log1p
    new = pd.DataFrame(
        {"age": [250.0, 55.0], "hb": [14.0, 14.0], "smoker": ["no", "no"], "stage": ["I", "I"]},
        index=["q1", "q2"],
    )
    X = ft.transform(new)  # no "nodes" column
    assert X["nodes"].tolist() == pytest.approx([np.log(4.0)] * 2)  # the median, 3
    notes = ft.notes(new)
    assert notes["q1"] == [
        "age 250 year lies outside the values the model learnt from (50 to 60 year): "
        "its answer there is an extrapolation",
        "nodes is missing: the model assumed 3, the cohort's median",
    ]
    assert notes["q2"] == ["nodes is missing: the model assumed 3, the cohort's median"]
    assert ft.notes(raw().iloc[:2]) == {  # in the model's unit
        "p2": ["hb is missing: the model assumed 140 g/L, the cohort's median"]
    }
    assert ft.notes(raw().iloc[:1]) == {}
    assert ft.notes(raw().iloc[[2]])["p3"] == [
        "age is missing: the model assumed 55 year, the cohort's median",
        "stage is missing: the model knows it as missing",
    ]


def test_observations_to_wide_takes_latest_and_converts_units() -> None:
    obs = pd.DataFrame(
        {
            "patient": ["a", "a", "b", "b"],
            "code": ["718-7", "718-7", "718-7", "29463-7"],
            "value": [12.0, 13.0, 140.0, 80.0],
            "unit": ["g/dL", "g/dL", "g/L", "kg"],
            "time": ["2024-01-01", "2024-02-01", "2024-01-01", "2024-01-01"],
        }
    )
    wide = observations_to_wide(
        obs, codes={"718-7": "hb", "29463-7": "weight"}, units={"hb": "g/L"}
    )
    assert wide.loc["a", "hb"] == pytest.approx(130.0)
    assert wide.loc["b", "hb"] == pytest.approx(140.0)
    assert wide.loc["b", "weight"] == 80.0
    assert np.isnan(wide.loc["a", "weight"])
