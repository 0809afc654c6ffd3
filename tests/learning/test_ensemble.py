"""Deep ensembles: distinct seeds, mean logits, own calibration, one-file checkpoints,
Grad-CAM and TorchScript export."""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from medloop.exceptions import InvalidInputError, NotFoundError
from medloop.learning.calibration import apply_temperature
from medloop.learning.data import AugmentRanges
from medloop.learning.ensemble import (
    EnsembleClassifier,
    load_checkpoint,
    member_seeds,
    train_ensemble,
)
from medloop.learning.explain import gradcam
from medloop.learning.inference import ScriptedClassifier, export_torchscript
from medloop.learning.train import TrainConfig, TrainedClassifier

FAST = TrainConfig(max_epochs=3, patience=3, batch_size=16, num_threads=1)


def noisy(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Class 1 is slightly brighter in the top half; overlapping classes."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size=n)
    images = rng.integers(0, 160, size=(n, 12, 12)).astype(np.uint8)
    images[labels == 1, :6] += 40
    return images, labels


@pytest.fixture(scope="module")
def ensemble() -> tuple[EnsembleClassifier, dict[str, np.ndarray]]:
    x, y = noisy(96, 0)
    xv, yv = noisy(48, 1)
    xt, _ = noisy(40, 2)
    model = train_ensemble(x, y, xv, yv, n_classes=2, members=3, config=FAST)
    return model, {"xv": xv, "yv": yv, "xt": xt}


def test_member_seeds_are_disjoint_across_runs() -> None:
    assert member_seeds(0, 3) == [0, 1, 2]
    assert set(member_seeds(1, 3)).isdisjoint(member_seeds(0, 3))


def test_members_differ_and_the_ensemble_averages_their_logits(
    ensemble: tuple[EnsembleClassifier, dict[str, np.ndarray]],
) -> None:
    model, data = ensemble
    assert [m.config.seed for m in model.members] == [0, 1, 2]
    logits = [m.predict_logits(data["xt"]) for m in model.members]
    assert not np.allclose(logits[0], logits[1])
    np.testing.assert_allclose(model.predict_logits(data["xt"]), np.mean(logits, axis=0))
    proba = model.predict_proba(data["xt"])
    np.testing.assert_allclose(proba, apply_temperature(np.mean(logits, axis=0), model.temperature))
    assert (model.predict(data["xt"]) == (proba[:, 1] >= model.threshold)).all()
    assert model.n_parameters == 3 * model.members[0].n_parameters


def test_ensemble_calibration_is_fitted_on_its_own_validation_logits(
    ensemble: tuple[EnsembleClassifier, dict[str, np.ndarray]],
) -> None:
    model, data = ensemble
    fresh = EnsembleClassifier(model.members)
    assert (fresh.temperature, fresh.threshold) == (1.0, 0.5)
    fresh.calibrate(data["xv"], data["yv"])
    assert (fresh.temperature, fresh.threshold) == (model.temperature, model.threshold)
    assert fresh.temperature != 1.0


def test_save_load_round_trips_in_one_file(
    ensemble: tuple[EnsembleClassifier, dict[str, np.ndarray]], tmp_path: Path
) -> None:
    model, data = ensemble
    model.save(tmp_path / "run.pt")
    assert [p.name for p in tmp_path.iterdir()] == ["run.pt"]
    again = load_checkpoint(tmp_path / "run.pt")
    assert isinstance(again, EnsembleClassifier)
    assert (again.temperature, again.threshold) == (model.temperature, model.threshold)
    assert [m.config for m in again.members] == [m.config for m in model.members]
    assert (again.in_channels, again.image_size) == (1, (12, 12))
    np.testing.assert_array_equal(again.predict_proba(data["xt"]), model.predict_proba(data["xt"]))
    assert again.label_thresholds is None
    labelled = EnsembleClassifier(model.members)
    labelled.label_thresholds = np.array([0.25, 0.75])  # as a multi-label ensemble keeps
    labelled.save(tmp_path / "run.pt")
    np.testing.assert_array_equal(
        EnsembleClassifier.load(tmp_path / "run.pt").label_thresholds, [0.25, 0.75]
    )
    model.members[0].save(tmp_path / "one.pt")  # a single classifier's file loads as one
    assert isinstance(load_checkpoint(tmp_path / "one.pt"), TrainedClassifier)
    with pytest.raises(InvalidInputError, match="ensemble"):
        TrainedClassifier.load(tmp_path / "run.pt")
    with pytest.raises(InvalidInputError, match="ensemble"):
        EnsembleClassifier.load(tmp_path / "one.pt")


def test_bad_checkpoint_files_raise_clear_errors(
    ensemble: tuple[EnsembleClassifier, dict[str, np.ndarray]], tmp_path: Path
) -> None:
    model, _ = ensemble
    good = tmp_path / "good.pt"
    model.save(good)
    data = good.read_bytes()
    member = model.members[0].to_payload()
    del member["state_dict"]
    bad = {
        "truncated.pt": data[: len(data) // 2],
        "empty.pt": b"",
        "text.pt": b"not a checkpoint at all",
        "foreign.pt": pickle.dumps({"code": EnsembleClassifier}, protocol=2),
    }
    for name, content in bad.items():
        (tmp_path / name).write_bytes(content)
    torch.save([1, 2], tmp_path / "list.pt")
    torch.save({"kind": "ensemble", "members": "x"}, tmp_path / "nomembers.pt")
    torch.save({"kind": "ensemble", "members": [1]}, tmp_path / "intmember.pt")
    torch.save({"kind": "ensemble", "members": [member]}, tmp_path / "noweights.pt")
    torch.save({**model.to_payload(), "threshold": None}, tmp_path / "nothreshold.pt")
    names = [*bad, "list.pt", "nomembers.pt", "intmember.pt", "noweights.pt", "nothreshold.pt"]
    for name in names:
        with pytest.raises(InvalidInputError, match="not a medloop"):
            load_checkpoint(tmp_path / name)
    with pytest.raises(NotFoundError):
        load_checkpoint(tmp_path / "absent.pt")


def test_ensemble_gradcam_is_the_mean_of_its_members_maps(
    ensemble: tuple[EnsembleClassifier, dict[str, np.ndarray]],
) -> None:
    model, data = ensemble
    images = data["xt"][:6]
    heat = gradcam(model, images)
    chosen = model.predict(images)
    members = [gradcam(m, images, classes=chosen.tolist()) for m in model.members]
    np.testing.assert_allclose(heat, np.mean(members, axis=0), atol=1e-6)
    assert heat.shape == (6, 12, 12) and heat.min() >= 0.0 and heat.max() <= 1.0
    assert not np.allclose(members[0], members[1])


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
@pytest.mark.parametrize("quantize", [False, True])
def test_ensemble_exports_to_one_torchscript_file(
    ensemble: tuple[EnsembleClassifier, dict[str, np.ndarray]], tmp_path: Path, quantize: bool
) -> None:
    model, data = ensemble
    path = export_torchscript(model, tmp_path / "ensemble.ts", quantize=quantize)
    scripted = ScriptedClassifier.load(path)
    assert scripted.info["members"] == 3 and scripted.info["quantized"] is quantize
    assert scripted.info["temperature"] == pytest.approx(model.temperature)
    np.testing.assert_allclose(
        scripted.predict_proba(data["xt"]),
        model.predict_proba(data["xt"]),
        atol=1e-2 if quantize else 1e-5,
    )


def test_augmentation_ranges_round_trip_through_a_checkpoint(tmp_path: Path) -> None:
    x, y = noisy(32, 3)
    ranges = AugmentRanges(rotate_degrees=15.0, zoom=0.15, shift_fraction=0.1)
    config = dataclasses.replace(FAST, max_epochs=1, patience=1, augmentation=ranges)
    model = train_ensemble(x, y, x, y, n_classes=2, members=1, config=config)
    model.save(tmp_path / "m.pt")
    assert EnsembleClassifier.load(tmp_path / "m.pt").config.augmentation == ranges
    from_json = TrainConfig(augmentation={"rotate_degrees": 5.0})  # type: ignore[arg-type]
    assert from_json.augmentation == AugmentRanges(rotate_degrees=5.0)


def test_a_time_budget_starts_another_member_only_while_one_fits(
    ensemble: tuple[EnsembleClassifier, dict[str, np.ndarray]],
) -> None:
    """A budget a member overruns leaves one member, given all of it; a budget with room
    trains every member exactly as without a budget."""
    model, data = ensemble
    x, y = noisy(96, 0)
    tight = train_ensemble(x, y, data["xv"], data["yv"], n_classes=2, members=3,
                           config=FAST, seconds=1e-3)  # fmt: skip
    assert len(tight.members) == 1
    assert tight.members[0].config.max_seconds is not None
    assert tight.members[0].config.max_seconds <= 1e-3
    roomy = train_ensemble(x, y, data["xv"], data["yv"], n_classes=2, members=3,
                           config=FAST, seconds=1e6)  # fmt: skip
    assert len(roomy.members) == 3
    np.testing.assert_allclose(roomy.predict_logits(data["xt"]), model.predict_logits(data["xt"]))
    with pytest.raises(InvalidInputError, match="seconds"):
        train_ensemble(x, y, x, y, n_classes=2, members=2, config=FAST, seconds=0)


def test_bad_ensembles_are_refused() -> None:
    with pytest.raises(InvalidInputError):
        EnsembleClassifier([])
    x, y = noisy(16, 4)
    with pytest.raises(InvalidInputError):
        train_ensemble(x, y, x, y, n_classes=2, members=0, config=FAST)
