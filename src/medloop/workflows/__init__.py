"""Workflows: read from the store, run one stage, write back. Used by the CLI and the web.

Workflows are the only code that joins the store to the algorithms; each function runs
one stage in one transaction. `loop` holds the human-computation loop's stages.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # for type checkers; at run time `__getattr__` imports on first use
    from medloop.workflows import (
        access,
        accounts,
        annotate,
        audit,
        backup,
        checkpoints,
        dashboard,
        demo,
        erasure,
        explain,
        export,
        figures,
        ingest,
        jobs,
        loop,
        models,
        plan,
        precision,
        predict,
        progress,
        review,
        risk_models,
        schema,
        storage,
        workspace,
    )
    from medloop.workflows.ingest import (
        IngestSummary,
        ingest_dicom_folder,
        ingest_image_folder,
        ingest_medmnist,
    )
    from medloop.workflows.loop import (
        AggregationResult,
        CrowdRound,
        LoopSettings,
        RoundReport,
        aggregate,
        aggregate_file,
        collect_crowd_answers,
        evaluate,
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
    from medloop.workflows.plan import (
        LabellingPlan,
        PublishedPlan,
        plan_requests,
        publish_plan,
    )
    from medloop.workflows.progress import Progress
    from medloop.workflows.workspace import Workspace

#: Where each name of the package lives (module: names). Each is imported on first use,
#: so that `medloop --help` and light commands load neither PyTorch nor scikit-learn.
_EXPORTS = {
    "ingest": (
        "IngestSummary",
        "ingest_dicom_folder",
        "ingest_image_folder",
        "ingest_medmnist",
    ),
    "loop": (
        "AggregationResult",
        "CrowdRound",
        "LoopSettings",
        "RoundReport",
        "aggregate",
        "aggregate_file",
        "collect_crowd_answers",
        "evaluate",
        "label_quality",
        "load_images",
        "project_classes",
        "record_decisions",
        "review_queue",
        "run_loop",
        "score_labels",
        "select_items",
        "train",
        "training_targets",
    ),
    "plan": (
        "LabellingPlan",
        "PublishedPlan",
        "plan_requests",
        "publish_plan",
    ),
    "progress": ("Progress",),
    "workspace": ("Workspace",),
}
_HOMES = {name: module for module, names in _EXPORTS.items() for name in names}


if not TYPE_CHECKING:  # hidden from type checkers, which then check every name

    def __getattr__(name: str) -> Any:
        """A name of `_HOMES` or a submodule (`workflows.precision`), imported on first use."""
        if name in _HOMES:
            value = getattr(importlib.import_module(f"medloop.workflows.{_HOMES[name]}"), name)
        elif not name.startswith("_"):
            try:
                value = importlib.import_module(f"medloop.workflows.{name}")
            except ModuleNotFoundError as error:
                if error.name != f"medloop.workflows.{name}":
                    raise
                raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
        else:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        globals()[name] = value
        return value


__all__ = sorted(_HOMES)
