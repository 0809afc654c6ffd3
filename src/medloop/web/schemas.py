"""API schemas per entity: Create (what clients send) and Public (what routes return).

Routes return Public models only, so nothing else (reference labels, patient ids, other
people's answers) can leak by accident.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr


class Create(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HealthPublic(BaseModel):
    status: Literal["ok"] = "ok"
    version: str


class LoginCreate(Create):
    username: str = Field(min_length=1, max_length=100)
    password: str = Field(min_length=1, max_length=1000)


class TokenPublic(BaseModel):
    token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int
    username: str
    role: str


class UserPublic(BaseModel):
    username: str
    role: str


class TaskPublic(BaseModel):
    task_id: int
    item_id: int
    image_url: str
    choices: list[str]
    project: str


Box = list[float]


class AnswerCreate(Create):
    label: StrictStr | StrictInt = Field(
        description="A class name from the task's choices (or its index)."
    )
    box: Box | None = Field(
        default=None,
        min_length=4,
        max_length=4,
        description="Lesion box [x, y, width, height] as fractions of the image.",
    )


class GoldFeedbackPublic(BaseModel):
    correct: bool
    expected: str


class ProgressPublic(BaseModel):
    answered: int
    gold_answered: int
    gold_correct: int
    gold_accuracy: float | None


class AnswerPublic(BaseModel):
    answer_id: int
    task_id: int
    label: str
    gold: GoldFeedbackPublic | None
    progress: ProgressPublic


class SkipCreate(Create):
    reason: Literal["skip", "unsure"] = "skip"


class ReviewItemPublic(BaseModel):
    item_id: int
    project: str
    image_url: str
    crowd_label: str
    crowd_confidence: float
    model_label: str | None
    model_confidence: float | None
    score: float
    reason: str
    flag_reason: str | None = Field(
        default=None, description="Why a doctor flagged the item (None: not flagged)."
    )
    requested: bool = Field(
        default=False, description="A labelling plan asked for a doctor's review of it."
    )
    model_positive: float | None = Field(
        default=None,
        description="A two-class model's P(positive_class) (None: another model, or none).",
    )
    model_threshold: float | None = Field(
        default=None,
        description="The cut on P(positive_class) the model decides at (tuned, not 0.5).",
    )
    positive_class: str | None = None


class CrowdAnswerPublic(BaseModel):
    worker: str
    label: str
    gold_answered: int
    gold_accuracy: float | None
    agrees_with_consensus: float | None
    box: Box | None = None
    estimated_accuracy: float | None = Field(
        default=None,
        description="The aggregation model's estimate of the annotator's accuracy.",
    )
    estimated_low: float | None = Field(default=None, description="Its 95% interval, low end.")
    estimated_high: float | None = Field(default=None, description="Its 95% interval, high end.")


class FusedBoxPublic(BaseModel):
    box: Box = Field(description="[x, y, width, height] as fractions of the image.")
    confidence: float = Field(
        description="Reliability-weighted share of the box-drawing annotators who drew it."
    )
    annotators: int
    boxes: int


class FlagPublic(BaseModel):
    item_id: int
    project: str
    reason: str
    flagged_by: str
    flagged_at: datetime


class FiguresAgePublic(BaseModel):
    """How far behind annotator figures served outdated are (`workflows.figures`)."""

    model_config = ConfigDict(from_attributes=True)

    answers: int = Field(description="Answers the project gained since they were computed.")
    labels: int = Field(description="Labels the project gained since they were computed.")
    computed_at: datetime
    seconds: int = Field(description="Seconds since they were computed.")
    updating: bool = Field(description="Being recomputed: a later read gets current ones.")


class ModelSummaryPublic(BaseModel):
    """The model in use, as a doctor weighs its suggestion."""

    model_config = ConfigDict(from_attributes=True)

    version: int
    trained_at: datetime
    n_train: int = Field(description="Images it trained on.")
    threshold: float | None = Field(
        description="A two-class model's cut on P(positive_class), tuned on validation."
    )
    positive_class: str | None
    test_auc: float | None = Field(description="On held-out test images.")
    test_accuracy: float | None
    test_n: int | None = Field(description="Held-out test images.")
    labels_since: int = Field(
        description="Final labels signed since it was trained: it has not learnt them."
    )


class FinalLabelEventPublic(BaseModel):
    """One final label in an item's history."""

    model_config = ConfigDict(from_attributes=True)

    label: str
    by: str | None = Field(description="Who signed it (None: the dataset's gold label).")
    at: datetime
    replaced: str | None = Field(description="The final label it replaced.")
    reason: str | None = Field(description="Why it was corrected.")


class ReviewDetailPublic(BaseModel):
    item_id: int
    project: str
    image_url: str
    choices: list[str]
    consensus_label: str | None
    consensus_probabilities: list[float] | None
    model_label: str | None
    model_probabilities: list[float] | None
    final_label: str | None
    answers: list[CrowdAnswerPublic]
    reliability_method: str
    fused_boxes: list[FusedBoxPublic]
    gradcam_url: str | None = Field(
        description="The Grad-CAM overlay of the newest model (None: no model yet)."
    )
    flag: FlagPublic | None
    figures_as_of: FiguresAgePublic | None = Field(
        default=None,
        description="How far behind the annotators' reliability is (None: current).",
    )
    model: ModelSummaryPublic | None = Field(
        default=None, description="The model the prediction is from (None: no model yet)."
    )
    history: list[FinalLabelEventPublic] = Field(
        default_factory=list,
        description="Every final label of the item, oldest first; the last is final_label.",
    )


class FlagCreate(Create):
    reason: str = Field(
        min_length=1,
        max_length=200,
        description="Why the item needs more than a decision now, e.g. 'needs a second opinion'.",
    )


class DecisionCreate(Create):
    label: StrictStr | StrictInt = Field(description="A class name of the item's project.")


class CorrectionCreate(Create):
    label: StrictStr | StrictInt = Field(description="The new final label (a class name).")
    replaces: StrictStr | StrictInt = Field(
        description="The final label being corrected, as the doctor saw it: if it changed "
        "meanwhile the correction is refused (409)."
    )
    reason: str = Field(max_length=2000, description="Why (kept in the audit log).")


class DecisionPublic(BaseModel):
    item_id: int
    project: str
    label: str


class PlanRequestPublic(BaseModel):
    item: int
    action: Literal["crowd", "doctor"]
    answers: int = Field(description="Lay answers asked (1 for a doctor's review).")
    cost: float
    risk: float = Field(description="Probability the item's most likely class is wrong now.")
    expected_risk: float = Field(description="The same, expected after the request.")
    gain: float
    gain_per_cost: float


class LabellingPlanPublic(BaseModel):
    project: str
    budget: float
    lay_cost: float
    doctor_cost: float
    cost: float
    candidates: int = Field(description="Open items considered.")
    pending_items: int = Field(
        description="Undecided items left out: their earlier requests are still open."
    )
    crowd_items: int
    lay_answers: int
    doctor_items: int
    expected_errors_now: float = Field(description="Summed over the planned items.")
    expected_errors_removed: float
    requests: list[PlanRequestPublic] = Field(description="Most worth asking first.")


class PublishedPlanPublic(BaseModel):
    project: str
    lay_tasks: int = Field(description="Labelling tasks opened for more answers.")
    lay_answers: int = Field(description="Lay answers asked for in all.")
    review_requests: int = Field(description="Items put at the head of the doctors' queue.")
