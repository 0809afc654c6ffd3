"""The loop's workflows: read from the store, run one stage, write back.

Workflows are the only code that joins the store to the algorithms. Each function is one
stage of the loop and runs in one transaction, so a failure leaves nothing half-done:

    (ingest) -> select_items -> collect_crowd_answers -> aggregate -> review -> train -> evaluate

Ingest has its own module (`workflows.ingest`): a folder is stored in batches.

`run_loop` chains them with simulated annotators and doctors for benchmarks and the demo.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import logging
import shutil
import time
import uuid
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy.orm import Session

from medloop.aggregation import DEFAULT_METHOD, MajorityVote, Method, make_aggregator
from medloop.aggregation.allocation import Action
from medloop.annotation import SimulatedCrowd, SimulatedDoctor, plan_tasks
from medloop.exceptions import InvalidInputError, NotFoundError
from medloop.ingest import decode_png
from medloop.review import rank_for_review
from medloop.store import flags
from medloop.store import repository as repo
from medloop.store.models import ModelVersion, Project
from medloop.types import (
    RECOMMENDED_STRATEGY,
    REVIEWER_ROLES,
    Allocation,
    LabelKind,
    LabelSource,
    Role,
    Split,
    Strategy,
    look_up_option,
)
from medloop.workflows import checkpoints
from medloop.workflows.explain import gradcam_folder
from medloop.workflows.plan import plan_requests
from medloop.workflows.progress import Progress, no_progress
from medloop.workflows.workspace import Workspace

logger = logging.getLogger(__name__)

SYSTEM = "system"

# --- reading images ----------------------------------------------------------------------


def load_images(
    ws: Workspace, *, shas: Sequence[str], channels: int, size: tuple[int, int] | None = None
) -> np.ndarray:
    """Decode stored PNG blobs into one uint8 array, (N, H, W) for `channels` 1 or
    (N, H, W, 3) for 3. A hospital's export mixes sizes (and grey with colour): images
    of another size than `size` (default: the size most of them have) are resized to it,
    grey ones repeated into colour or colour ones made grey, as a model takes them."""
    if not len(shas):
        raise InvalidInputError("no images to load")
    images = [decode_png(ws.blobs.get(sha)) for sha in shas]
    sizes = Counter(image.shape[:2] for image in images)
    target = size or sizes.most_common(1)[0][0]
    if set(sizes) == {target} and all((image.ndim == 3) == (channels == 3) for image in images):
        return np.stack(images)
    from medloop.learning.data import prepare_images  # torch only when images need it

    logger.info(
        "bringing %d images of %d sizes to %dx%d, %d channel(s)",
        len(images),
        len(sizes),
        target[0],
        target[1],
        channels,
    )
    return prepare_images(images, in_channels=channels, image_size=target)


def project_classes(ws: Workspace, *, project: str) -> list[str]:
    with ws.db.session() as s:
        return list(repo.get_project(s, name=project).classes)


# --- annotation --------------------------------------------------------------------------


def select_items(
    ws: Workspace,
    *,
    project: str,
    k: int,
    strategy: Strategy | str = RECOMMENDED_STRATEGY,
    seed: int = 0,
) -> list[int]:
    """Pick the next `k` unlabelled training items: by the newest model's acquisition
    scores (from its stored predictions, or from the model and the images for bald,
    coreset and hybrid), or at random before any model exists."""
    from medloop.learning import select_batch  # torch only when a model is used

    strategy = look_up_option(strategy, Strategy)
    with ws.db.session() as s:
        record = repo.get_image_project(s, name=project)
        items = repo.items_frame(s, project_id=record.id)
        taken = repo.labelled_item_ids(s, project_id=record.id)
        finals = repo.current_labels(s, project_id=record.id, kind=LabelKind.FINAL)
        train_items = items[items["split"] == Split.TRAIN]
        labelled = train_items.index.isin(list(taken)) | train_items.index.isin(finals.index)
        pool, done = train_items[~labelled], train_items[labelled]
        model = repo.current_model_version(s, project_id=record.id)
        predictions = (
            repo.predictions_frame(s, model_version_id=model.id, n_classes=len(record.classes))
            if model is not None
            else None
        )
    if pool.empty:
        return []
    k = min(k, len(pool))
    if model is None or predictions is None or not pool.index.isin(predictions.index).all():
        uniform = np.full((len(pool), len(record.classes)), 1.0 / len(record.classes))
        chosen = select_batch(uniform, k, Strategy.RANDOM, seed=seed)
    elif strategy.scores_predictions:
        chosen = select_batch(predictions.loc[pool.index].to_numpy(), k, strategy, seed=seed)
    else:
        from medloop.learning import TrainedClassifier, acquire

        path = checkpoints.checked_checkpoint(
            ws.checkpoint(model.checkpoint_path),
            sha256=model.metrics.get(checkpoints.DIGEST_KEY),
            project=project,
            version=model.version,
        )
        classifier = TrainedClassifier.load(path)

        def images(part: pd.DataFrame) -> np.ndarray:
            shas = part["image_sha256"].tolist()
            return load_images(
                ws, shas=shas, channels=classifier.in_channels, size=classifier.image_size
            )

        chosen = acquire(
            classifier, images(pool), k, strategy, labelled_images=images(done), seed=seed
        )
    return [int(i) for i in pool.index[np.asarray(chosen)]]


@dataclass(frozen=True)
class CrowdRound:
    tasks: int
    gold_tasks: int
    answers: int


def collect_crowd_answers(
    ws: Workspace,
    *,
    project: str,
    item_ids: Sequence[int],
    crowd: SimulatedCrowd,
    redundancy: int = 3,
    gold_rate: float = 0.1,
    round: int = 0,
    seed: int = 0,
) -> CrowdRound:
    """Create tasks for `item_ids` (plus gold questions drawn from final labels) and let
    simulated lay annotators answer them from the reference labels; nobody answers an
    item twice, as in the web queue."""
    with ws.db.session() as s:
        record = repo.get_project(s, name=project)
        items = repo.items_frame(s, project_id=record.id)
        finals = repo.current_labels(s, project_id=record.id, kind=LabelKind.FINAL)
        gold_pool = [int(i) for i in finals.index if items.loc[i, "split"] == Split.TRAIN]
        plans = plan_tasks(
            list(item_ids),
            redundancy=redundancy,
            gold_item_ids=gold_pool,
            gold_rate=gold_rate if gold_pool else 0.0,
            seed=seed,
        )
        task_ids = repo.create_tasks(
            s,
            project_id=record.id,
            item_ids=[p.item_id for p in plans],
            required_answers=[p.redundancy for p in plans],
            is_gold=[p.is_gold for p in plans],
            round=round,
        )
        truth = items.loc[[p.item_id for p in plans], "reference_label"]
        if truth.isna().any():
            raise InvalidInputError("simulated annotators need reference labels for every item")
        before = repo.answers_frame(s, project_id=record.id, sources=[LabelSource.CROWD])
        seen = before.groupby("task")["worker"].agg(set).to_dict()
        answers = crowd.answer(
            task_ids,
            truth.to_numpy(dtype=int),
            redundancy=redundancy,
            answered_by=[seen.get(p.item_id, set()) for p in plans],
        )
        workers = repo.ensure_users(
            s, usernames=answers["worker"].unique().tolist(), role=Role.ANNOTATOR, simulated=True
        )
        repo.add_answers(
            s,
            task_ids=answers["task"].tolist(),
            worker_ids=[workers[w] for w in answers["worker"]],
            labels=answers["label"].tolist(),
            source=LabelSource.CROWD,
        )
        repo.audit(
            s,
            actor=SYSTEM,
            action="simulate.crowd",
            entity="project",
            entity_id=record.id,
            detail={"tasks": len(plans), "round": round},
        )
    return CrowdRound(
        tasks=len(plans), gold_tasks=sum(p.is_gold for p in plans), answers=len(answers)
    )


# --- aggregation -------------------------------------------------------------------------


#: How long a replaced consensus row is kept at least: a training that read it stores
#: its version (and names the rows it learned from) within this time.
CONSENSUS_GRACE = timedelta(days=1)


@dataclass(frozen=True)
class AggregationResult:
    """Consensus labels and class probabilities per task; `known` are the tasks whose
    labels were given (final labels, gold) and clamp the fit: they are right by
    construction, so a score of the result leaves them out."""

    labels: pd.Series
    probabilities: pd.DataFrame
    worker_accuracy: pd.Series
    known: pd.Index = field(default_factory=pd.Index)


def aggregate(
    ws: Workspace, *, project: str, method: str | None = None, round: int = 0
) -> AggregationResult:
    """Aggregate crowd answers into consensus labels; final labels (doctor, gold) are
    known and clamp the posteriors. Writes one consensus row per answered item and
    deletes the earlier ones that are no longer current, taught no model version and
    were replaced more than `CONSENSUS_GRACE` ago (`repository.prune_consensus`)."""
    with ws.db.session() as s:
        record = repo.get_project(s, name=project)
        answers = repo.answers_frame(s, project_id=record.id, sources=[LabelSource.CROWD])
        if answers.empty:
            raise NotFoundError(f"project {project!r} has no crowd answers to aggregate")
        finals = repo.current_labels(s, project_id=record.id, kind=LabelKind.FINAL)
        known = finals["label"].astype(int) if not finals.empty else None
        classes = list(range(len(record.classes)))
        name = look_up_option(method or DEFAULT_METHOD, Method)
        model = make_aggregator(name, classes=classes)
        probabilities = model.fit_predict_proba(answers[["task", "worker", "label"]], known=known)
        probabilities = probabilities.loc[probabilities.index.isin(answers["task"])]
        labels = probabilities.idxmax(axis=1).astype(int)
        repo.add_item_labels(
            s,
            project_id=record.id,
            labels=labels,
            kind=LabelKind.CONSENSUS,
            source=LabelSource.CROWD,
            method=name.value,
            probabilities=probabilities,
            round=round,
        )
        pruned = repo.prune_consensus(
            s, project_id=record.id, replaced_before=datetime.now(UTC) - CONSENSUS_GRACE
        )
        repo.audit(
            s,
            actor=SYSTEM,
            action="label.consensus",
            entity="project",
            entity_id=record.id,
            detail={"items": len(labels), "method": name.value, "round": round, "pruned": pruned},
        )
        worker_accuracy = getattr(model, "worker_accuracy_", pd.Series(dtype=float))
    return AggregationResult(labels, probabilities, worker_accuracy, finals.index)


def aggregate_file(
    answers_csv: Path, *, method: str | None = None, gold: Path | None = None
) -> AggregationResult:
    """Aggregate an answers CSV (task,worker,label); `gold` (task,label) labels are known
    and used for fitting. `method` names a registered aggregator (None: the recommended
    default). A gold label must be one of the answers' labels (a blank one is skipped)."""
    answers = _read_csv(answers_csv, required=("task", "worker", "label"))
    known = None
    if gold is not None:
        known = _read_csv(gold, required=("task", "label")).set_index("task")["label"].dropna()
        # the answers' own labels, by text: 1.0 in a gold file (floats, for a blank cell) is 1
        given = pd.Series(answers["label"].dropna().unique())
        labels = dict(zip(_label_text(given), given, strict=True))
        text = _label_text(known)
        strange = text[~text.isin(list(labels))]
        if len(strange):
            raise InvalidInputError(
                f"{gold}: label {strange.iloc[0]!r} (task {strange.index[0]!r}) is not among "
                f"the answers' labels {sorted(labels)}"
            )
        known = text.map(labels)
    model = make_aggregator(method)
    probabilities = model.fit_predict_proba(answers, known=known)
    return AggregationResult(
        labels=probabilities.idxmax(axis=1),
        probabilities=probabilities,
        worker_accuracy=getattr(model, "worker_accuracy_", pd.Series(dtype=float)),
        known=pd.Index([]) if known is None else known.index,
    )


