"""Images as MONAI dict items, data loaders, and training augmentation.

Images arrive as uint8 arrays (N, H, W) (grey) or (N, H, W, C) (channel last, as
MedMNIST stores colour images) and become float tensors (N, C, H, W) in [0, 1].
Float arrays are taken as already scaled.

Augmentation is conservative and dataset-agnostic: small rotations, zooms and shifts,
mild brightness/contrast changes and faint Gaussian noise, never flips (laterality
matters in medical images). It runs on whole batches (`BatchAugment`, through MONAI's
`AffineTransform` layer) because MONAI's per-item `RandAffined` costs about 1 ms per
28x28 image on a CPU core, more than the network's own training step; the per-item
MONAI pipeline with the same ranges is `train_transforms()` for datasets of larger
images loaded from files.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from monai.data import Dataset
from monai.networks.layers import AffineTransform
from monai.transforms import (
    Compose,
    EnsureTyped,
    RandAffined,
    RandGaussianNoised,
    RandScaleIntensityd,
    RandShiftIntensityd,
)
from PIL import Image
from torch.utils.data import ConcatDataset, DataLoader

from medloop.exceptions import InvalidInputError
from medloop.ingest.images import check_image_array

IMAGE = "image"
TARGET = "target"
WEIGHT = "weight"


def images_to_tensor(images: np.ndarray, *, in_channels: int | None = None) -> torch.Tensor:
    """Convert uint8 (N, H, W) or (N, H, W, C) images to float32 (N, C, H, W) in [0, 1].

    >>> images_to_tensor(np.full((2, 4, 4), 255, dtype=np.uint8)).shape
    torch.Size([2, 1, 4, 4])
    """
    arr = np.asarray(images)
    if arr.ndim == 3:
        arr = arr[:, None, :, :]
    elif arr.ndim == 4:
        arr = np.moveaxis(arr, -1, 1)
    else:
        raise InvalidInputError(
            f"images must be (N, H, W) or (N, H, W, C); got shape {np.shape(images)}"
        )
    if in_channels is not None and arr.shape[1] != in_channels:
        raise InvalidInputError(f"expected {in_channels} image channel(s), got {arr.shape[1]}")
    if arr.dtype == np.uint8:
        out = arr.astype(np.float32) / np.float32(255.0)
    elif np.issubdtype(arr.dtype, np.floating):
        out = arr.astype(np.float32)
        if not np.all(np.isfinite(out)):
            raise InvalidInputError("images contain NaN or infinite values")
    else:
        raise InvalidInputError(f"images must be uint8 or float; got dtype {arr.dtype}")
    return torch.from_numpy(np.ascontiguousarray(out))


def make_dataset(
    images: torch.Tensor,
    targets: torch.Tensor,
    *,
    weights: torch.Tensor | None = None,
    transform: Compose | None = None,
) -> Dataset:
    """A MONAI dataset of dict items {"image": (C, H, W), "target": (K,), "weight": ()}."""
    if weights is None:
        weights = torch.ones(images.shape[0], dtype=torch.float32)
    if not images.shape[0] == targets.shape[0] == weights.shape[0]:
        raise InvalidInputError("images, targets and weights differ in length")
    items = [
        {IMAGE: images[i], TARGET: targets[i], WEIGHT: weights[i]} for i in range(images.shape[0])
    ]
    return Dataset(data=items, transform=transform)


def repeat_dataset(dataset: Dataset, min_samples: int) -> Dataset | ConcatDataset:
    """`dataset` repeated whole as often as it takes to hold at least `min_samples` items
    (itself when it already does): a shuffled pass over it is several passes over the data."""
    repeats = math.ceil(min_samples / len(dataset)) if len(dataset) else 1
    return dataset if repeats <= 1 else ConcatDataset([dataset] * repeats)


def make_loader(
    dataset: Dataset | ConcatDataset, *, batch_size: int, shuffle: bool, seed: int = 0
) -> DataLoader:
    """A single-process loader; shuffling order is fixed by `seed`.

    A last batch of a single item is dropped when shuffling (batch norm needs two).
    """
    generator = torch.Generator().manual_seed(seed)
    drop_last = shuffle and len(dataset) > batch_size and len(dataset) % batch_size == 1
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        generator=generator,
        num_workers=0,
        drop_last=drop_last,
    )


@dataclass(frozen=True)
class AugmentRanges:
    """Ranges of the random augmentation (each drawn uniformly in +-range)."""

    rotate_degrees: float = 10.0
    zoom: float = 0.1
    shift_fraction: float = 0.06
    contrast: float = 0.1
    brightness: float = 0.05
    noise_std: float = 0.02


class BatchAugment:
    """Random affine + intensity augmentation of a whole batch (B, C, H, W) at once.

    Every image gets its own rotation, zoom and shift (MONAI `AffineTransform`,
    border padding) and its own contrast, brightness and noise; values stay in [0, 1]
    when the input does. Draws come from the `generator` passed to each call, so a
    seeded generator gives reproducible batches.
    """

    def __init__(self, ranges: AugmentRanges = AugmentRanges()) -> None:
        self.ranges = ranges
        self._warp = AffineTransform(
            normalized=True, mode="bilinear", padding_mode="border", align_corners=False
        )

    def __call__(self, images: torch.Tensor, *, generator: torch.Generator) -> torch.Tensor:
        r = self.ranges
        b = images.shape[0]

        def uniform(bound: float) -> torch.Tensor:
            return (torch.rand(b, generator=generator) * 2.0 - 1.0) * bound

        angle = uniform(math.radians(r.rotate_degrees))
        scale = 1.0 + uniform(r.zoom)
        shift = torch.stack([uniform(2 * r.shift_fraction), uniform(2 * r.shift_fraction)], 1)
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
        theta = torch.stack(
            [
                torch.stack([cos, -sin, shift[:, 0]], 1),
                torch.stack([sin, cos, shift[:, 1]], 1),
            ],
            1,
        )
        out = self._warp(images, theta)
        contrast = (1.0 + uniform(r.contrast)).view(b, 1, 1, 1)
        brightness = uniform(r.brightness).view(b, 1, 1, 1)
        noise = torch.randn(images.shape, generator=generator) * r.noise_std
        mean = out.mean(dim=(1, 2, 3), keepdim=True)
        out = (out - mean) * contrast + mean + brightness + noise
        return out.clamp_(0.0, 1.0)


def train_transforms(
    *,
    image_size: Sequence[int],
    keys: Sequence[str] = (IMAGE,),
    seed: int = 0,
    ranges: AugmentRanges = AugmentRanges(),
) -> Compose:
    """Augmentation like `BatchAugment`'s as a per-item MONAI dict pipeline (C, H, W)."""
    translate = [ranges.shift_fraction * float(size) for size in image_size]
    pipeline = Compose(
        [
            RandAffined(
                keys=keys,
                prob=1.0,
                rotate_range=math.radians(ranges.rotate_degrees),
                scale_range=ranges.zoom,
                translate_range=translate,
                padding_mode="border",
            ),
            RandScaleIntensityd(keys=keys, factors=ranges.contrast, prob=1.0),
            RandShiftIntensityd(keys=keys, offsets=ranges.brightness, prob=1.0),
            RandGaussianNoised(keys=keys, prob=1.0, std=ranges.noise_std),
            EnsureTyped(keys=keys, data_type="tensor", track_meta=False),
        ]
    )
    pipeline.set_random_state(seed=seed)
    return pipeline


