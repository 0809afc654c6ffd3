"""Is a cohort large enough for a model? Events, and events per variable.

A model learns from its events (for a 0/1 outcome: the rarer of the two outcomes), not
from its patients: 1,000 patients with 3 events teach as little as 12 patients with 3.
Peduzzi et al. found regression coefficients biased and their intervals wrong with fewer
than 10 events per candidate variable (EPV; Cox models: J Clin Epidemiol 1995;48:1503,
logistic: 1996;49:1373); Vittinghoff & McCulloch (Am J Epidemiol 2007;165:710) found the
problems common mainly below 5-9. Riley et al. (BMJ 2020;368:m441) replace such rules of
thumb by a calculation for each model; these thresholds are the floor, not a target, and
machine-learning models (forests, boosting) need more events per variable than
regression, not fewer (van der Ploeg et al., BMC Med Res Methodol 2014;14:137).

So: fewer than `MIN_EVENTS` events (10: the 10 EPV of a single variable) are refused
whatever the features; fewer than `WARN_EPV` (10) events per model column (one-hot
categories and missing-value flags count one each) are trained but carry a warning that
every output of the model shows.

>>> events_warning(events=40, parameters=8).split(":")[0]
'40 events for 8 model columns'
>>> events_warning(events=400, parameters=8) is None
True
"""

from __future__ import annotations

from medloop.exceptions import InvalidInputError

#: Events (or the rarer outcome) a model needs at least, whatever its features.
MIN_EVENTS = 10
#: Events per model column below which a model is trained with a warning.
WARN_EPV = 10


def check_events(*, events: int, what: str = "events", where: str = "") -> None:
    """Refuse fewer than `MIN_EVENTS` `what` (e.g. "events", "patients with outcome 0 in
    the treated arm"), said for `where` (the cohort) when given."""
    if events < MIN_EVENTS:
        place = f" in {where}" if where else ""
        raise InvalidInputError(
            f"only {events} {what}{place}: a model needs at least {MIN_EVENTS} (10 events "
            "per variable for even one variable, Peduzzi 1995); estimates from fewer are "
            "extreme and unreliable. Add patients or follow-up"
        )


def events_warning(*, events: int, parameters: int, what: str = "events") -> str | None:
    """The warning a model trained on `events` for `parameters` model columns carries, or
    None at `WARN_EPV` events per column or more."""
    if parameters < 1 or events / parameters >= WARN_EPV:
        return None
    return (
        f"{events} {what} for {parameters} model columns: {events / parameters:.1f} per "
        f"column, below the {WARN_EPV} per column that reliable estimates need (Peduzzi "
        "1995); treat its figures as rough"
    )
