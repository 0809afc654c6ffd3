"""Training: learns real and synthetic data, reproducible, round-trips, validates input."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from medloop.exceptions import InvalidInputError, NotFoundError, UnknownOptionError
from medloop.learning.data import prepare_images
from medloop.learning.metrics import classification_metrics
from medloop.learning.train import TrainConfig, TrainedClassifier, train_classifier

FAST = TrainConfig(max_epochs=4, patience=4, batch_size=16)


def separable(n: int, seed: int, size: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """Class 1 is bright in the top half, class 0 in the bottom half, plus noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size=n)
    images = rng.integers(0, 60, size=(n, size, size)).astype(np.uint8)
    half = size // 2
    images[labels == 1, :half] += 180
    images[labels == 0, half:] += 180
    return images, labels


@pytest.fixture(scope="module")
def toy() -> dict[str, np.ndarray]:
    x, y = separable(96, 0)
    xv, yv = separable(32, 1)
    xt, yt = separable(64, 2)
    return {"x": x, "y": y, "xv": xv, "yv": yv, "xt": xt, "yt": yt}


@pytest.fixture(scope="module")
def toy_model(toy: dict[str, np.ndarray]) -> TrainedClassifier:
    return train_classifier(toy["x"], toy["y"], toy["xv"], toy["yv"], n_classes=2, config=FAST)


