"""Grad-CAM heat maps for a trained classifier, and overlays a doctor can look at.

`gradcam` runs MONAI's `monai.visualize.GradCAM` on the network's last spatial
feature layer (`TARGET_LAYERS`, one per network of `medloop.learning.networks`) and
returns one map per image in [0, 1] (1: where the evidence for the class is strongest);
a deep ensemble's map is the mean of its members' maps.
`overlay` blends a matplotlib colour map onto the grey image, weighted by the heat, so
cold regions keep the original image; `overlay_png` encodes that as PNG bytes.

>>> heat = gradcam(model, images)                       # doctest: +SKIP
>>> png = overlay_png(images[0], heat[0])                # doctest: +SKIP
"""

from __future__ import annotations

import copy
import logging
import warnings
from collections.abc import Sequence

import matplotlib
import numpy as np
import torch
import torch.nn.functional as F
from monai.visualize import GradCAM
from PIL import Image

from medloop.exceptions import InvalidInputError, UnknownOptionError
from medloop.ingest.images import check_image_array, encode_png
from medloop.learning.data import images_to_tensor, prepare_images
from medloop.learning.ensemble import Classifier, EnsembleClassifier
from medloop.learning.train import TrainedClassifier

logger = logging.getLogger(__name__)

#: The layer whose activations and gradients Grad-CAM combines, per network name: the
#: last block before global pooling (SmallCNN `features`, ResNet `layer4`, DenseNet the
#: ReLU after its final norm).
TARGET_LAYERS: dict[str, str] = {
    "cnn": "features",
    "cnn_small": "features",
    "cnn_wide": "features",
    "resnet10": "layer4",
    "resnet18": "layer4",
    "densenet": "class_layers.relu",
    "densenet121": "class_layers.relu",
}

DEFAULT_COLORMAP = "jet"


def target_layer(network: str) -> str:
    """The Grad-CAM target layer of the network called `network`."""
    key = str(network).strip().lower()
    if key not in TARGET_LAYERS:
        raise UnknownOptionError(
            f"no Grad-CAM target layer for network {network!r}; known: {sorted(TARGET_LAYERS)}"
        )
    return TARGET_LAYERS[key]


def _unit_range(maps: torch.Tensor) -> torch.Tensor:
    """Scale each map of (B, 1, H, W) to [0, 1]; a flat map (no evidence) becomes zeros."""
    flat = maps.detach().reshape(maps.shape[0], -1)
    low = flat.min(dim=1, keepdim=True).values
    span = flat.max(dim=1, keepdim=True).values - low
    scaled = torch.where(span > 0, (flat - low) / span.clamp_min(1e-12), torch.zeros_like(flat))
    return scaled.reshape(maps.shape)


def gradcam(
    model: Classifier,
    images: np.ndarray,
    *,
    classes: Sequence[int] | int | None = None,
    batch_size: int = 64,
) -> np.ndarray:
    """Grad-CAM maps (N, H, W) in [0, 1] for uint8 images (N, H, W) or (N, H, W, C).

    `classes` picks the class explained per image (one int for all, or one per image);
    default: the class the model predicts (`TrainedClassifier.predict`). The model's
    own network is left untouched (the hooks go on a copy). For an `EnsembleClassifier`
    the map is the mean of its members' maps, each explaining the ensemble's class.
    """
    if batch_size < 1:
        raise InvalidInputError("batch_size must be >= 1")
    shown = tuple(np.asarray(images).shape[1:3])
    size = model.image_size
    if size is not None and len(images) and shown != tuple(size):
        # explained at the scale the network learnt, as it predicts; mapped back after
        images = prepare_images(list(images), in_channels=model.in_channels, image_size=size)
    x = images_to_tensor(images, in_channels=model.in_channels)
    n = int(x.shape[0])
    if classes is None:
        wanted = model.predict(images) if n else np.zeros(0, dtype=np.int64)
    elif isinstance(classes, int | np.integer):
        wanted = np.full(n, int(classes), dtype=np.int64)
    else:
        wanted = np.asarray(classes, dtype=np.int64)
    if wanted.shape != (n,):
        raise InvalidInputError(f"expected one class per image ({n}); got {wanted.shape}")
    if n and (wanted.min() < 0 or wanted.max() >= model.n_classes):
        raise InvalidInputError(f"classes must lie in [0, {model.n_classes})")
    members = model.members if isinstance(model, EnsembleClassifier) else [model]
    maps = np.mean([_member_maps(m, x, wanted, batch_size) for m in members], axis=0)
    if n and tuple(maps.shape[1:3]) != shown:
        maps = F.interpolate(
            torch.from_numpy(np.asarray(maps, dtype=np.float32))[:, None],
            size=shown,
            mode="bilinear",
            align_corners=False,
        )[:, 0].numpy()
    logger.debug("grad-cam for %d images (%d networks)", n, len(members))
    return np.asarray(maps, dtype=np.float32)


