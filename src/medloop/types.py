"""Shared vocabularies as StrEnums, and the one place options are checked."""

from __future__ import annotations

import difflib
from enum import StrEnum
from typing import TypeVar

from medloop.exceptions import UnknownOptionError


class Role(StrEnum):
    ADMIN = "admin"
    DOCTOR = "doctor"
    ANNOTATOR = "annotator"


#: Who may review items and record their final labels.
REVIEWER_ROLES = (Role.DOCTOR, Role.ADMIN)


class LabelSource(StrEnum):
    """Where an answer or a label came from."""

    CROWD = "crowd"
    DOCTOR = "doctor"
    MODEL = "model"
    GOLD = "gold"


class TaskStatus(StrEnum):
    OPEN = "open"
    DONE = "done"


class TaskKind(StrEnum):
    """Lay annotators label; doctors review."""

    LABEL = "label"
    REVIEW = "review"


class JobStatus(StrEnum):
    """A background job's life: queued -> running -> succeeded | failed."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Split(StrEnum):
    TRAIN = "train"
    VAL = "val"
    TEST = "test"


class LabelKind(StrEnum):
    """Consensus comes from aggregation; final labels are signed by a doctor (or gold)."""

    CONSENSUS = "consensus"
    FINAL = "final"


class Strategy(StrEnum):
    """Active-learning acquisition strategies.

    random, entropy and margin score items from predicted probabilities alone; bald
    (MC dropout), coreset (k-center on embeddings) and hybrid (core-set at the cold
    start, then diverse picks among the least certain) need the model and the images.
    """

    RANDOM = "random"
    ENTROPY = "entropy"
    MARGIN = "margin"
    BALD = "bald"
    CORESET = "coreset"
    HYBRID = "hybrid"

    @property
    def scores_predictions(self) -> bool:
        """True when probabilities alone are enough to rank items."""
        return self in (Strategy.RANDOM, Strategy.ENTROPY, Strategy.MARGIN)


class Allocation(StrEnum):
    """How the loop spends a round's labelling money.

    fixed: `redundancy` lay answers per new item, then `doctor_budget` reviews from the
    top of the review queue. cost_aware: one lay answer per new item, then the rest of
    the same money on whatever `medloop.aggregation.allocation.plan_labelling` finds
    worth most per unit of cost (more lay answers or a doctor) among the answered items
    without a final label.
    """

    FIXED = "fixed"
    COST_AWARE = "cost_aware"


#: The strategy the loop uses unless told otherwise: at or above random at every budget
#: with the highest area under the learning curve in the 3-seed benchmark
#: (benchmarks/README.md, "Active learning"; hybrid led before small training sets
#: filled their epochs).
RECOMMENDED_STRATEGY = Strategy.ENTROPY


class AggregationMethod(StrEnum):
    """Names of the aggregation methods (`medloop.aggregation.METHODS` holds each one's
    class; the names live here so that the CLI can list them without loading SciPy)."""

    MAJORITY_VOTE = "majority_vote"
    WAWA = "wawa"
    DAWID_SKENE = "dawid_skene"
    ONE_COIN = "one_coin"
    GLAD = "glad"
    MACE = "mace"
    EBCC = "ebcc"
    MINIMAX_ENTROPY = "minimax_entropy"


#: The recommended aggregation method, chosen by measurement (benchmarks/README.md).
DEFAULT_AGGREGATION = AggregationMethod.DAWID_SKENE

#: How long `medloop store gc` keeps a blob no row names (hours): far longer than an
#: import takes from writing a batch's blobs to committing the rows that name them.
DEFAULT_BLOB_GRACE_HOURS = 24.0


E = TypeVar("E", bound=StrEnum)


def look_up_option(value: str | E, options: type[E]) -> E:
    """Return the member of `options` named by `value`, or raise with a suggestion.

    >>> look_up_option("entropy", Strategy)
    <Strategy.ENTROPY: 'entropy'>
    """
    if isinstance(value, options):
        return value
    text = str(value).strip().lower()
    for member in options:
        if member.value == text:
            return member
    allowed = [m.value for m in options]
    close = difflib.get_close_matches(text, allowed, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise UnknownOptionError(
        f"{value!r} is not a valid {options.__name__}; choose one of {allowed}.{hint}"
    )