def score_labels(
    labels: pd.Series,
    *,
    truth_csv: Path,
    classes: Sequence[Any] = (),
    known: Collection[Any] = (),
) -> dict[str, Any]:
    """Accuracy of `labels` on the tasks of a truth CSV (task,label) whose label is not
    blank; scoring only. Labels compare as text, with 1, 1.0 and " 1" the same label.
    Tasks whose labels were `known` to the fit are left out (counted as
    `known_left_out`): scoring them would score the answer key against itself. Given the
    answers' `classes`, scored tasks whose truth is none of them (a typo such as "Cat"
    for "cat" scores as wrong) are counted as `truth_not_among_classes`."""
    truth = _read_csv(truth_csv, required=("task", "label")).set_index("task")["label"].dropna()
    answered = truth.index.intersection(labels.index)
    common = answered.difference(pd.Index(list(known)), sort=False)
    if common.empty:
        raise InvalidInputError(
            f"{truth_csv}: no labelled task in common with the answers"
            + (" other than the known (gold) ones" if len(answered) else "")
        )
    expected = _label_text(truth.loc[common])
    correct = _label_text(labels.loc[common]) == expected
    report: dict[str, Any] = {
        "accuracy": round_float(float(correct.mean())),
        "tasks_scored": len(common),
    }
    if len(answered) > len(common):
        report["known_left_out"] = len(answered) - len(common)
    if len(classes):
        strange = ~expected.isin(set(_label_text(pd.Series(list(classes)))))
        if strange.any():
            report["truth_not_among_classes"] = int(strange.sum())
    return report


