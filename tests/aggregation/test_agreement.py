"""Agreement metrics against textbook examples."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medloop.aggregation.agreement import fleiss_kappa, krippendorff_alpha, label_counts
from medloop.exceptions import InvalidInputError

# Fleiss (1971) as worked on Wikipedia: 10 subjects, 14 raters, 5 categories.
FLEISS_TABLE = np.array(
    [
        [0, 0, 0, 0, 14],
        [0, 2, 6, 4, 2],
        [0, 0, 3, 5, 6],
        [0, 3, 9, 2, 0],
        [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0],
        [3, 2, 6, 3, 0],
        [2, 5, 3, 2, 2],
        [6, 5, 2, 1, 0],
        [0, 2, 2, 3, 7],
    ]
)


def _answers_from_counts(counts: np.ndarray) -> pd.DataFrame:
    rows = [
        (task, f"r{i}", label)
        for task, row in enumerate(counts)
        for i, label in enumerate(np.repeat(np.arange(len(row)), row))
    ]
    return pd.DataFrame(rows, columns=["task", "worker", "label"])


def test_fleiss_kappa_textbook_example() -> None:
    assert fleiss_kappa(FLEISS_TABLE) == pytest.approx(0.2099, abs=1e-4)
    answers = _answers_from_counts(FLEISS_TABLE)
    assert fleiss_kappa(answers) == pytest.approx(0.2099, abs=1e-4)
    assert label_counts(answers).to_numpy().tolist() == FLEISS_TABLE.tolist()


# Krippendorff (2011), "Computing Krippendorff's alpha-reliability", example C:
# 4 coders, 12 units, missing values; nominal alpha = 0.743.
KRIPPENDORFF = {
    "A": [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
    "B": [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
    "C": [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
    "D": [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
}


def test_krippendorff_alpha_textbook_example() -> None:
    rows = [
        (unit, coder, value)
        for coder, values in KRIPPENDORFF.items()
        for unit, value in enumerate(values, start=1)
        if value is not None
    ]
    answers = pd.DataFrame(rows, columns=["task", "worker", "label"])
    assert krippendorff_alpha(answers) == pytest.approx(0.743, abs=5e-4)


def test_perfect_and_chance_agreement() -> None:
    perfect = _answers_from_counts(np.array([[3, 0], [0, 3], [3, 0]]))
    assert fleiss_kappa(perfect) == pytest.approx(1.0)
    assert krippendorff_alpha(perfect) == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    noise = pd.DataFrame(
        {
            "task": np.repeat(np.arange(2000), 3),
            "worker": np.tile(["a", "b", "c"], 2000),
            "label": rng.integers(0, 2, 6000),
        }
    )
    assert abs(fleiss_kappa(noise)) < 0.05
    assert abs(krippendorff_alpha(noise)) < 0.05


def test_needs_a_task_with_two_answers() -> None:
    single = pd.DataFrame({"task": [1, 2], "worker": ["a", "b"], "label": [0, 1]})
    with pytest.raises(InvalidInputError, match="two or more"):
        fleiss_kappa(single)
    with pytest.raises(InvalidInputError, match="two or more"):
        krippendorff_alpha(single)
