"""Deep ensembles: members from distinct seeds, mean logits, own calibration, checkpoints."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from medloop.exceptions import InvalidInputError
from medloop.learning.calibration import apply_temperature
from medloop.learning.data import AugmentRanges
from medloop.learning.ensemble import EnsembleClassifier, member_seeds, train_ensemble
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


def test_save_writes_one_loadable_checkpoint_per_member(
    ensemble: tuple[EnsembleClassifier, dict[str, np.ndarray]], tmp_path: Path
) -> None:
    model, data = ensemble
    paths = model.save(tmp_path / "run.pt")
    assert [p.name for p in paths] == ["run.member0.pt", "run.member1.pt", "run.member2.pt"]
    again = EnsembleClassifier(
        [TrainedClassifier.load(p) for p in paths],
        temperature=model.temperature,
        threshold=model.threshold,
    )
    np.testing.assert_allclose(again.predict_proba(data["xt"]), model.predict_proba(data["xt"]))


def test_augmentation_ranges_round_trip_through_a_checkpoint(tmp_path: Path) -> None:
    x, y = noisy(32, 3)
    ranges = AugmentRanges(rotate_degrees=15.0, zoom=0.15, shift_fraction=0.1)
    config = dataclasses.replace(FAST, max_epochs=1, patience=1, augmentation=ranges)
    model = train_ensemble(x, y, x, y, n_classes=2, members=1, config=config)
    path = model.save(tmp_path / "m.pt")[0]
    assert TrainedClassifier.load(path).config.augmentation == ranges
    from_json = TrainConfig(augmentation={"rotate_degrees": 5.0})  # type: ignore[arg-type]
    assert from_json.augmentation == AugmentRanges(rotate_degrees=5.0)


def test_bad_ensembles_are_refused() -> None:
    with pytest.raises(InvalidInputError):
        EnsembleClassifier([])
    x, y = noisy(16, 4)
    with pytest.raises(InvalidInputError):
        train_ensemble(x, y, x, y, n_classes=2, members=0, config=FAST)