def _label_text(labels: pd.Series) -> pd.Series:
    """Labels as text, whole numbers without a decimal part (a CSV column with a blank
    cell is read as floats: 1.0 is label 1)."""
    text = labels.astype(str).str.strip()
    numbers = pd.to_numeric(labels, errors="coerce")
    whole = numbers.notna() & (numbers == numbers.round())
    text[whole] = numbers[whole].astype("int64").astype(str)
    return text


def _read_csv(path: Path, *, required: Sequence[str]) -> pd.DataFrame:
    from medloop.exceptions import IngestError

    if not Path(path).is_file():
        raise IngestError(path, "file not found")
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise IngestError(path, f"not a readable CSV ({error})") from error
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise IngestError(path, f"missing column(s) {missing}; found {list(frame.columns)}")
    return frame


# --- review ------------------------------------------------------------------------------


def model_threshold(model: ModelVersion | None) -> float:
    """The cut on p(class 1) a binary model version decides with; 0.5 for other models
    and for versions trained before their cut was stored."""
    cut = None if model is None else model.metrics.get("threshold")
    return 0.5 if cut is None else float(cut)


def review_queue(ws: Workspace, *, project: str, limit: int | None = None) -> pd.DataFrame:
    """Items with a consensus but no final label, ranked for a doctor's attention."""
    with ws.db.session() as s:
        record = repo.get_project(s, name=project)
        consensus = repo.current_labels(s, project_id=record.id, kind=LabelKind.CONSENSUS)
        finals = repo.current_labels(s, project_id=record.id, kind=LabelKind.FINAL)
        model = repo.current_model_version(s, project_id=record.id)
        n_classes = len(record.classes)
        predictions = (
            repo.predictions_frame(s, model_version_id=model.id, n_classes=n_classes)
            if model is not None
            else None
        )
    pending = consensus[~consensus.index.isin(finals.index)]
    crowd = pd.DataFrame(
        pending["probabilities"].tolist(), index=pending.index, columns=list(range(n_classes))
    )
    if predictions is not None:
        predictions = predictions.loc[predictions.index.isin(crowd.index)]
    ranked = rank_for_review(crowd, predictions, model_threshold=model_threshold(model))
    return ranked.head(limit) if limit is not None else ranked