def _member_maps(
    model: TrainedClassifier, x: torch.Tensor, wanted: np.ndarray, batch_size: int
) -> np.ndarray:
    """One network's Grad-CAM maps (N, H, W) of images `x` for classes `wanted` (N,)."""
    n = int(x.shape[0])
    network = copy.deepcopy(model.network).eval()
    for parameter in network.parameters():
        parameter.requires_grad_(True)
    cam = GradCAM(
        nn_module=network,
        target_layers=target_layer(model.config.network),
        postprocessing=_unit_range,
    )
    maps = torch.zeros((n, 1, *x.shape[2:]), dtype=torch.float32)
    # MONAI's GradCAM takes one class index per call: explain each class's images together.
    for k in np.unique(wanted):
        rows = np.flatnonzero(wanted == k)
        for start in range(0, rows.size, batch_size):
            chunk = torch.from_numpy(rows[start : start + batch_size])
            with torch.enable_grad(), warnings.catch_warnings():
                # the hook fires on module outputs: the images themselves need no gradient
                warnings.filterwarnings("ignore", message="Full backward hook is firing")
                maps[chunk] = cam(x=x[chunk], class_idx=int(k)).float()
    return maps[:, 0].numpy()


def resize_heatmap(heatmap: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """A heat map (H, W) resized (bilinear) to `shape` (H', W'), kept within [0, 1]."""
    height, width = int(shape[0]), int(shape[1])
    heat = np.asarray(heatmap, dtype=np.float32)
    if heat.shape == (height, width):
        return heat.astype(np.float64)
    picture = Image.fromarray(heat, mode="F").resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(picture, dtype=np.float64).clip(0.0, 1.0)


def overlay(
    image: np.ndarray,
    heatmap: np.ndarray,
    *,
    alpha: float = 0.5,
    colormap: str = DEFAULT_COLORMAP,
    min_size: int = 224,
) -> np.ndarray:
    """Blend `heatmap` (H, W) in [0, 1] over `image` as uint8 RGB (H', W', 3).

    Each pixel mixes the grey image with the colour map's colour by `alpha * heat`, so
    regions without evidence keep the original image. Images smaller than `min_size` on
    their longer side are enlarged (image: nearest, heat: bilinear) for display.
    """
    check_image_array(image)
    heat = np.asarray(heatmap, dtype=np.float64)
    if heat.shape != image.shape[:2]:
        raise InvalidInputError(f"heat map {heat.shape} does not match image {image.shape[:2]}")
    if not np.all(np.isfinite(heat)) or heat.min() < 0 or heat.max() > 1:
        raise InvalidInputError("heat map values must lie in [0, 1]")
    if not 0.0 <= alpha <= 1.0:
        raise InvalidInputError("alpha must lie in [0, 1]")
    try:
        cmap = matplotlib.colormaps[colormap]
    except KeyError as exc:
        raise UnknownOptionError(f"unknown matplotlib colour map {colormap!r}") from exc
    grey = image if image.ndim == 2 else np.asarray(Image.fromarray(image).convert("L"))
    height, width = grey.shape
    scale = max(1, int(np.ceil(min_size / max(height, width))))
    if scale > 1:
        size = (width * scale, height * scale)
        grey = np.asarray(Image.fromarray(grey).resize(size, Image.Resampling.NEAREST))
        heat = resize_heatmap(heat, (size[1], size[0]))
    base = np.repeat(grey[..., None].astype(np.float64) / 255.0, 3, axis=2)
    colour = cmap(heat)[..., :3]
    weight = (alpha * heat)[..., None]
    blended = base * (1.0 - weight) + colour * weight
    return np.clip(np.rint(blended * 255.0), 0, 255).astype(np.uint8)


def overlay_png(
    image: np.ndarray,
    heatmap: np.ndarray,
    *,
    alpha: float = 0.5,
    colormap: str = DEFAULT_COLORMAP,
    min_size: int = 224,
) -> bytes:
    """`overlay` encoded as PNG bytes."""
    return encode_png(overlay(image, heatmap, alpha=alpha, colormap=colormap, min_size=min_size))
