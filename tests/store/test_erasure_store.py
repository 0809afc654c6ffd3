"""Erasing a patient's rows and renaming an erased person (migration 0018), on SQLite
and PostgreSQL."""

from __future__ import annotations

import pandas as pd
import pytest
from sqlalchemy import func, inspect, select, text
from sqlalchemy.exc import DBAPIError

from medloop.store import Database, assignments, erasure, flags, jobs
from medloop.store import patients as prepo
from medloop.store import repository as repo
from medloop.store.models import (
    Answer,
    AnswerBox,
    AuditEntry,
    Item,
    ItemLabel,
    Job,
    ModelVersion,
    Patient,
    PatientFeature,
    Prediction,
    Recommendation,
    ReviewFlag,
    RiskModelPatient,
    RiskModelVersion,
    Task,
    TaskHold,
    TaskSkip,
    TrainingLabel,
    TreatmentDecision,
    User,
)
from medloop.types import LabelKind, LabelSource, Role


def _count(database: Database, model: type, *where: object) -> int:
    with database.session() as s:
        return int(s.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def test_migration_0018_lets_only_pseudonyms_into_the_audit_log(database: Database) -> None:
    """The audit log stays append-only; the one change let through is an actor replaced
    by an erased person's pseudonym, nothing else of the entry changed."""
    with database.session() as s:
        project = repo.create_project(s, name="chest", classes=["a", "b"], n_channels=1)
        repo.add_model_version(
            s,
            project_id=project.id,
            network="cnn",
            checkpoint_path="chest/v1.pt",
            n_train=1,
            metrics={},
        )
        repo.audit(s, actor="ann", action="answer", entity="answer", entity_id=1)
    database.downgrade("0017")
    assert "risk_model_patients" not in inspect(database.engine).get_table_names()
    with pytest.raises(DBAPIError, match="append-only"), database.engine.begin() as c:
        c.execute(text("UPDATE audit_log SET actor = 'erased-0123'"))  # not before 0018
    database.migrate()
    assert "risk_model_patients" in inspect(database.engine).get_table_names()
    with database.session() as s:
        assert [v.erased_patients for v in repo.model_versions(s, project_id=project.id)] == [0]
    refused = [
        "UPDATE audit_log SET actor = 'mallory'",
        "UPDATE audit_log SET actor = 'erased-0123', action = 'other'",
        "UPDATE audit_log SET actor = 'erased-0123', entity_id = '2'",
        "DELETE FROM audit_log",
    ]
    for statement in refused:
        with pytest.raises(DBAPIError, match="append-only"), database.engine.begin() as c:
            c.execute(text(statement))
    with database.engine.begin() as c:
        c.execute(text("UPDATE audit_log SET actor = 'erased-0123'"))
    with database.session() as s:
        entry = s.scalars(select(AuditEntry)).one()
        assert (entry.actor, entry.action, entry.entity_id) == ("erased-0123", "answer", "1")


def _images(database: Database) -> dict[str, object]:
    """Project "chest": patient A's two images (one the same file as an image without a
    patient), patient B's one; tasks, answers (one with a box), consensus and final
    labels, predictions, a flag, a hold and a skip on each; model v1 learned from every
    image, v2 from B's only."""
    with database.session() as s:
        project = repo.create_project(s, name="chest", classes=["a", "b"], n_channels=1)
        repo.add_items(
            s,
            project=project,
            items=[
                repo.NewItem("a1", "a" * 64, "train", patient_pseudonym="PA"),
                repo.NewItem(
                    "a2", "c" * 64, "train", patient_pseudonym="PA", dicom_sha256="d" * 64
                ),
                repo.NewItem("b1", "b" * 64, "train", patient_pseudonym="PB"),
                repo.NewItem("shared", "c" * 64, "train"),
            ],
        )
        items = repo.items_frame(s, project_id=project.id).index.tolist()
        worker = repo.create_user(s, username="ann", role=Role.ANNOTATOR)
        doctor = repo.create_user(s, username="dr_grey", role=Role.DOCTOR)
        tasks = repo.create_tasks(s, project_id=project.id, item_ids=items, required_answers=3)
        answers = repo.add_answers(
            s,
            task_ids=tasks,
            worker_ids=[worker.id] * 4,
            labels=[0, 1, 0, 1],
            source=LabelSource.CROWD,
        )
        assignments.add_answer_box(s, answer_id=answers[0], box=[0.1, 0.1, 0.2, 0.2])
        for kind in (LabelKind.CONSENSUS, LabelKind.FINAL):
            repo.add_item_labels(
                s,
                project_id=project.id,
                labels=pd.Series(0, index=items),
                kind=kind,
                source=LabelSource.CROWD,
                method="mv",
            )
        label_ids = dict(s.execute(select(ItemLabel.id, ItemLabel.item_id)).all())
        v1 = repo.add_model_version(
            s,
            project_id=project.id,
            network="cnn",
            checkpoint_path="chest/v1.pt",
            n_train=4,
            metrics={},
            label_ids=label_ids,
        )
        v2 = repo.add_model_version(
            s,
            project_id=project.id,
            network="cnn",
            checkpoint_path="chest/v2.pt",
            n_train=1,
            metrics={},
            label_ids=[i for i, item in label_ids.items() if item == items[2]],
        )
        repo.save_predictions(
            s, model_version_id=v2.id, probabilities=pd.DataFrame([[0.5, 0.5]] * 4, index=items)
        )
        for item in items:
            flags.add_flag(
                s,
                project_id=project.id,
                item_id=item,
                reason="second opinion",
                flagged_by_id=doctor.id,
            )
        assignments.hold_first(s, worker_id=doctor.id, task_ids=[tasks[0]], now=0.0, seconds=1e9)
        assignments.add_skip(s, worker_id=doctor.id, task_id=tasks[1], reason="unsure")
        return {"project": project.id, "items": items, "v1": v1.id, "v2": v2.id}


def test_a_patients_images_and_all_on_them_go_and_the_models_are_marked(
    database: Database,
) -> None:
    built = _images(database)
    items = built["items"]
    assert isinstance(items, list)
    with database.session() as s:
        patient = prepo.get_patient(s, project_id=int(str(built["project"])), pseudonym="PA")
        gone = erasure.erase_patient_rows(s, patient=patient)
    assert gone.items == items[:2]
    assert gone.blobs == {"a" * 64, "c" * 64, "d" * 64}
    assert gone.image_models == [1]  # v2 never saw A's images
    assert gone.rows["images"] == 2 and gone.rows["tasks"] == 2 and gone.rows["answers"] == 2
    assert gone.rows["answer boxes"] == 1 and gone.rows["item labels"] == 4
    assert gone.rows["training label links"] == 4 and gone.rows["predictions"] == 2
    assert gone.rows["review flags"] == 2 and gone.rows["patient"] == 1
    assert gone.rows["task holds"] == 1 and gone.rows["task skips"] == 1
    assert _count(database, Item) == 2 and _count(database, Patient) == 1
    kept = Item.id.in_(items[2:])
    for model, column in (
        (Task, Task.item_id),
        (Answer, Answer.item_id),
        (ItemLabel, ItemLabel.item_id),
        (Prediction, Prediction.item_id),
        (ReviewFlag, ReviewFlag.item_id),
    ):
        assert _count(database, model) == _count(database, model, column.in_(items[2:])) > 0
    assert _count(database, AnswerBox) == _count(database, TaskHold) == 0
    assert _count(database, TaskSkip) == 0 and _count(database, Item, kept) == 2
    with database.session() as s:
        marked = dict(s.execute(select(ModelVersion.id, ModelVersion.erased_patients)).all())
        assert marked == {built["v1"]: 1, built["v2"]: 0}
        assert _count(database, TrainingLabel) == 6  # v1: B and "shared" (4 rows); v2: B (2)
        # the shared file is still named by the image without a patient; A's own are not
        assert erasure.blobs_named(s, digests=gone.blobs) == {"c" * 64}


def test_a_cohort_patients_data_goes_and_the_models_built_from_it_are_marked(
    database: Database,
) -> None:
    """Risk models learned from the patients their lineage names; one trained before
    lineage was kept is marked when the patient was in the cohort as it was trained."""
    with database.session() as s:
        project = repo.create_project(s, name="trial", classes=repo.COHORT_CLASSES, n_channels=1)
        frame = pd.DataFrame({"age": [61.0, 70.0, 55.0]}, index=["PA", "PB", "PC"])
        prepo.upsert_features(s, project_id=project.id, frame=frame)
        obs = pd.DataFrame({"patient": ["PA", "PB"], "code": ["x", "x"], "value": [1.0, 2.0]})
        prepo.add_observations(
            s, project_id=project.id, frame=obs, kind="observation", source="file:F1"
        )
        both = prepo.add_risk_model(
            s,
            project_id=project.id,
            kind="survival",
            method="cox",
            blob_sha256="e" * 64,
            n_train=2,
            features=["age"],
            patients=["PA", "PB"],
        )
        others = prepo.add_risk_model(
            s,
            project_id=project.id,
            kind="effects",
            method="t",
            blob_sha256="f" * 64,
            n_train=2,
            features=["age"],
            patients=["PB", "PC"],
        )
        old = RiskModelVersion(
            project_id=project.id,
            kind="survival",
            version=9,
            method="cox",
            blob_sha256="e" * 64,
            n_train=3,
        )
        s.add(old)
        s.flush()  # no lineage: trained before 0018, after A arrived
        pa = prepo.get_patient(s, project_id=project.id, pseudonym="PA")
        doctor = repo.create_user(s, username="dr_grey", role=Role.DOCTOR)
        rec = prepo.add_recommendation(s, patient_id=pa.id, recommendation="treat")
        prepo.add_decision(
            s, recommendation_id=rec.id, doctor_id=doctor.id, decision="accept", treatment="treat"
        )
        ids = (both.id, others.id, old.id)
    assert _count(database, RiskModelPatient) == 4
    with database.session() as s:
        pa = prepo.get_patient(s, project_id=project.id, pseudonym="PA")
        gone = erasure.erase_patient_rows(s, patient=pa)
    assert gone.risk_models == [("survival", 1), ("survival", 9)] and gone.items == []
    assert gone.rows["facts"] == 1 and gone.rows["feature values"] == 1
    assert gone.rows["recommendations"] == 1 and gone.rows["treatment decisions"] == 1
    assert gone.rows["model lineage links"] == 1
    assert _count(database, Recommendation) == _count(database, TreatmentDecision) == 0
    assert _count(database, PatientFeature) == 2 and _count(database, RiskModelPatient) == 3
    with database.session() as s:
        marked = dict(
            s.execute(select(RiskModelVersion.id, RiskModelVersion.erased_patients)).all()
        )
        assert marked == {ids[0]: 1, ids[1]: 0, ids[2]: 1}
        assert prepo.features_frame(s, project_id=project.id).index.tolist() == ["PB", "PC"]


def test_a_person_is_renamed_everywhere_and_keeps_their_answers(database: Database) -> None:
    built = _images(database)
    with database.session() as s:
        repo.audit(s, actor="ann", action="answer", entity="answer", entity_id=1)
        repo.audit(s, actor="dr_grey", action="label.final", entity="item", entity_id=1)
        jobs.add_job(s, kind="retrain", project_id=int(str(built["project"])), requested_by="ann")
        user = repo.get_user(s, username="ann")
        renamed = erasure.pseudonymise_user(s, user=user, pseudonym="erased-00ff")
    assert (renamed.audit_entries, renamed.jobs, renamed.answers) == (1, 1, 4)
    with database.session() as s:
        actors = s.scalars(select(AuditEntry.actor).order_by(AuditEntry.id)).all()
        assert actors == ["erased-00ff", "dr_grey"]
        assert s.scalars(select(Job.requested_by)).all() == ["erased-00ff"]
        user = s.scalars(select(User).where(User.username == "erased-00ff")).one()
        assert _count(database, Answer, Answer.worker_id == user.id) == 4


def test_the_erased_of_a_project_are_read_from_its_patient_erased_entries(
    database: Database,
) -> None:
    """Another project's erasure, or an entry of another action naming a patient, does
    not make a patient erased here."""
    with database.session() as s:
        one = repo.create_project(s, name="one", classes=["a", "b"], n_channels=1)
        two = repo.create_project(s, name="two", classes=["a", "b"], n_channels=1)
        for project, pseudonym in ((one, "P1"), (two, "P2"), (one, "P3")):
            repo.audit(
                s,
                actor="cli",
                action=erasure.ERASED,
                entity="patient",
                entity_id=pseudonym,
                detail={"project": project.id, "reason": "withdrawn"},
            )
        repo.audit(
            s,
            actor="dr",
            action="patient.view",
            entity="patient",
            entity_id="P4",
            detail={"project": one.id},
        )
    with database.session() as s:
        assert erasure.erased_pseudonyms(s, project_id=one.id) == {"P1", "P3"}
        assert erasure.erased_pseudonyms(s, project_id=two.id, lock=True) == {"P2"}
