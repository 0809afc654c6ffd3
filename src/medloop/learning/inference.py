"""Fast CPU inference: preparing images, batched prediction, TorchScript and quantisation.

A trained classifier becomes one module mapping float images (B, C, H, W) in [0, 1] to
calibrated probabilities (`ProbabilityModel`: softmax of logits / temperature; for a deep
ensemble the logits are the mean of its members', `MeanLogits`). It can
be exported as TorchScript (`export_torchscript`, traced and frozen, with its metadata
in the file) and loaded without medloop's network code (`ScriptedClassifier`).
`quantize_linear` applies dynamic int8 quantisation to the `nn.Linear` layers
(`torch.ao.quantization.quantize_dynamic`); medloop's networks are convolutional with
a single small linear head, so it barely changes their speed or size (see
benchmarks/README.md). Exported models apply no test-time augmentation.

>>> export_torchscript(model, Path("model.ts"), quantize=False)   # doctest: +SKIP
>>> ScriptedClassifier.load(Path("model.ts")).predict_proba(images)  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import io
import json
import logging
import time
import warnings
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medloop.exceptions import InvalidInputError, NotFoundError
from medloop.learning.data import images_to_tensor, prepare_images, tta_views
from medloop.learning.ensemble import Classifier, EnsembleClassifier
from medloop.learning.train import torch_threads

logger = logging.getLogger(__name__)

METADATA_FILE = "medloop.json"
EXPORT_FORMAT = 1
#: Input side used to trace models whose training image size is unknown (old checkpoints).
DEFAULT_SIDE = 28


class ProbabilityModel(nn.Module):
    """A network plus its softmax temperature: images (B, C, H, W) -> probabilities (B, K)."""

    def __init__(self, network: nn.Module, temperature: float = 1.0) -> None:
        super().__init__()
        self.network = network
        self.temperature = float(temperature)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous(memory_format=torch.channels_last)  # as the weights (oneDNN)
        return torch.softmax(self.network(x) / self.temperature, dim=1)


class MeanLogits(nn.Module):
    """A deep ensemble's networks as one: images -> the mean of the members' logits."""

    def __init__(self, networks: Sequence[nn.Module]) -> None:
        super().__init__()
        self.networks = nn.ModuleList(networks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([network(x) for network in self.networks]).mean(dim=0)


class MeanOverViews(nn.Module):
    """A network's logits averaged over the first `n` test-time views (`tta_views`), as
    the model's own predictions average them; its temperature and cut were fitted so."""

    def __init__(self, network: nn.Module, n: int) -> None:
        super().__init__()
        self.network = network
        self.n = n

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.network(view) for view in tta_views(x, self.n)]).mean(dim=0)


def logit_network(model: Classifier) -> nn.Module:
    """The module computing `model`'s raw logits (an ensemble's: `MeanLogits`)."""
    if isinstance(model, EnsembleClassifier):
        return MeanLogits([member.network for member in model.members])
    return model.network


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence torch's deprecation notices for torch.jit and torch.ao.quantization."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=r"torch\.quantize_per_tensor")
        yield


def quantize_linear(network: nn.Module) -> nn.Module:
    """A copy of `network` with dynamically int8-quantised `nn.Linear` layers."""
    with _quiet():
        quantized: nn.Module = torch.ao.quantization.quantize_dynamic(
            copy.deepcopy(network).eval(), {nn.Linear}, dtype=torch.qint8
        )
    return quantized


def probability_model(model: Classifier, *, quantize: bool = False) -> ProbabilityModel:
    """`model` as one eval-mode module returning calibrated probabilities (a copy)."""
    network = copy.deepcopy(logit_network(model)).eval()
    if quantize:
        network = quantize_linear(network)
    if model.config.tta > 1:
        network = MeanOverViews(network, model.config.tta)
    return ProbabilityModel(network, model.temperature).eval()


def example_input(model: Classifier, batch: int = 2) -> torch.Tensor:
    height, width = model.image_size or (DEFAULT_SIDE, DEFAULT_SIDE)
    generator = torch.Generator().manual_seed(0)
    return torch.rand((batch, model.in_channels, height, width), generator=generator)


def to_torchscript(module: nn.Module, example: torch.Tensor) -> torch.jit.ScriptModule:
    """Trace `module` on `example` and freeze it (folds batch norm, inlines weights)."""
    with _quiet(), torch.no_grad():
        traced = torch.jit.trace(module.eval(), example)
        frozen: torch.jit.ScriptModule = torch.jit.freeze(traced)
    return frozen


def metadata(model: Classifier, *, quantized: bool) -> dict[str, Any]:
    return {
        "format": EXPORT_FORMAT,
        "network": model.config.network,
        "n_classes": model.n_classes,
        "in_channels": model.in_channels,
        "image_size": list(model.image_size) if model.image_size else None,
        "temperature": model.temperature,
        "threshold": model.threshold,
        "quantized": quantized,
        "tta": model.config.tta,
        "members": len(model.members) if isinstance(model, EnsembleClassifier) else 1,
    }