def record_decisions(
    ws: Workspace,
    *,
    project: str,
    decisions: pd.Series,
    doctor: str,
    round: int = 0,
    simulated: bool = False,
) -> int:
    """Record doctors' decisions (index item id, value class index) as review answers and
    final labels with provenance; each one is audited and closes the item's open flag."""
    if decisions.empty:
        return 0
    with ws.db.writing() as s:
        return write_decisions(
            s, project=project, decisions=decisions, doctor=doctor, round=round, simulated=simulated
        )


def write_decisions(
    session: Session,
    *,
    project: str,
    decisions: pd.Series,
    doctor: str,
    round: int = 0,
    simulated: bool = False,
) -> int:
    """`record_decisions` within the caller's transaction `session`."""
    record = repo.get_project(session, name=project)
    n_classes = len(record.classes)
    bad = decisions[(decisions < 0) | (decisions >= n_classes)]
    if not bad.empty:
        raise InvalidInputError(
            f"label {bad.iloc[0]} is not a class of {project!r} (0..{n_classes - 1})"
        )
    found = repo.items_in_project(session, project_id=record.id, item_ids=decisions.index)
    unknown = decisions.index[~decisions.index.isin(list(found))]
    if len(unknown):
        raise NotFoundError(f"item {unknown[0]} is not in project {project!r}")
    if simulated:
        users = repo.ensure_users(session, usernames=[doctor], role=Role.DOCTOR, simulated=True)
        doctor_id = users[doctor]
    else:
        doctor_id = repo.get_user_in_role(session, username=doctor, roles=REVIEWER_ROLES).id
    # A decision answers the item's open review request, if a plan asked for one.
    task_ids = repo.review_tasks(
        session, project_id=record.id, item_ids=decisions.index.tolist(), round=round
    )
    answer_ids = repo.add_answers(
        session,
        task_ids=task_ids,
        worker_ids=[doctor_id] * len(task_ids),
        labels=decisions.astype(int).tolist(),
        source=LabelSource.DOCTOR,
    )
    repo.add_item_labels(
        session,
        project_id=record.id,
        labels=decisions.astype(int),
        kind=LabelKind.FINAL,
        source=LabelSource.DOCTOR,
        method="review",
        decided_by_id=doctor_id,
        answer_ids=answer_ids,
        round=round,
    )
    # the model whose suggestion the doctor saw (None: no model yet)
    model = repo.current_model_version(session, project_id=record.id)
    for item_id, label in decisions.items():
        repo.audit(
            session,
            actor=doctor,
            action="label.final",
            entity="item",
            entity_id=item_id,
            detail={
                "label": int(label),
                "class": str(record.classes[int(label)]),
                "round": round,
                "model_version": None if model is None else model.version,
            },
        )
        closed = flags.resolve_flags(session, item_id=int(item_id), resolved_by_id=doctor_id)
        if closed:  # a final label settles what a flag asked for
            repo.audit(
                session,
                actor=doctor,
                action="review.unflag",
                entity="item",
                entity_id=item_id,
                detail={"flags": closed, "resolved_by": "final label"},
            )
    return len(decisions)


# --- training and evaluation -------------------------------------------------------------


def training_targets(ws: Workspace, *, project: str) -> pd.DataFrame:
    """Soft targets per labelled training item: one-hot for final labels, the consensus
    posterior otherwise. Index item id, one column per class."""
    with ws.db.session() as s:
        record = repo.get_project(s, name=project)
        items = repo.items_frame(s, project_id=record.id)
        consensus = repo.current_labels(s, project_id=record.id, kind=LabelKind.CONSENSUS)
        finals = repo.current_labels(s, project_id=record.id, kind=LabelKind.FINAL)
    return _targets(items, consensus, finals, n_classes=len(record.classes))


