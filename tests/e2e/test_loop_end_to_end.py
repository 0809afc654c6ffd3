"""A small loop end to end on a few hundred real chest X-rays (PneumoniaMNIST)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from medloop import workflows
from medloop.config import Settings
from medloop.exceptions import InvalidInputError
from medloop.learning import TrainConfig
from medloop.store import repository as repo
from medloop.types import LabelKind, LabelSource, Role, Split, Strategy
from medloop.workflows.explain import model_ref


@pytest.fixture
def ws(settings: Settings) -> workflows.Workspace:
    workspace = workflows.Workspace.open(settings)
    yield workspace
    workspace.close()


def test_two_rounds_of_the_loop_on_real_images(ws: workflows.Workspace) -> None:
    summary = workflows.ingest_medmnist(ws, name="pneumoniamnist", limit=400)
    assert summary.splits == {"train": 400, "val": 400, "test": 400}

    loop = workflows.LoopSettings(rounds=2, per_round=150, doctor_budget=15, seed=0)
    reports = workflows.run_loop(
        ws, project="pneumoniamnist", settings=loop, train_config=TrainConfig(seed=0)
    )

    assert [r.round for r in reports] == [0, 1]
    assert [r.labelled_items for r in reports] == [150, 300]
    assert [r.doctor_labels for r in reports] == [15, 30]
    # three lay answers per labelled item, plus gold questions from round 1 on
    assert reports[0].crowd_answers == 450
    assert reports[1].crowd_answers > 900
    last = reports[-1]
    assert last.test_auc > 0.85, last
    # doctors' decisions and reliability-weighted aggregation beat plain majority vote
    assert last.consensus_accuracy > last.majority_vote_accuracy
    # the doctors' part is shown apart (tests/workflows/test_label_quality.py)
    assert last.unreviewed_items == last.labelled_items - last.doctor_labels
    assert last.majority_vote_doctors_accuracy >= last.majority_vote_accuracy

    with ws.db.session() as s:
        project = repo.get_project(s, name="pneumoniamnist")
        finals = repo.current_labels(s, project_id=project.id, kind=LabelKind.FINAL)
        versions = repo.model_versions(s, project_id=project.id)
        audit = repo.audit_frame(s)
        tasks = repo.tasks_frame(s, project_id=project.id)
    # every final label has provenance: a doctor, a review answer, a round
    assert len(finals) == 30
    assert set(finals["source"]) == {LabelSource.DOCTOR}
    assert [v.version for v in versions] == [1, 2]
    assert all(v.metrics["test_auc"] > 0.5 for v in versions)
    # each version has a file of its own, named relative to the home's model folder
    assert [v.checkpoint_path for v in versions] == [f"pneumoniamnist/v{n}.pt" for n in (1, 2)]
    folder = ws.settings.model_dir / "pneumoniamnist"
    assert sorted(p.name for p in folder.iterdir()) == ["v1.pt", "v2.pt"]
    assert (audit["action"] == "label.final").sum() == 30
    assert tasks["is_gold"].sum() > 0
    # the review queue never offers an item that already has a final label
    queue = workflows.review_queue(ws, project="pneumoniamnist")
    assert not queue.index.isin(finals.index).any()
    # reported accuracy and the queue's model label are the model's own decisions, at
    # the threshold it chose on validation (not its argmax)
    with ws.db.session() as s:
        project = repo.get_project(s, name="pneumoniamnist")
        newest = repo.current_model_version(s, project_id=project.id)
        assert newest is not None
        predictions = repo.predictions_frame(s, model_version_id=newest.id, n_classes=2)
        items = repo.items_frame(s, project_id=project.id)
    cut = newest.metrics["threshold"]
    decided = (predictions[1] >= cut).astype(int)
    test = items[items["split"] == "test"]
    hits = decided.loc[test.index] == test["reference_label"].astype(int)
    assert newest.metrics["test_acc"] == pytest.approx(hits.mean())
    assert "test_acc_argmax" in newest.metrics and "val_acc_argmax" in newest.metrics
    assert (queue["model_label"] == decided.loc[queue.index]).all()
    # the next model learns from the doctors: their labels are hard targets
    targets = workflows.training_targets(ws, project="pneumoniamnist")
    signed = targets.loc[finals.index]
    expected = pd.get_dummies(finals["label"]).reindex(columns=[0, 1], fill_value=False)
    assert (signed.to_numpy() == expected.to_numpy(dtype=float)).all()


def test_a_copied_home_keeps_its_models(ws: workflows.Workspace, tmp_path: Path) -> None:
    """A home is self-contained: restored from a copy (or opened from another folder) it
    reads its own checkpoints, also those of rows that stored the path they had then."""
    workflows.ingest_medmnist(ws, name="pneumoniamnist", limit=100)
    loop = workflows.LoopSettings(rounds=1, per_round=60, doctor_budget=10, seed=0)
    workflows.run_loop(
        ws, project="pneumoniamnist", settings=loop, train_config=TrainConfig(max_epochs=1)
    )
    with ws.db.session() as s:  # as rows were written before: the absolute path then
        (version,) = repo.model_versions(s, project_id=1)
        version.checkpoint_path = str(ws.settings.model_dir / "pneumoniamnist" / "v1.pt")
    ws.close()
    copy = tmp_path / "restored"
    shutil.copytree(ws.settings.home, copy)
    shutil.rmtree(ws.settings.model_dir)  # the original home is gone
    restored = workflows.Workspace.open(Settings(home=copy))
    try:
        ref = model_ref(restored, project="pneumoniamnist")
        assert ref.checkpoint == copy / "models" / "pneumoniamnist" / "v1.pt"
        assert ref.checkpoint.exists()
    finally:
        restored.close()


def test_a_failed_training_leaves_no_file_behind(
    ws: workflows.Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    workflows.ingest_medmnist(ws, name="pneumoniamnist", limit=100)
    loop = workflows.LoopSettings(rounds=1, per_round=60, doctor_budget=10, seed=0)
    workflows.run_loop(
        ws, project="pneumoniamnist", settings=loop, train_config=TrainConfig(max_epochs=1)
    )

    # trained outside a round: the version and its audit entry name the current round
    metrics = workflows.train(ws, project="pneumoniamnist", config=TrainConfig(max_epochs=1))
    with ws.db.session() as s:
        log = repo.audit_frame(s)
        (newest,) = [v for v in repo.model_versions(s, project_id=1) if v.version == 2]
    assert metrics["version"] == 2 and newest.checkpoint_path == "pneumoniamnist/v2.pt"
    trained = log[(log["action"] == "model.train") & (log["entity_id"] == str(newest.id))]
    assert trained["detail"].iloc[0]["round"] == newest.round == 0

    def fails_while_storing(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(repo, "save_predictions", fails_while_storing)
    with pytest.raises(RuntimeError, match="disk full"):
        workflows.train(ws, project="pneumoniamnist", config=TrainConfig(max_epochs=1))
    folder = ws.settings.model_dir / "pneumoniamnist"
    assert sorted(p.name for p in folder.iterdir()) == ["v1.pt", "v2.pt"], "no training-*.pt"


def test_cost_aware_rounds_spend_no_more_than_fixed_ones(ws: workflows.Workspace) -> None:
    workflows.ingest_medmnist(ws, name="pneumoniamnist", limit=200)
    loop = workflows.LoopSettings(
        rounds=2, per_round=60, doctor_budget=5, allocation="cost_aware", doctor_cost=10, seed=0
    )
    config = TrainConfig(seed=0, max_epochs=2, patience=2)
    reports = workflows.run_loop(ws, project="pneumoniamnist", settings=loop, train_config=config)

    assert loop.round_budget == 60 * 3 + 5 * 10
    assert [r.labelled_items for r in reports] == [60, 120]
    for index, report in enumerate(reports):
        cost = report.extra["cost"]
        assert cost == report.crowd_answers + 10 * report.doctor_labels
        assert cost <= (index + 1) * loop.round_budget
    assert reports[0].extra["cost"] > 0.9 * loop.round_budget  # little left unspent
    with ws.db.session() as s:
        project = repo.get_project(s, name="pneumoniamnist")
        answers = repo.answers_frame(s, project_id=project.id, sources=[LabelSource.CROWD])
        items = repo.items_frame(s, project_id=project.id)
        finals = repo.current_labels(s, project_id=project.id, kind=LabelKind.FINAL)
    # the validation labels nobody paid for are counted beside the cost
    free = items.index[items["split"] == Split.VAL].difference(finals.index)
    assert reports[-1].extra["reference_val_labels"] == len(free) > 0
    per_item = answers[~answers["is_gold"]].groupby("task").size()
    # one answer for every new item first; the plan asks more where they are needed
    assert per_item.min() >= 1 and per_item.max() > 1 and per_item.nunique() > 1
    # more answers come from other people: nobody answers an item twice, gold included
    assert not answers.duplicated(["task", "worker"]).any()
    with pytest.raises(InvalidInputError, match="cost_aware"):
        workflows.run_loop(
            ws,
            project="pneumoniamnist",
            settings=workflows.LoopSettings(allocation="cost_awre"),
            train_config=config,
        )


def test_failed_ingest_leaves_nothing_behind(ws: workflows.Workspace) -> None:
    workflows.ingest_medmnist(ws, name="pneumoniamnist", limit=20)
    with pytest.raises(Exception, match="already exists"):
        workflows.ingest_medmnist(ws, name="pneumoniamnist", limit=20)
    with ws.db.session() as s:
        assert len(repo.list_projects(s)) == 1
        project = repo.get_project(s, name="pneumoniamnist")
        assert len(repo.items_frame(s, project_id=project.id)) == 60


@pytest.mark.parametrize("strategy", list(Strategy))
def test_every_strategy_picks_unlabelled_training_items(
    ws: workflows.Workspace, strategy: Strategy
) -> None:
    workflows.ingest_medmnist(ws, name="pneumoniamnist", limit=120)
    loop = workflows.LoopSettings(rounds=1, per_round=40, doctor_budget=5, seed=0)
    config = TrainConfig(seed=0, max_epochs=2, patience=2)
    workflows.run_loop(ws, project="pneumoniamnist", settings=loop, train_config=config)
    picked = workflows.select_items(ws, project="pneumoniamnist", k=20, strategy=strategy)
    with ws.db.session() as s:
        project = repo.get_project(s, name="pneumoniamnist")
        items = repo.items_frame(s, project_id=project.id)
        taken = repo.labelled_item_ids(s, project_id=project.id)
    assert len(picked) == len(set(picked)) == 20
    assert set(items.loc[picked, "split"]) == {"train"}
    assert not set(picked) & set(taken)


def test_a_model_version_records_what_it_learned_from(ws: workflows.Workspace) -> None:
    workflows.ingest_medmnist(ws, name="pneumoniamnist", limit=100)
    loop = workflows.LoopSettings(rounds=1, per_round=60, doctor_budget=10, seed=0)
    config = TrainConfig(max_epochs=1, seed=3)
    workflows.run_loop(ws, project="pneumoniamnist", settings=loop, train_config=config)
    first = workflows.evaluate(ws, project="pneumoniamnist", version=1)
    assert first["n_train_final"] + first["n_train_consensus"] == first["n_train"]
    assert first["n_train_final"] > 0 and first["n_train_consensus"] > 0
    assert first["consensus_method"] == "dawid_skene" and first["seed"] == 3
    assert first["software"].startswith("medloop ") and ", torch " in first["software"]
    # the whole configuration, not the seed alone: retraining it takes max_epochs too
    assert first["train_config"]["max_epochs"] == 1 and first["train_config"]["seed"] == 3

    again = workflows.train(ws, project="pneumoniamnist", config=config)
    assert again["labels_digest"] == first["labels_digest"], "the same labels"
    targets = workflows.training_targets(ws, project="pneumoniamnist")
    # the label rows it learned from: one per training item, as targeted
    learned = workflows.models.training_labels(
        ws, project="pneumoniamnist", version=1, actor="test"
    )
    trained_on = learned[learned["split"] == "train"].set_index("item")
    assert trained_on.index.tolist() == targets.index.tolist()
    assert (trained_on["label"] == targets.idxmax(axis=1)).all()
    with ws.db.session() as s:
        finals = repo.current_labels(s, project_id=1, kind=LabelKind.FINAL)
        repo.create_user(s, username="dr", role=Role.DOCTOR)
    item = int(targets.index.difference(finals.index)[0])
    workflows.record_decisions(
        ws, project="pneumoniamnist", decisions=pd.Series({item: 0}), doctor="dr"
    )
    after = workflows.train(ws, project="pneumoniamnist", config=config)
    assert after["labels_digest"] != first["labels_digest"]
    assert after["n_train_final"] == first["n_train_final"] + 1
    # version 1 still names the consensus it learned for that item, version 3 the doctor's
    for version, kind in [(1, "consensus"), (3, "final")]:
        rows = workflows.models.training_labels(
            ws, project="pneumoniamnist", version=version, actor="test"
        ).set_index("item")
        assert rows.loc[item, "kind"] == kind