# Test-time views: (rotation degrees, zoom, shift x, shift y as a fraction of the side).
# The first is the identity; the others are small, label-preserving, and never flips.
TTA_VIEWS: tuple[tuple[float, float, float, float], ...] = (
    (0.0, 1.0, 0.0, 0.0),
    (0.0, 1.0, 0.04, 0.0),
    (0.0, 1.0, -0.04, 0.0),
    (0.0, 1.0, 0.0, 0.04),
    (0.0, 1.0, 0.0, -0.04),
    (5.0, 1.0, 0.0, 0.0),
    (-5.0, 1.0, 0.0, 0.0),
    (0.0, 1.06, 0.0, 0.0),
    (0.0, 0.94, 0.0, 0.0),
)


def tta_views(images: torch.Tensor, n: int) -> list[torch.Tensor]:
    """The first `n` of `TTA_VIEWS` applied to a batch (B, C, H, W); n=1 is the batch itself."""
    if not 1 <= n <= len(TTA_VIEWS):
        raise InvalidInputError(f"n must lie in [1, {len(TTA_VIEWS)}]; got {n}")
    views = [images]
    if n == 1:
        return views
    warp = AffineTransform(
        normalized=True, mode="bilinear", padding_mode="border", align_corners=False
    )
    b = images.shape[0]
    for degrees, zoom, dx, dy in TTA_VIEWS[1:n]:
        angle = math.radians(degrees)
        cos, sin = math.cos(angle) / zoom, math.sin(angle) / zoom
        theta = torch.tensor([[cos, -sin, 2 * dx], [sin, cos, 2 * dy]], dtype=images.dtype).expand(
            b, 2, 3
        )
        views.append(warp(images, theta))
    return views


def prepare_images(
    images: Sequence[np.ndarray], *, in_channels: int, image_size: Sequence[int] | None
) -> np.ndarray:
    """Bring uint8 images of any size, grey or RGB, to what a model takes.

    RGB becomes grey (ITU-R 601 luma, Pillow "L") for one-channel models and grey is
    repeated for three-channel ones; every image is resized (bilinear, antialiased) to
    `image_size` (H, W). Returns (N, H, W) or (N, H, W, 3) uint8.
    """
    if in_channels not in (1, 3):
        raise InvalidInputError(f"only 1- or 3-channel models are supported; got {in_channels}")
    prepared = []
    for image in images:
        check_image_array(image)
        picture = Image.fromarray(image)
        if in_channels == 1 and image.ndim == 3:
            picture = picture.convert("L")
        elif in_channels == 3 and image.ndim == 2:
            picture = picture.convert("RGB")
        if image_size is not None:
            height, width = int(image_size[0]), int(image_size[1])
            if picture.size != (width, height):
                picture = picture.resize((width, height), Image.Resampling.BILINEAR)
        prepared.append(np.asarray(picture, dtype=np.uint8))
    if not prepared:
        raise InvalidInputError("no images to prepare")
    shapes = {p.shape for p in prepared}
    if len(shapes) > 1:
        raise InvalidInputError(f"images differ in size {sorted(shapes)}; give an image_size")
    return np.stack(prepared)
