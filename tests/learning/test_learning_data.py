"""Image conversion, MONAI dict items and augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medloop.exceptions import InvalidInputError
from medloop.learning.data import (
    BatchAugment,
    images_to_tensor,
    make_dataset,
    make_loader,
    repeat_dataset,
    train_transforms,
)


def test_grey_and_colour_images_become_channel_first_floats() -> None:
    grey = np.array([[[0, 255], [51, 102]]], dtype=np.uint8)
    out = images_to_tensor(grey)
    assert out.shape == (1, 1, 2, 2)
    assert out.dtype == torch.float32
    assert out[0, 0].flatten().tolist() == pytest.approx([0.0, 1.0, 0.2, 0.4])
    colour = np.zeros((2, 4, 5, 3), dtype=np.uint8)
    colour[..., 2] = 255
    out = images_to_tensor(colour)
    assert out.shape == (2, 3, 4, 5)
    assert out[:, 2].min() == 1.0 and out[:, :2].max() == 0.0


@pytest.mark.parametrize(
    "images",
    [
        np.zeros((4, 4), dtype=np.uint8),  # no batch dimension
        np.zeros((1, 4, 4), dtype=np.int32),  # unsupported dtype
        np.full((1, 4, 4), np.nan, dtype=np.float32),
    ],
)
def test_bad_images_raise(images: np.ndarray) -> None:
    with pytest.raises(InvalidInputError):
        images_to_tensor(images)


def test_channel_count_is_checked() -> None:
    with pytest.raises(InvalidInputError, match="channel"):
        images_to_tensor(np.zeros((1, 4, 4, 3), dtype=np.uint8), in_channels=1)


def test_dataset_items_and_seeded_loader_order() -> None:
    images = torch.arange(10, dtype=torch.float32).view(10, 1, 1, 1)
    targets = torch.eye(2)[torch.tensor([0, 1] * 5)]
    dataset = make_dataset(images, targets)
    assert set(dataset[3]) == {"image", "target", "weight"}
    assert dataset[3]["target"].tolist() == [0.0, 1.0]

    def order(seed: int) -> list[float]:
        loader = make_loader(dataset, batch_size=4, shuffle=True, seed=seed)
        return [float(v) for batch in loader for v in batch["image"].flatten()]

    assert order(0) == order(0)
    assert sorted(order(0)) == list(range(10))
    assert order(0) != order(1)
    # 9 items in batches of 4 leave a last batch of one: dropped when shuffling.
    loader = make_loader(make_dataset(images[:9], targets[:9]), batch_size=4, shuffle=True)
    assert [len(b["image"]) for b in loader] == [4, 4]


def test_a_small_dataset_is_repeated_whole_to_fill_an_epoch() -> None:
    images = torch.arange(10, dtype=torch.float32).view(10, 1, 1, 1)
    dataset = make_dataset(images, torch.eye(2)[torch.tensor([0, 1] * 5)])
    assert repeat_dataset(dataset, 0) is dataset
    assert repeat_dataset(dataset, 10) is dataset
    repeated = repeat_dataset(dataset, 25)
    assert len(repeated) == 30  # three whole passes, never a partial one
    loader = make_loader(repeated, batch_size=4, shuffle=True, seed=0)
    seen = [int(v) for batch in loader for v in batch["image"].flatten()]
    assert sorted(seen) == sorted(list(range(10)) * 3)
    assert seen[:10] != list(range(10))  # shuffled across the passes


def test_batch_augment_is_seeded_small_and_in_range() -> None:
    rng = np.random.default_rng(0)
    images = images_to_tensor(rng.integers(0, 256, size=(8, 28, 28), dtype=np.uint8))
    augment = BatchAugment()
    a = augment(images, generator=torch.Generator().manual_seed(3))
    b = augment(images, generator=torch.Generator().manual_seed(3))
    c = augment(images, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert a.shape == images.shape
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    # Each image is changed, but not beyond recognition (a mild warp of noise).
    assert bool(((a - images).abs().mean(dim=(1, 2, 3)) > 0).all())


def test_per_item_monai_pipeline_keeps_shape_and_range() -> None:
    pipeline = train_transforms(image_size=(28, 28), seed=0)
    item = {"image": torch.full((1, 28, 28), 0.5)}
    out = pipeline(item)["image"]
    assert isinstance(out, torch.Tensor)
    assert out.shape == (1, 28, 28)
    assert abs(float(out.mean()) - 0.5) < 0.2
