"""Ingest: bring a dataset or a folder of images into a project, de-identified.

A folder (PNG/JPEG or DICOM) is checked whole first (its CSV, every file's header), then
stored in batches of `BATCH_SIZE` images, one image in memory at a time: a batch's blobs
are written, flushed to disk together (`BlobStore.sync`), and only then are its rows
committed, so no row ever names a blob a crash could lose. An import that fails or is
interrupted keeps the batches committed before; running the same command again skips
the images already in (by their source reference) and stores the rest:

    scan folder -> plan splits -> skip what is in -> [read, put blobs, sync, commit] x batches

Blobs of a batch that never committed are left for `medloop store gc`.

Images of patients erased from the project (consent withdrawn: `store.erasure`) are
left out before anything of theirs is read or stored, and counted; a batch checks again
as it commits, so a patient erased during the import loses the images read meanwhile.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy.orm import Session

from medloop.exceptions import ConflictError, IngestError, InvalidInputError
from medloop.ingest import (
    DicomRecord,
    ImageRecord,
    SkippedFile,
    encode_png,
    group_skipped,
    load_medmnist,
    pseudonymize,
    scan_dicom_folder,
    scan_image_folder,
    stratified_group_split,
)
from medloop.ingest.dicom import DUPLICATE
from medloop.store import erasure
from medloop.store import repository as repo
from medloop.store.models import Project
from medloop.types import REVIEWER_ROLES, Split
from medloop.workflows.loop import SYSTEM, write_decisions
from medloop.workflows.progress import Progress, no_progress
from medloop.workflows.workspace import Workspace, date_shift_key

logger = logging.getLogger(__name__)

#: Images a folder import stores per transaction: their blobs are flushed to disk at once,
#: then their rows committed. A failure loses at most one batch's work.
BATCH_SIZE = 500


@dataclass(frozen=True)
class IngestSummary:
    """What one ingest stored: ``items`` new items (by split, with their patients),
    ``skipped`` items of the folder a run before had already imported, and ``left_out``
    the files of the folder not imported, by reason (true duplicates; a DICOM folder's
    files that are not DICOM, not images or multi-frame: `medloop.ingest.SkippedFile`);
    ``erased`` the images of patients erased from the project, left out."""

    project: str
    classes: list[str]
    items: int
    splits: dict[str, int]
    patients: int
    #: items that came with a label, and how many of those became final labels
    labelled: int = 0
    final_labels: int = 0
    skipped: int = 0
    left_out: dict[str, list[str]] = field(default_factory=dict)
    erased: int = 0


def _summary(
    project: Project,
    splits: Sequence[str],
    patients: int,
    labelled: int = 0,
    finals: int = 0,
    skipped: int = 0,
    left_out: Sequence[SkippedFile] = (),
    erased: int = 0,
) -> IngestSummary:
    counts = pd.Series(list(splits)).value_counts()
    return IngestSummary(
        project=project.name,
        classes=list(project.classes),
        items=len(splits),
        splits={s.value: int(counts.get(s.value, 0)) for s in Split},
        patients=patients,
        labelled=labelled,
        final_labels=finals,
        skipped=skipped,
        left_out=group_skipped(left_out),
        erased=erased,
    )


def ingest_medmnist(
    ws: Workspace,
    *,
    name: str,
    project: str | None = None,
    limit: int | None = None,
    progress: Progress = no_progress,
) -> IngestSummary:
    """Ingest a MedMNIST 2D dataset with its official splits into a new project, in one
    transaction (its blobs flushed to disk together just before)."""
    dataset = load_medmnist(
        name, data_dir=ws.settings.data_dir, limit=limit, require_single_label=True
    )
    _check_new_project(ws, name=project or dataset.name)
    items: list[repo.NewItem] = []
    total = sum(len(s.labels) for s in dataset.splits.values())
    for split, part in dataset.splits.items():
        for row, image, label in zip(part.rows, part.images, part.labels, strict=True):
            sha = ws.blobs.put(encode_png(image), durable=False)
            items.append(
                repo.NewItem(
                    source_ref=f"{dataset.name}/{split.value}/{row}",
                    image_sha256=sha,
                    split=split.value,
                    reference_label=int(label),
                )
            )
            if len(items) % 500 == 0 or len(items) == total:
                progress("ingest: storing images", len(items), total)
    ws.blobs.sync(i.image_sha256 for i in items)
    with ws.db.session() as s:
        record = repo.create_project(
            s,
            name=project or dataset.name,
            classes=dataset.classes,
            n_channels=dataset.n_channels,
        )
        repo.add_items(s, project=record, items=items)
        repo.audit(
            s,
            actor=SYSTEM,
            action="ingest",
            entity="project",
            entity_id=record.id,
            detail={"source": f"medmnist:{dataset.name}", "items": len(items)},
        )
        return _summary(record, [i.split for i in items], patients=0)


def ingest_image_folder(
    ws: Workspace,
    *,
    folder: Path,
    project: str,
    labels_csv: Path | None = None,
    classes: Sequence[str] | None = None,
    seed: int = 0,
    final_by: str | None = None,
    progress: Progress = no_progress,
) -> IngestSummary:
    """Ingest PNG/JPEG images listed in a CSV; patient ids are pseudonymised, splits are
    stratified by label and grouped by patient. The CSV's labels are reference labels
    (for evaluation and simulations); with `final_by` (an existing doctor or admin) they
    are also that person's final labels, audited, so a model can train on them at once.
    Stored in batches; run again, it skips the images already in (module docstring). A
    true duplicate (identical pixels and label to another image of the folder, or to one
    imported before) is left out and listed (`IngestSummary.left_out`); identical pixels
    labelled otherwise stop the import (`IngestError`)."""
    source = ws.file_ref("images", folder.name)
    _check_ingest_target(ws, name=project, source=source, final_by=final_by)
    scanned = scan_image_folder(folder, labels_csv=labels_csv, classes=classes)
    _check_classes(project, scanned.classes)
    key = ws.settings.resolved_secret_key
    planned = [
        _Planned(
            source=f.source,
            source_ref=ws.file_ref("file", f.source),  # the name may name the patient
            label=f.label,
            patient_pseudonym=pseudonymize(f.patient_id, key=key) if f.patient_id else None,
        )
        for f in scanned.files
    ]
    by_source = {f.source: f for f in scanned.files}

    def items(
        todo: list[_Planned], _in: list[_Planned]
    ) -> Iterator[tuple[_Planned, _Blobs | SkippedFile]]:
        with ws.db.session() as s:
            existing = _project(s, name=project)
        records = scanned.records(by_source[p.source] for p in todo)
        for plan, record in zip(todo, records, strict=True):
            yield (
                plan,
                _image_blobs(
                    ws,
                    record,
                    folder=scanned.folder,
                    project_id=None if existing is None else existing.id,
                ),
            )

    return _ingest_planned(
        ws,
        project=project,
        classes=scanned.classes,
        planned=planned,
        store=items,
        source=source,
        seed=seed,
        final_by=final_by,
        progress=progress,
    )


def ingest_dicom_folder(
    ws: Workspace,
    *,
    folder: Path,
    project: str,
    labels_csv: Path | None = None,
    classes: Sequence[str] | None = None,
    seed: int = 0,
    final_by: str | None = None,
    pixels_checked: bool = False,
    progress: Progress = no_progress,
) -> IngestSummary:
    """Ingest DICOM files, de-identified on the way in (PS3.15 basic profile, their dates
    moved by each patient's date shift: `date_shift_key`, as for FHIR facts); labels
    and `final_by` as in `ingest_image_folder`. A file whose pixels may show who the
    patient is is refused (`identifying_pixels`); `pixels_checked` (audited) says a person
    has looked at the images that do not say whether they carry burned-in text. Stored in
    batches, one file in memory at a time; run again, it skips the files already in.
    Files that are not DICOM, not images, multi-frame or true duplicates (the same SOP
    instance, or the same stored pixel values, as another file) are left out and
    listed (`IngestSummary.left_out`): a hospital's export holds them as a rule."""
    source = ws.file_ref("dicom", folder.name)
    _check_ingest_target(ws, name=project, source=source, final_by=final_by)
    scanned = scan_dicom_folder(
        folder,
        key=ws.settings.resolved_secret_key,
        date_key=date_shift_key(ws.settings),
        labels_csv=labels_csv,
        classes=classes,
        pixels_checked=pixels_checked,
        progress=lambda done, total: progress("ingest: checking DICOM headers", done, total),
    )
    _check_classes(project, scanned.classes)
    planned = [
        _Planned(
            source=f.source,
            source_ref=f.reference,  # never the file name: it may name the patient
            label=f.label,
            patient_pseudonym=f.patient_pseudonym,
        )
        for f in scanned.files
    ]
    by_source = {f.source: f for f in scanned.files}

    def items(
        todo: list[_Planned], stored: list[_Planned]
    ) -> Iterator[tuple[_Planned, _Blobs | SkippedFile]]:
        records = scanned.records(
            (by_source[p.source] for p in todo), stored=[by_source[p.source] for p in stored]
        )
        for plan, record in zip(todo, records, strict=True):
            if record.duplicate_of is not None:
                detail = f"identical pixels to {record.duplicate_of!r}"
                logger.warning("skipping %s: %s", record.source, detail)
                yield plan, SkippedFile(record.source, DUPLICATE, detail)
            else:
                yield plan, _dicom_blobs(ws, record)

    return _ingest_planned(
        ws,
        project=project,
        classes=scanned.classes,
        planned=planned,
        store=items,
        source=source,
        seed=seed,
        final_by=final_by,
        detail={"pixels_checked": True} if pixels_checked else {},
        left_out=scanned.skipped,
        progress=progress,
    )


# --- storing a folder in batches -----------------------------------------------------------


@dataclass(frozen=True)
class _Planned:
    """A file of a checked folder, before its image is read."""

    source: str  # the file's name: for messages only, never stored
    source_ref: str
    label: int | None
    patient_pseudonym: str | None


@dataclass(frozen=True)
class _Blobs:
    """The blobs stored (not yet flushed) for one image."""

    image_sha256: str
    dicom_sha256: str | None
    channels: int


def _image_blobs(
    ws: Workspace, record: ImageRecord, *, folder: Path, project_id: int | None
) -> _Blobs | SkippedFile:
    """Store `record`'s image, unless it is a true duplicate of an image of the same call
    or of one a run before imported into the project (`project_id`, None when new)."""
    png = encode_png(record.image)
    detail = None if record.duplicate_of is None else f"identical pixels to {record.duplicate_of!r}"
    if detail is None and project_id is not None:
        sha = hashlib.sha256(png).hexdigest()  # the blob's name: identical pixels, same name
        with ws.db.session() as s:
            twin = repo.items_with_images(s, project_id=project_id, image_sha256s=[sha]).get(sha)
        if twin is not None:
            detail = f"identical pixels to an image imported before ({twin.source_ref})"
            if twin.reference_label != record.label:
                raise IngestError(
                    folder / record.source, f"duplicate item: {detail}, labelled otherwise"
                )
    if detail is not None:
        logger.warning("skipping %s: %s", record.source, detail)
        return SkippedFile(record.source, DUPLICATE, detail)
    sha = ws.blobs.put(png, durable=False)
    return _Blobs(sha, None, 3 if record.image.ndim == 3 else 1)


def _dicom_blobs(ws: Workspace, record: DicomRecord) -> _Blobs:
    image = ws.blobs.put(encode_png(record.image), durable=False)
    return _Blobs(image, ws.blobs.put(record.dicom_bytes, durable=False), 1)


def _ingest_planned(
    ws: Workspace,
    *,
    project: str,
    classes: list[str],
    planned: list[_Planned],
    store: Callable[
        [list[_Planned], list[_Planned]], Iterator[tuple[_Planned, _Blobs | SkippedFile]]
    ],
    source: str,
    seed: int,
    final_by: str | None,
    detail: dict[str, object] | None = None,
    left_out: Sequence[SkippedFile] = (),
    progress: Progress,
) -> IngestSummary:
    """Store the `planned` files not yet in `project` in batches of `BATCH_SIZE`: `store`
    reads and puts the blobs of the files it is given (beside those a run before stored),
    one at a time, or says why one is left out (added to `left_out`, the files the
    folder's check set aside). Files of patients erased from the project are left out
    before any is read (`IngestSummary.erased`)."""
    with ws.db.session() as s:
        record = _project(s, name=project)
        done: dict[str, int] = {}
        kept: dict[str, str] = {}
        erased: set[str] = set()
        if record is not None:
            refs = [p.source_ref for p in planned]
            done = repo.item_ids_by_source(s, project_id=record.id, source_refs=refs)
            kept = repo.patient_splits(s, project_id=record.id)
            erased = erasure.erased_pseudonyms(s, project_id=record.id)
    withdrawn = sum(p.patient_pseudonym in erased for p in planned)
    planned = [p for p in planned if p.patient_pseudonym not in erased]
    splits = _split([p.label for p in planned], [p.patient_pseudonym for p in planned], seed=seed)
    todo = [
        (plan, kept.get(plan.patient_pseudonym or "", split))  # a patient stays in one split
        for plan, split in zip(planned, splits, strict=True)
        if plan.source_ref not in done
    ]
    if done:
        logger.info("skipping %d images already in %r", len(done), project)
    split_of = {plan.source_ref: split for plan, split in todo}
    added: list[repo.NewItem] = []
    left_out = list(left_out)
    set_aside = len(left_out)  # by the folder's check: not among `todo`
    finals = 0

    def commit(batch: list[tuple[repo.NewItem, int]]) -> None:
        nonlocal finals, withdrawn
        stored, signed = _commit_batch(
            ws,
            project=project,
            classes=classes,
            batch=batch,
            source=source,
            final_by=final_by,
            detail=detail or {},
        )
        finals += signed
        withdrawn += len(batch) - len(stored)
        added.extend(stored)
        progress("ingest: storing images", len(added) + len(left_out) - set_aside, len(todo))

    try:
        batch: list[tuple[repo.NewItem, int]] = []
        before = [plan for plan in planned if plan.source_ref in done]
        for plan, blobs in store([plan for plan, _ in todo], before):
            if isinstance(blobs, SkippedFile):
                left_out.append(blobs)
                continue
            item = repo.NewItem(
                source_ref=plan.source_ref,
                image_sha256=blobs.image_sha256,
                dicom_sha256=blobs.dicom_sha256,
                split=split_of[plan.source_ref],
                reference_label=plan.label,
                patient_pseudonym=plan.patient_pseudonym,
            )
            batch.append((item, blobs.channels))
            if len(batch) == BATCH_SIZE:
                commit(batch)
                batch = []
        if batch:
            commit(batch)
    except BaseException:
        if added:
            logger.warning(
                "%d of the %d images to import were stored before this error; run the "
                "same command again to import the rest",
                len(added),
                len(todo),
            )
        raise
    with ws.db.session() as s:
        stored = repo.get_project(s, name=project)
    patients = len({i.patient_pseudonym for i in added if i.patient_pseudonym})
    return _summary(
        stored,
        [i.split for i in added],
        patients=patients,
        labelled=sum(i.reference_label is not None for i in added),
        finals=finals,
        skipped=len(done),
        left_out=left_out,
        erased=withdrawn,
    )


def _commit_batch(
    ws: Workspace,
    *,
    project: str,
    classes: list[str],
    batch: list[tuple[repo.NewItem, int]],
    source: str,
    final_by: str | None,
    detail: dict[str, object],
) -> tuple[list[repo.NewItem], int]:
    """Flush a batch's blobs to disk, then commit its items (the project with the first),
    audited; with `final_by`, its labels become final labels too. Items of patients
    erased from the project since the import began are dropped, their files deleted.
    Returns the items stored and the final labels written."""
    items = [item for item, _ in batch]
    ws.blobs.sync(sha for i in items for sha in _digests(i))
    channels = max(c for _, c in batch)
    started = time.time()
    dropped: list[repo.NewItem] = []
    with ws.db.session() as s:
        record = _project(s, name=project)
        if record is None:
            record = repo.create_project(s, name=project, classes=classes, n_channels=channels)
        else:
            erased = erasure.erased_pseudonyms(s, project_id=record.id, lock=True)
            dropped = [i for i in items if i.patient_pseudonym in erased]
            items = [i for i in items if i.patient_pseudonym not in erased]
            record.n_channels = max(record.n_channels, channels)
        repo.add_items(s, project=record, items=items)
        repo.audit(
            s,
            actor=SYSTEM,
            action="ingest",
            entity="project",
            entity_id=record.id,
            detail={
                "source": source,
                "items": len(items),
                **({"erased_patients_skipped": len(dropped)} if dropped else {}),
                **detail,
            },
        )
        labels = {i.source_ref: i.reference_label for i in items if i.reference_label is not None}
        finals = 0
        if final_by is not None and labels:
            ids = repo.item_ids_by_source(s, project_id=record.id, source_refs=labels)
            decisions = pd.Series({ids[ref]: label for ref, label in labels.items()}, dtype=int)
            finals = write_decisions(s, project=project, decisions=decisions, doctor=final_by)
    if dropped:
        _discard(ws, {sha for i in dropped for sha in _digests(i)}, unused_since=started)
    return items, finals


def _digests(item: repo.NewItem) -> list[str]:
    """The blobs an item names: its image, and its DICOM file if any."""
    return [sha for sha in (item.image_sha256, item.dicom_sha256) if sha is not None]


def _discard(ws: Workspace, blobs: set[str], *, unused_since: float) -> None:
    """Delete those of `blobs` no row names (an erased patient's files stored during an
    import), unless stored again since `unused_since`."""
    with ws.db.session() as s:
        named = erasure.blobs_named(s, digests=blobs)
    for sha in sorted(blobs - named):
        ws.blobs.discard(sha, unused_since=unused_since)


def _project(session: Session, *, name: str) -> Project | None:
    return next((p for p in repo.list_projects(session) if p.name == name), None)


# --- checks before any work ----------------------------------------------------------------


def _check_classes(project: str, classes: Sequence[str]) -> None:
    """Fail before any image is stored when the project would have fewer than two classes,
    or a class name a spreadsheet would run as a formula."""
    if len(classes) < 2:
        raise InvalidInputError(
            f"project {project!r} needs at least two classes, got {list(classes)}: name them "
            "with --classes A,B or in a labels CSV (file,label)"
        )
    repo.check_class_names(classes)


def _check_new_project(ws: Workspace, *, name: str, final_by: str | None = None) -> None:
    """Fail before any work when the project name is taken, or when `final_by` is not a
    doctor or admin who could sign the labels."""
    with ws.db.session() as s:
        if _project(s, name=name) is not None:
            raise ConflictError(f"project {name!r} already exists; choose another --project")
        if final_by is not None:
            repo.get_user_in_role(s, username=final_by, roles=REVIEWER_ROLES)


def _check_ingest_target(
    ws: Workspace, *, name: str, source: str, final_by: str | None = None
) -> None:
    """Fail before any work unless `name` is a new project or one an import of the same
    folder (`source`) began, and unless `final_by` is a doctor or admin."""
    with ws.db.session() as s:
        record = _project(s, name=name)
        if record is not None:
            sources = {
                d.get("source")
                for d in repo.audit_details(
                    s, action="ingest", entity="project", entity_id=record.id
                )
            }
            if source not in sources:
                raise ConflictError(
                    f"project {name!r} already exists and holds no import of this folder; "
                    "choose another --project"
                )
        if final_by is not None:
            repo.get_user_in_role(s, username=final_by, roles=REVIEWER_ROLES)


def _split(labels: Sequence[int | None], groups: Sequence[str | None], *, seed: int) -> list[str]:
    """Stratified, patient-grouped splits; unlabelled items are stratified as their own class."""
    codes = np.array([-1 if label is None else label for label in labels])
    group_array = np.array(groups, dtype=object) if any(groups) else None
    return [str(s) for s in stratified_group_split(codes, groups=group_array, seed=seed)]