def export_torchscript(model: Classifier, path: Path, *, quantize: bool = False) -> Path:
    """Write `model` (a classifier or a deep ensemble) as a TorchScript file returning
    calibrated probabilities (B, K).

    The file carries `METADATA_FILE` (network, classes, input size, temperature,
    threshold) and loads with `torch.jit.load` alone, or with `ScriptedClassifier.load`.
    """
    if model.config.multi_label:
        raise InvalidInputError(
            "TorchScript export covers single-label classifiers (softmax over classes); "
            "this is a multi-label model"
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    scripted = to_torchscript(probability_model(model, quantize=quantize), example_input(model))
    info = json.dumps(metadata(model, quantized=quantize))
    tmp = path.with_name(path.name + ".tmp")
    with _quiet():
        torch.jit.save(scripted, str(tmp), _extra_files={METADATA_FILE: info})
    tmp.replace(path)
    logger.info("exported %s (quantized=%s) to %s", model.config.network, quantize, path)
    return path


def predict_batched(
    module: nn.Module | torch.jit.ScriptModule, x: torch.Tensor, *, batch_size: int = 256
) -> np.ndarray:
    """Run `module` over `x` (N, C, H, W) in batches without gradients: (N, K) float64."""
    if batch_size < 1:
        raise InvalidInputError("batch_size must be >= 1")
    outputs = []
    with torch.inference_mode():
        for start in range(0, x.shape[0], batch_size):
            outputs.append(module(x[start : start + batch_size]).double())
    if not outputs:
        return np.zeros((0, 0), dtype=np.float64)
    return torch.cat(outputs).numpy()


def is_torchscript(path: Path) -> bool:
    """Whether `path` is a model file written by `export_torchscript`."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith(f"/extra/{METADATA_FILE}") for name in archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


@dataclass
class ScriptedClassifier:
    """A TorchScript classifier written by `export_torchscript`, with its metadata."""

    module: torch.jit.ScriptModule
    info: dict[str, Any]

    @classmethod
    def load(cls, path: Path) -> ScriptedClassifier:
        path = Path(path)
        if not path.is_file():
            raise NotFoundError(f"no TorchScript model at {path}")
        extra = {METADATA_FILE: ""}
        try:
            with _quiet():
                module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
            info = json.loads(extra[METADATA_FILE])
        except (RuntimeError, ValueError) as exc:
            raise InvalidInputError(f"{path} is not a medloop TorchScript model: {exc}") from exc
        return cls(module=module.eval(), info=info)

    @property
    def n_classes(self) -> int:
        return int(self.info["n_classes"])

    def predict_proba(self, images: np.ndarray, *, batch_size: int = 256) -> np.ndarray:
        """Calibrated probabilities (N, K) for uint8 images (N, H, W) or (N, H, W, C),
        brought to the model's input size first as `TrainedClassifier` does."""
        size = self.info.get("image_size")
        channels = int(self.info["in_channels"])
        if size and len(images) and tuple(np.asarray(images).shape[1:3]) != tuple(size):
            images = prepare_images(list(images), in_channels=channels, image_size=size)
        x = images_to_tensor(images, in_channels=channels)
        if x.shape[0] == 0:
            return np.zeros((0, self.n_classes), dtype=np.float64)
        return predict_batched(self.module, x, batch_size=batch_size)


def _serialized_bytes(module: nn.Module | torch.jit.ScriptModule) -> int:
    buffer = io.BytesIO()
    with _quiet():
        if isinstance(module, torch.jit.ScriptModule):
            torch.jit.save(module, buffer)
        else:
            torch.save(module.state_dict(), buffer)
    return buffer.getbuffer().nbytes


def compare_runtimes(
    model: Classifier,
    images: np.ndarray,
    *,
    batch_size: int = 256,
    repeats: int = 3,
    threads: int | None = 1,
) -> list[dict[str, Any]]:
    """Images per second of eager, TorchScript and quantised versions of `model`.

    After one warm-up pass each, the variants take turns over all `images`, `repeats`
    rounds (so load from other processes hits them alike); each one's best time counts.
    `max_abs_diff` is the largest probability difference from eager.
    """
    if repeats < 1:
        raise InvalidInputError("repeats must be >= 1")
    x = images_to_tensor(images, in_channels=model.in_channels)
    if x.shape[0] == 0:
        raise InvalidInputError("no images to benchmark on")
    example = x[: min(2, x.shape[0])]
    eager = probability_model(model)
    quantized = probability_model(model, quantize=True)
    variants: dict[str, nn.Module | torch.jit.ScriptModule] = {
        "eager": eager,
        "torchscript": to_torchscript(eager, example),
        "quantized": quantized,
        "quantized_torchscript": to_torchscript(quantized, example),
    }
    best = dict.fromkeys(variants, float("inf"))
    with torch_threads(threads) as used:
        proba = {
            name: predict_batched(module, x, batch_size=batch_size)  # warm-up
            for name, module in variants.items()
        }
        for _ in range(repeats):
            for name, module in variants.items():
                started = time.perf_counter()
                predict_batched(module, x, batch_size=batch_size)
                best[name] = min(best[name], time.perf_counter() - started)
    return [
        {
            "variant": name,
            "images_per_second": round(x.shape[0] / best[name], 1),
            "speedup": round(best["eager"] / best[name], 2),
            "max_abs_diff": float(np.abs(proba[name] - proba["eager"]).max()),
            "bytes": _serialized_bytes(module),
            "threads": used,
            "batch_size": batch_size,
            "n_images": int(x.shape[0]),
        }
        for name, module in variants.items()
    ]