def _targets(
    items: pd.DataFrame, consensus: pd.DataFrame, finals: pd.DataFrame, *, n_classes: int
) -> pd.DataFrame:
    """`training_targets` from the labels read."""
    columns = list(range(n_classes))
    soft = (
        pd.DataFrame(consensus["probabilities"].tolist(), index=consensus.index, columns=columns)
        if not consensus.empty
        else pd.DataFrame(columns=columns, dtype=float)
    )
    hard = pd.DataFrame(
        np.eye(n_classes)[finals["label"].astype(int).to_numpy()],
        index=finals.index,
        columns=columns,
    )
    targets = pd.concat([soft[~soft.index.isin(hard.index)], hard]).sort_index()
    train_items = items.index[items["split"] == Split.TRAIN]
    return targets.loc[targets.index.isin(train_items)]


def _label_ids(
    targets: pd.DataFrame, val: pd.DataFrame, consensus: pd.DataFrame, finals: pd.DataFrame
) -> list[int]:
    """The ids of the label rows a training used: each training item's final label, else
    its consensus, and the final labels of the validation items."""
    signed = targets.index.isin(finals.index)
    used = [
        finals.loc[targets.index[signed], "label_id"],
        consensus.loc[targets.index[~signed], "label_id"],
        finals.loc[val.index[val.index.isin(finals.index)], "label_id"],
    ]
    return sorted(int(i) for part in used for i in part)


def _validation_set(items: pd.DataFrame, finals: pd.DataFrame) -> pd.DataFrame:
    """Validation items with a label: the doctor's final label where present, otherwise
    the dataset's reference label."""
    val = items[items["split"] == Split.VAL].copy()
    val["label"] = val["reference_label"]
    signed = val.index.isin(finals.index)
    val.loc[signed, "label"] = finals.loc[val.index[signed], "label"].to_numpy()
    return val[val["label"].notna()]


def train(
    ws: Workspace,
    *,
    project: str,
    config: Any = None,
    round: int | None = None,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
) -> dict[str, Any]:
    """Train a new model version on the current labels, evaluate it on the test split,
    store its predictions for every item and the label rows it learned from, put it in
    use and return its metrics. The version belongs to `round` (None: the project's
    current round, that of its newest tasks)."""
    from medloop.learning import TrainConfig, classification_metrics, train_classifier

    config = config or TrainConfig()
    with ws.db.session() as s:  # one read: the labels recorded are those trained on
        record = repo.get_project(s, name=project)
        items = repo.items_frame(s, project_id=record.id)
        finals = repo.current_labels(s, project_id=record.id, kind=LabelKind.FINAL, with_ids=True)
        consensus = repo.current_labels(
            s, project_id=record.id, kind=LabelKind.CONSENSUS, with_ids=True
        )
    targets = _targets(items, consensus, finals, n_classes=len(record.classes))
    if len(targets) < 10:
        raise InvalidInputError(
            f"project {project!r} has {len(targets)} labelled training items; need at least 10"
        )
    consensus_methods = consensus.loc[consensus.index.isin(targets.index), "method"]
    val = _validation_set(items, finals)
    if len(val) < 10 or val["label"].nunique() < 2:
        raise InvalidInputError(
            f"project {project!r} needs at least 10 labelled validation items of two or more "
            f"classes to choose a model on; it has {len(val)} of {val['label'].nunique()} "
            "class(es)"
        )
    n_classes = len(record.classes)
    # A name of its own while it trains: a training started meanwhile (another command, a
    # retrain job) gets the next version number, and must not write over this file.
    checkpoint = ws.settings.model_dir / project / f"training-{uuid.uuid4().hex}.pt"
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    # decoded once, indexed below
    images = load_images(ws, shas=items["image_sha256"].tolist(), channels=record.n_channels)
    started = time.perf_counter()
    with _discarded_on_failure(checkpoint):  # a failed training leaves no file
        classifier = train_classifier(
            images[items.index.get_indexer(targets.index)],
            targets.to_numpy(dtype=np.float32),
            images[items.index.get_indexer(val.index)],
            val["label"].to_numpy(dtype=int),
            n_classes=n_classes,
            config=config,
            checkpoint_path=checkpoint,
            on_epoch=on_epoch,
        )
        train_seconds = time.perf_counter() - started
        digest = checkpoints.file_sha256(checkpoint)  # checked before every load
        all_probs = classifier.predict_proba(images)
        probabilities = pd.DataFrame(all_probs, index=items.index, columns=list(range(n_classes)))
        decisions = pd.Series(classifier.decide(all_probs), index=items.index)
        test = items[(items["split"] == Split.TEST) & items["reference_label"].notna()]
        metrics: dict[str, Any] = {
            "n_train": len(targets),
            **_provenance(targets, finals, consensus_methods, classifier.config),
            # validation labels taken from the dataset's reference labels, not from anyone
            # in the loop (a doctor's final label replaces the reference where there is one)
            "n_val": len(val),
            "n_val_reference": int((~val.index.isin(finals.index)).sum()),
            "train_seconds": round_float(train_seconds),
            "best_epoch": classifier.best_epoch,
            "epochs": len(classifier.history),
            # binary: the cut on p(class 1) the model decides with (chosen on validation)
            "threshold": classifier.threshold if n_classes == 2 else None,
            checkpoints.DIGEST_KEY: digest,
        }
        scored = [("val", val.index, val["label"])]
        if len(test):
            scored.append(("test", test.index, test["reference_label"]))
        for split, index, labels in scored:
            truth = labels.to_numpy(dtype=int)
            split_metrics = classification_metrics(probabilities.loc[index].to_numpy(), truth)
            # `acc` is the accuracy of the model's decisions (at its threshold), as
            # `predict` and the review pages make them; the argmax's is kept beside it
            split_metrics["acc_argmax"] = split_metrics["acc"]
            split_metrics["acc"] = float(np.mean(decisions.loc[index].to_numpy() == truth))
            metrics.update({f"{split}_{k}": v for k, v in split_metrics.items()})
        with ws.db.writing() as s:
            record = repo.get_project(s, name=project)
            repo.lock_row(s, Project, record.id)  # trainings finishing together take turns
            number = repo.next_model_version(s, project_id=record.id)
            if round is None:
                round = repo.latest_round(s, project_id=record.id)
            version = repo.add_model_version(
                s,
                project_id=record.id,
                network=classifier.config.network,
                # relative to the home's model folder: a copied or restored home keeps it
                checkpoint_path=f"{project}/v{number}.pt",
                n_train=len(targets),
                metrics=metrics,
                round=round,
                version=number,
                label_ids=_label_ids(targets, val, consensus, finals),
            )
            repo.save_predictions(s, model_version_id=version.id, probabilities=probabilities)
            repo.audit(  # the version is in use from now on (`workflows.models`)
                s,
                actor=SYSTEM,
                action="model.train",
                entity="model_version",
                entity_id=version.id,
                detail={"round": round, "n_train": len(targets), "version": number},
            )
            metrics["version"] = number
            stored = ws.checkpoint(version.checkpoint_path)
            # Grad-CAM overlays cached beside an earlier file of this name (a version
            # number used again after a database restore) explain another model
            shutil.rmtree(gradcam_folder(stored), ignore_errors=True)
            checkpoint.replace(stored)  # last, before commit
    return metrics