def test_learns_a_separable_problem(
    toy: dict[str, np.ndarray], toy_model: TrainedClassifier
) -> None:
    proba = toy_model.predict_proba(toy["xt"])
    assert proba.shape == (64, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert (proba.argmax(axis=1) == toy["yt"]).mean() == 1.0


def test_images_of_another_size_are_brought_to_the_training_size(
    toy: dict[str, np.ndarray], toy_model: TrainedClassifier
) -> None:
    """The network pools adaptively, so it took 24 x 24 images of a 12 x 12 model as they
    were; they are resized to what it learnt on, as `prepare_images` does."""
    larger = np.stack([np.asarray(Image.fromarray(i).resize((24, 24))) for i in toy["xt"]])
    resized = prepare_images(list(larger), in_channels=1, image_size=(12, 12))
    np.testing.assert_allclose(
        toy_model.predict_proba(larger), toy_model.predict_proba(resized), atol=1e-6
    )


def test_history_and_best_epoch_weights_are_kept(
    toy: dict[str, np.ndarray], toy_model: TrainedClassifier
) -> None:
    history = toy_model.history
    assert 1 <= len(history) <= FAST.max_epochs
    assert set(history[0]) == {"epoch", "train_loss", "val_loss", "val_auc", "val_acc", "seconds"}
    assert [h["epoch"] for h in history] == list(range(1, len(history) + 1))
    # Best = highest validation AUC, ties going to the lower validation loss.
    ranked = max(history, key=lambda h: (h["val_auc"], -h["val_loss"]))
    assert toy_model.best_epoch == ranked["epoch"]
    # The restored weights reproduce the best epoch's validation figures.
    val = classification_metrics(toy_model.predict_proba(toy["xv"]), toy["yv"])
    best = history[toy_model.best_epoch - 1]
    assert val["auc"] == pytest.approx(best["val_auc"])
    assert val["acc"] == pytest.approx(best["val_acc"])
    assert toy_model.n_classes == 2
    assert toy_model.config == FAST


def test_save_load_round_trip_gives_identical_predictions(
    toy: dict[str, np.ndarray], toy_model: TrainedClassifier, tmp_path: Path
) -> None:
    path = tmp_path / "models" / "m.pt"
    toy_model.save(path)
    loaded = TrainedClassifier.load(path)
    np.testing.assert_array_equal(
        loaded.predict_proba(toy["xt"]), toy_model.predict_proba(toy["xt"])
    )
    assert loaded.config == toy_model.config
    assert loaded.history == toy_model.history
    assert loaded.best_epoch == toy_model.best_epoch
    assert loaded.n_classes == 2
    assert loaded.in_channels == 1


def test_embed_gives_penultimate_features(
    toy: dict[str, np.ndarray], toy_model: TrainedClassifier
) -> None:
    features = toy_model.embed(toy["xt"][:5])
    assert features.shape == (5, 64)
    assert np.all(np.isfinite(features))


def test_same_seed_same_model_other_seed_other_model(toy: dict[str, np.ndarray]) -> None:
    config = dataclasses.replace(FAST, max_epochs=2)
    rng_before = torch.get_rng_state()
    threads_before = torch.get_num_threads()

    def run(seed: int) -> np.ndarray:
        model = train_classifier(
            toy["x"],
            toy["y"],
            toy["xv"],
            toy["yv"],
            n_classes=2,
            config=dataclasses.replace(config, seed=seed),
        )
        return model.predict_proba(toy["xt"])

    a, b, c = run(0), run(0), run(1)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # Training leaves the caller's random state and thread count alone.
    assert torch.equal(torch.get_rng_state(), rng_before)
    assert torch.get_num_threads() == threads_before


def test_one_hot_soft_labels_equal_int_labels(toy: dict[str, np.ndarray]) -> None:
    config = dataclasses.replace(FAST, max_epochs=1)
    hard = train_classifier(toy["x"], toy["y"], toy["xv"], toy["yv"], n_classes=2, config=config)
    soft = train_classifier(
        toy["x"], np.eye(2)[toy["y"]], toy["xv"], toy["yv"], n_classes=2, config=config
    )
    np.testing.assert_array_equal(hard.predict_proba(toy["xt"]), soft.predict_proba(toy["xt"]))


def test_soft_labels_and_zero_weights_on_wrong_labels(toy: dict[str, np.ndarray]) -> None:
    # Half the items get the wrong label, but only as a soft 0.6 belief and with weight 0:
    # the model must still learn the right rule from the other half.
    y = toy["y"].copy()
    wrong = np.arange(len(y)) % 2 == 0
    y[wrong] = 1 - y[wrong]
    soft = np.where(np.eye(2)[y] == 1, 0.6, 0.4)
    soft[~wrong] = np.where(np.eye(2)[y[~wrong]] == 1, 0.9, 0.1)
    weights = np.where(wrong, 0.0, 1.0)
    model = train_classifier(
        toy["x"],
        soft,
        toy["xv"],
        toy["yv"],
        n_classes=2,
        config=dataclasses.replace(FAST, max_epochs=6, patience=6),
        sample_weights=weights,
    )
    assert (model.predict_proba(toy["xt"]).argmax(axis=1) == toy["yt"]).mean() >= 0.95


def test_marginal_loss_on_one_hot_likelihoods_is_cross_entropy(
    toy: dict[str, np.ndarray],
) -> None:
    config = dataclasses.replace(FAST, max_epochs=1)
    hard = train_classifier(toy["x"], toy["y"], toy["xv"], toy["yv"], n_classes=2, config=config)
    marginal = train_classifier(
        toy["x"],
        np.eye(2)[toy["y"]],
        toy["xv"],
        toy["yv"],
        n_classes=2,
        config=dataclasses.replace(config, loss="marginal"),
    )
    np.testing.assert_allclose(
        hard.predict_proba(toy["xt"]), marginal.predict_proba(toy["xt"]), atol=1e-4
    )


def test_marginal_loss_learns_through_noisy_answers(toy: dict[str, np.ndarray]) -> None:
    # Each item's "crowd" said the wrong class a third of the time; the likelihood rows
    # say only 0.7 vs 0.3. The network's own belief must settle the rule. Likelihoods
    # need not sum to 1 (posteriors over priors do not): here each row sums to 3.
    y = toy["y"].copy()
    flipped = np.arange(len(y)) % 3 == 0
    y[flipped] = 1 - y[flipped]
    likelihood = np.where(np.eye(2)[y] == 1, 2.1, 0.9)
    model = train_classifier(
        toy["x"],
        likelihood,
        toy["xv"],
        toy["yv"],
        n_classes=2,
        config=dataclasses.replace(FAST, max_epochs=6, patience=6, loss="marginal"),
    )
    assert (model.predict_proba(toy["xt"]).argmax(axis=1) == toy["yt"]).mean() >= 0.95
    with pytest.raises(UnknownOptionError):
        TrainConfig(loss="focal")


def test_checkpoint_and_epoch_callback(toy: dict[str, np.ndarray], tmp_path: Path) -> None:
    seen: list[tuple[int, float]] = []
    path = tmp_path / "ckpt.pt"
    model = train_classifier(
        toy["x"],
        toy["y"],
        toy["xv"],
        toy["yv"],
        n_classes=2,
        config=dataclasses.replace(FAST, max_epochs=2),
        checkpoint_path=path,
        on_epoch=lambda epoch, record: seen.append((epoch, record["val_auc"])),
    )
    assert [e for e, _ in seen] == [1, 2]
    assert path.exists()
    np.testing.assert_array_equal(
        TrainedClassifier.load(path).predict_proba(toy["xv"]), model.predict_proba(toy["xv"])
    )


def test_max_seconds_stops_after_the_first_epoch(toy: dict[str, np.ndarray]) -> None:
    model = train_classifier(
        toy["x"],
        toy["y"],
        toy["xv"],
        toy["yv"],
        n_classes=2,
        config=dataclasses.replace(FAST, max_epochs=50, max_seconds=1e-6),
    )
    assert len(model.history) == 1


def test_three_channel_three_class_images() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, size=48)
    x = rng.integers(0, 50, size=(48, 8, 8, 3)).astype(np.uint8)
    x[np.arange(48), :, :, y] += 200  # the bright channel is the class
    config = dataclasses.replace(FAST, batch_size=8, max_epochs=6, patience=6)
    model = train_classifier(x, y, x[:16], y[:16], n_classes=3, config=config)
    proba = model.predict_proba(x)
    assert proba.shape == (48, 3)
    assert (proba.argmax(axis=1) == y).mean() >= 0.9
    with pytest.raises(InvalidInputError, match="channel"):
        model.predict_proba(x[..., 0])


