"""Too few events are refused; too few events per model column are trained with a warning."""

from __future__ import annotations

import pytest

from medloop.exceptions import InvalidInputError
from medloop.precision.samplesize import MIN_EVENTS, check_events, events_warning


def test_fewer_than_ten_events_are_refused() -> None:
    with pytest.raises(InvalidInputError, match=r"only 3 events in cohort 'c'.*at least 10"):
        check_events(events=3, where="cohort 'c'")
    check_events(events=MIN_EVENTS)


def test_a_warning_below_ten_events_per_column() -> None:
    assert events_warning(events=99, parameters=10) is not None
    assert events_warning(events=100, parameters=10) is None
    assert "9.9 per column" in str(events_warning(events=99, parameters=10))