def _provenance(
    targets: pd.DataFrame, finals: pd.DataFrame, consensus_methods: pd.Series, config: Any
) -> dict[str, Any]:
    """What a model version was trained on and with, kept beside its metrics: how many
    training labels were final (a doctor's or gold) and how many the crowd's consensus
    (and by which method), a digest of the training targets (two versions with the same
    digest learned from the same labels), the seed, the whole training configuration
    (what retraining it takes besides the labels) and the software."""
    digest = hashlib.sha256(targets.round(6).to_csv().encode()).hexdigest()[:16]
    methods = sorted({str(m) for m in consensus_methods.dropna()})
    return {
        "n_train_final": int(targets.index.isin(finals.index).sum()),
        "n_train_consensus": int((~targets.index.isin(finals.index)).sum()),
        "consensus_method": ", ".join(methods) or None,
        "labels_digest": digest,
        "seed": config.seed,
        "train_config": dataclasses.asdict(config),
        "software": ", ".join(
            f"{name} {importlib.metadata.version(name)}" for name in ("medloop", "torch", "monai")
        ),
    }


@contextmanager
def _discarded_on_failure(path: Path) -> Iterator[None]:
    """Delete `path` if the block fails (a training's checkpoint before it is stored)."""
    try:
        yield
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def round_float(value: float, digits: int = 4) -> float:
    return float(round(value, digits))


def evaluate(ws: Workspace, *, project: str, version: int | None = None) -> dict[str, Any]:
    """Metrics of a stored model version (default: the one in use)."""
    from medloop.workflows.models import chosen_version

    with ws.db.session() as s:
        record = repo.get_project(s, name=project)
        chosen = chosen_version(s, project=record, version=version, deleted=True)
    return {"version": chosen.version, "network": chosen.network, **chosen.metrics}


def label_quality(ws: Workspace, *, project: str) -> dict[str, Any]:
    """How good are the labels of labelled training items, against the reference labels.

    `consensus_accuracy` is the loop's current labels (final, else consensus);
    `majority_vote_accuracy` plain majority vote of the crowd alone; and, so that the
    doctors' part is not credited to the aggregation, `majority_vote_doctors_accuracy`
    is majority vote with the same final labels where doctors signed, and the
    `unreviewed_*` figures compare consensus and majority vote on the items no doctor
    signed (`unreviewed_items`)."""
    with ws.db.session() as s:
        record = repo.get_project(s, name=project)
        items = repo.items_frame(s, project_id=record.id)
        answers = repo.answers_frame(s, project_id=record.id)
        consensus = repo.current_labels(s, project_id=record.id, kind=LabelKind.CONSENSUS)
        finals = repo.current_labels(s, project_id=record.id, kind=LabelKind.FINAL)
    crowd = answers[(answers["source"] == LabelSource.CROWD) & ~answers["is_gold"]]
    labelled = pd.Index(sorted(set(crowd["task"])), name="item")
    reference = items.loc[labelled, "reference_label"]
    signed = labelled.isin(finals.index)
    signed_labels = finals.loc[labelled[signed], "label"]
    majority = (
        MajorityVote(classes=list(range(len(record.classes))))
        .fit_predict(crowd[["task", "worker", "label"]])
        .reindex(labelled)
    )
    current = consensus["label"].reindex(labelled)
    current[signed] = signed_labels
    majority_doctors = majority.copy()
    majority_doctors[signed] = signed_labels
    scored = reference.notna().to_numpy()
    unreviewed = scored & ~signed

    def accuracy(labels: pd.Series, among: np.ndarray = scored) -> float:
        return round_float(float((labels[among] == reference[among]).mean()))

    return {
        "labelled_items": len(labelled),
        "crowd_answers": int((answers["source"] == LabelSource.CROWD).sum()),
        "doctor_labels": int((answers["source"] == LabelSource.DOCTOR).sum()),
        "consensus_accuracy": accuracy(current),
        "majority_vote_accuracy": accuracy(majority),
        "majority_vote_doctors_accuracy": accuracy(majority_doctors),
        "unreviewed_items": int(unreviewed.sum()),
        "unreviewed_consensus_accuracy": accuracy(current, unreviewed),
        "unreviewed_majority_vote_accuracy": accuracy(majority, unreviewed),
    }