def test_learns_real_pneumonia_images(medmnist_dir: Path) -> None:
    data = np.load(medmnist_dir / "pneumoniamnist.npz")
    rng = np.random.default_rng(0)
    idx = rng.choice(len(data["train_labels"]), size=200, replace=False)
    model = train_classifier(
        data["train_images"][idx],
        data["train_labels"][idx, 0],
        data["val_images"][:200],
        data["val_labels"][:200, 0],
        n_classes=2,
        config=TrainConfig(max_epochs=5, patience=5, batch_size=32),
    )
    test = classification_metrics(
        model.predict_proba(data["test_images"]), data["test_labels"][:, 0]
    )
    assert test["n"] == 624
    assert test["auc"] > 0.8


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"train_targets": np.zeros(5, dtype=int)}, "expected 96"),
        ({"train_targets": np.full((96, 2), 0.6)}, "sum to 1"),
        ({"train_targets": np.full((96, 3), 1 / 3)}, "n_classes"),
        ({"train_targets": np.full(96, 2)}, r"\[0, 2\)"),
        ({"n_classes": 1}, "n_classes"),
        ({"val_labels": np.zeros(3, dtype=int)}, "expected 32"),
        ({"val_images": np.zeros((32, 12, 12, 3), dtype=np.uint8)}, "channel"),
        ({"val_images": np.zeros((32, 10, 10), dtype=np.uint8)}, "validation images"),
        ({"sample_weights": -np.ones(96)}, "sample_weights"),
        ({"sample_weights": np.ones(3)}, "sample_weights"),
    ],
)
def test_bad_input_raises(
    toy: dict[str, np.ndarray], kwargs: dict[str, object], match: str
) -> None:
    call: dict[str, object] = {
        "train_images": toy["x"],
        "train_targets": toy["y"],
        "val_images": toy["xv"],
        "val_labels": toy["yv"],
        "n_classes": 2,
        "config": FAST,
    }
    call.update(kwargs)
    with pytest.raises(InvalidInputError, match=match):
        train_classifier(**call)  # type: ignore[arg-type]


def test_bad_config_and_missing_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(UnknownOptionError):
        TrainConfig(monitor="accuracy")
    with pytest.raises(InvalidInputError):
        TrainConfig(max_epochs=0)
    with pytest.raises(InvalidInputError, match="min_epoch_samples"):
        TrainConfig(min_epoch_samples=-1)
    with pytest.raises(UnknownOptionError, match="one_se"):
        TrainConfig(threshold_tolerance="se")
    assert TrainConfig(threshold_tolerance="one_se").threshold_tolerance == "one_se"
    with pytest.raises(NotFoundError):
        TrainedClassifier.load(tmp_path / "absent.pt")
    junk = tmp_path / "junk.pt"
    torch.save({"not": "a checkpoint"}, junk)
    with pytest.raises(InvalidInputError):
        TrainedClassifier.load(junk)


def test_calibration_and_threshold_are_fitted_and_saved(
    toy: dict[str, np.ndarray], toy_model: TrainedClassifier, tmp_path: Path
) -> None:
    assert toy_model.temperature > 0
    assert 0 < toy_model.threshold < 1
    assert toy_model.metrics["temperature"] == toy_model.temperature
    proba = toy_model.predict_proba(toy["xt"])
    np.testing.assert_array_equal(
        toy_model.predict(toy["xt"]), (proba[:, 1] >= toy_model.threshold).astype(int)
    )
    path = tmp_path / "m.pt"
    toy_model.save(path)
    loaded = TrainedClassifier.load(path)
    assert (loaded.temperature, loaded.threshold) == (toy_model.temperature, toy_model.threshold)


def test_test_time_augmentation_averages_views(toy: dict[str, np.ndarray]) -> None:
    config = dataclasses.replace(FAST, tta=5, calibrate=False, tune_threshold=False)
    model = train_classifier(toy["x"], toy["y"], toy["xv"], toy["yv"], n_classes=2, config=config)
    assert (model.temperature, model.threshold) == (1.0, 0.5)
    with_tta = model.predict_logits(toy["xt"])
    model.config = dataclasses.replace(config, tta=1)
    plain = model.predict_logits(toy["xt"])
    assert not np.allclose(with_tta, plain)
    assert (with_tta.argmax(axis=1) == toy["yt"]).mean() == 1.0
    with pytest.raises(InvalidInputError):
        TrainConfig(tta=0)
