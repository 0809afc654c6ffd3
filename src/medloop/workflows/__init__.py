"""Workflows: read from the store, run one stage, write back. Used by the CLI and the web.

Workflows are the only code that joins the store to the algorithms; each function runs
one stage in one transaction. `loop` holds the human-computation loop's stages.
"""

from medloop.workflows.loop import (
    AggregationResult,
    CrowdRound,
    IngestSummary,
    LoopSettings,
    RoundReport,
    aggregate,
    aggregate_file,
    collect_crowd_answers,
    evaluate,
    ingest_dicom_folder,
    ingest_image_folder,
    ingest_medmnist,
    label_quality,
    load_images,
    project_classes,
    record_decisions,
    review_queue,
    run_loop,
    score_labels,
    select_items,
    train,
    training_targets,
)
from medloop.workflows.plan import LabellingPlan, PublishedPlan, plan_requests, publish_plan
from medloop.workflows.progress import Progress
from medloop.workflows.workspace import Workspace

__all__ = [
    "AggregationResult",
    "CrowdRound",
    "IngestSummary",
    "LabellingPlan",
    "LoopSettings",
    "Progress",
    "PublishedPlan",
    "RoundReport",
    "Workspace",
    "aggregate",
    "aggregate_file",
    "collect_crowd_answers",
    "evaluate",
    "ingest_dicom_folder",
    "ingest_image_folder",
    "ingest_medmnist",
    "label_quality",
    "load_images",
    "plan_requests",
    "project_classes",
    "publish_plan",
    "record_decisions",
    "review_queue",
    "run_loop",
    "score_labels",
    "select_items",
    "train",
    "training_targets",
]