# --- the loop ----------------------------------------------------------------------------


@dataclass(frozen=True)
class LoopSettings:
    """Simulated human computation: a lay crowd, a doctor with a budget, and the model."""

    rounds: int = 5
    per_round: int = 200
    strategy: str = RECOMMENDED_STRATEGY.value
    seed: int = 0
    redundancy: int = 3
    gold_rate: float = 0.1
    n_annotators: int = 30
    lay_accuracy: float = 0.7
    doctor_accuracy: float = 0.97
    doctor_budget: int = 50
    allocation: str = Allocation.FIXED.value
    lay_cost: float = 1.0
    doctor_cost: float = 20.0

    def __post_init__(self) -> None:
        """An unknown strategy or allocation fails here, before any work is done."""
        look_up_option(self.strategy, Strategy)
        look_up_option(self.allocation, Allocation)

    @property
    def round_budget(self) -> float:
        """What a fixed round costs: its lay answers and its doctor reviews."""
        return (
            self.per_round * self.redundancy * self.lay_cost + self.doctor_budget * self.doctor_cost
        )


#: The `label_quality` figures a round reports.
_QUALITY_FIGURES = (
    "consensus_accuracy",
    "majority_vote_accuracy",
    "majority_vote_doctors_accuracy",
    "unreviewed_items",
    "unreviewed_consensus_accuracy",
    "unreviewed_majority_vote_accuracy",
)


@dataclass
class RoundReport:
    round: int
    labelled_items: int
    crowd_answers: int
    doctor_labels: int
    consensus_accuracy: float
    majority_vote_accuracy: float
    majority_vote_doctors_accuracy: float
    unreviewed_items: int
    unreviewed_consensus_accuracy: float
    unreviewed_majority_vote_accuracy: float
    test_auc: float
    test_acc: float
    val_auc: float
    model_version: int
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(data.pop("extra"))
        return data


def run_loop(
    ws: Workspace,
    *,
    project: str,
    settings: LoopSettings = LoopSettings(),
    train_config: Any = None,
    on_round: Callable[[RoundReport], None] | None = None,
    progress: Progress = no_progress,
) -> list[RoundReport]:
    """Run the human-computation loop with simulated annotators and doctors.

    Each round: pick items (active learning), lay annotators answer (with gold
    questions), aggregate, a doctor reviews the most doubtful items within budget,
    re-aggregate with the doctor's labels as known, train, evaluate.
    """
    allocation = look_up_option(settings.allocation, Allocation)
    cost_aware = allocation is Allocation.COST_AWARE
    if not (settings.lay_cost > 0 and settings.doctor_cost > 0):
        raise InvalidInputError("lay_cost and doctor_cost must be positive")
    with ws.db.session() as s:
        n_classes = len(repo.get_project(s, name=project).classes)
    crowd = SimulatedCrowd(
        settings.n_annotators,
        n_classes=n_classes,
        accuracy_mean=settings.lay_accuracy,
        seed=settings.seed,
    )
    doctor = SimulatedDoctor(
        "doctor-sim",
        n_classes=n_classes,
        accuracy=settings.doctor_accuracy,
        # cost-aware rounds may buy as many reviews as the round's money pays for
        budget=int(settings.round_budget // settings.doctor_cost)
        if cost_aware
        else settings.doctor_budget,
        seed=settings.seed + 1,
    )
    reports = []
    for round_index in range(settings.rounds):
        started = time.perf_counter()
        seed = settings.seed * 1000 + round_index
        _step(progress, settings, round_index, 0, "selecting items")
        chosen = select_items(
            ws, project=project, k=settings.per_round, strategy=settings.strategy, seed=seed
        )
        if not chosen and round_index == 0:
            raise InvalidInputError(
                f"project {project!r} has no unlabelled training images left to label"
            )
        if not chosen:
            logger.info("no unlabelled items left; stopping after %d rounds", round_index)
            break
        _step(progress, settings, round_index, 1, "lay annotators answering")
        first = collect_crowd_answers(
            ws,
            project=project,
            item_ids=chosen,
            crowd=crowd,
            redundancy=1 if cost_aware else settings.redundancy,
            gold_rate=settings.gold_rate,
            round=round_index,
            seed=seed,
        )
        aggregate(ws, project=project, round=round_index)
        if cost_aware:
            _step(progress, settings, round_index, 2, "planned lay answers and doctor reviews")
            _planned_requests(
                ws,
                project=project,
                settings=settings,
                crowd=crowd,
                doctor=doctor,
                budget=max(0.0, settings.round_budget - first.answers * settings.lay_cost),
                round=round_index,
                seed=seed,
            )
        else:
            _step(progress, settings, round_index, 2, "doctor reviewing")
            _simulated_review(
                ws, project=project, doctor=doctor, budget=settings.doctor_budget, round=round_index
            )
        aggregate(ws, project=project, round=round_index)
        _step(progress, settings, round_index, 3, "training")
        metrics = train(ws, project=project, config=train_config, round=round_index)
        quality = label_quality(ws, project=project)
        report = RoundReport(
            round=round_index,
            labelled_items=quality["labelled_items"],
            crowd_answers=quality["crowd_answers"],
            doctor_labels=quality["doctor_labels"],
            **{key: quality[key] for key in _QUALITY_FIGURES},
            test_auc=round_float(metrics.get("test_auc", float("nan"))),
            test_acc=round_float(metrics.get("test_acc", float("nan"))),
            val_auc=round_float(metrics["val_auc"]),
            model_version=metrics["version"],
            seconds=round_float(time.perf_counter() - started, 2),
            extra={
                "train_seconds": metrics["train_seconds"],
                "epochs": metrics["epochs"],
                # what the cost leaves out: the dataset's own labels chose the model
                "reference_val_labels": metrics["n_val_reference"],
                "cost": round_float(
                    quality["crowd_answers"] * settings.lay_cost
                    + quality["doctor_labels"] * settings.doctor_cost,
                    2,
                ),
            },
        )
        reports.append(report)
        _step(progress, settings, round_index, LOOP_STEPS, "done")
        if on_round is not None:
            on_round(report)
    return reports


LOOP_STEPS = 4


def _step(
    progress: Progress, settings: LoopSettings, round_index: int, step: int, what: str
) -> None:
    done = round_index * LOOP_STEPS + step
    progress(
        f"loop: round {round_index + 1}/{settings.rounds}, {what}",
        done,
        settings.rounds * LOOP_STEPS,
    )


def _simulated_review(
    ws: Workspace, *, project: str, doctor: SimulatedDoctor, budget: int, round: int
) -> int:
    queue = review_queue(ws, project=project, limit=budget)
    return _simulated_decisions(
        ws, project=project, doctor=doctor, item_ids=queue.index.tolist(), round=round
    )


def _planned_requests(
    ws: Workspace,
    *,
    project: str,
    settings: LoopSettings,
    crowd: SimulatedCrowd,
    doctor: SimulatedDoctor,
    budget: float,
    round: int,
    seed: int,
) -> None:
    """Spend `budget` as the cost-aware plan says, on items that already have answers."""
    plan = plan_requests(
        ws,
        project=project,
        budget=budget,
        lay_cost=settings.lay_cost,
        doctor_cost=settings.doctor_cost,
        doctor_accuracy=settings.doctor_accuracy,
        max_lay_answers=min(5, settings.n_annotators),
        unanswered=False,
    ).requests
    # Items in id order, so that the simulated people do not depend on the plan's order.
    plan = plan.sort_index()
    doctor_items = plan.index[plan["action"] == Action.DOCTOR]
    _simulated_decisions(
        ws, project=project, doctor=doctor, item_ids=[int(i) for i in doctor_items], round=round
    )
    crowd_items = plan[plan["action"] == Action.CROWD]
    for answers, group in crowd_items.groupby("answers"):
        collect_crowd_answers(
            ws,
            project=project,
            item_ids=[int(i) for i in group.index],
            crowd=crowd,
            redundancy=int(answers),
            gold_rate=0.0,
            round=round,
            seed=seed + int(answers),
        )


def _simulated_decisions(
    ws: Workspace, *, project: str, doctor: SimulatedDoctor, item_ids: list[int], round: int
) -> int:
    if not item_ids:
        return 0
    with ws.db.session() as s:
        record = repo.get_project(s, name=project)
        items = repo.items_frame(s, project_id=record.id)
    truth = items.loc[item_ids, "reference_label"].to_numpy(dtype=int)
    answers = doctor.answer(item_ids, truth)
    decisions = pd.Series(answers["label"].to_numpy(), index=answers["task"].to_numpy())
    return record_decisions(
        ws,
        project=project,
        decisions=decisions,
        doctor=doctor.worker_id,
        round=round,
        simulated=True,
    )
