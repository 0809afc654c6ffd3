"""Image arrays <-> files and bytes: lossless PNG encoding and PNG/JPEG reading.

Every reader in `medloop.ingest` hands images on as ``uint8`` arrays, ``(H, W)`` for
grey and ``(H, W, 3)`` for RGB; the store keeps them as PNG bytes.

>>> import numpy as np
>>> image = np.arange(12, dtype=np.uint8).reshape(3, 4)
>>> bool((decode_png(encode_png(image)) == image).all())
True
"""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from medloop.exceptions import IngestError, InvalidInputError

logger = logging.getLogger(__name__)

#: File extensions `load_image_file` accepts (lower case).
IMAGE_EXTENSIONS: frozenset[str] = frozenset({".png", ".jpg", ".jpeg"})

_FORMATS = frozenset({"PNG", "JPEG", "MPO"})  # MPO: JPEG with extra frames (phones)


def check_image_array(image: np.ndarray) -> None:
    """Raise `InvalidInputError` unless `image` is uint8 ``(H, W)`` or ``(H, W, 3)``."""
    if not isinstance(image, np.ndarray):
        raise InvalidInputError(f"image must be a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise InvalidInputError(f"image must have dtype uint8, got {image.dtype}")
    grey = image.ndim == 2
    rgb = image.ndim == 3 and image.shape[2] == 3
    if not (grey or rgb):
        raise InvalidInputError(f"image must have shape (H, W) or (H, W, 3), got {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise InvalidInputError(f"image must not be empty, got shape {image.shape}")


def encode_png(image: np.ndarray) -> bytes:
    """Encode a uint8 grey ``(H, W)`` or RGB ``(H, W, 3)`` array as lossless PNG bytes.

    The bytes are deterministic (no timestamps), so equal images give equal blobs.
    """
    check_image_array(image)
    mode = "L" if image.ndim == 2 else "RGB"
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image), mode=mode).save(buffer, format="PNG")
    return buffer.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    """Decode PNG bytes to a uint8 array; the exact inverse of `encode_png`."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.format != "PNG":
                raise InvalidInputError(f"data is not a PNG image (found {img.format})")
            return _to_array(img)
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
        if isinstance(exc, InvalidInputError):
            raise
        raise InvalidInputError(f"data is not a valid PNG image: {exc}") from exc


def load_image_file(path: Path) -> np.ndarray:
    """Read a PNG or JPEG file into a uint8 ``(H, W)`` or ``(H, W, 3)`` array.

    Palette, bilevel and grey+alpha images become grey; RGBA and CMYK become RGB (alpha
    is dropped); 16-bit grey is min-max scaled to 0..255; JPEG EXIF orientation is
    applied. Raises `IngestError` naming the file when it is missing, unreadable,
    corrupt or not a PNG/JPEG.
    """
    path = Path(path)
    with _opened(path) as img:
        try:
            img.load()
            oriented = ImageOps.exif_transpose(img) if img.format != "PNG" else img
            return _to_array(oriented)
        except _READ_ERRORS as exc:
            raise IngestError(path, f"cannot read image: {exc}") from exc


def check_image_file(path: Path) -> None:
    """Raise `IngestError` as `load_image_file` would for a file that is missing or not a
    PNG or JPEG at all, reading its header only (cheap: a folder is checked whole before
    any image is stored); damaged pixel data is found when the image is read."""
    with _opened(Path(path)):
        pass


_READ_ERRORS = (
    OSError,
    UnidentifiedImageError,
    SyntaxError,
    ValueError,
    Image.DecompressionBombWarning,
    Image.DecompressionBombError,
)


@contextmanager
def _opened(path: Path) -> Iterator[Image.Image]:
    """`path` opened by Pillow as a PNG or JPEG (pixels not read yet), or `IngestError`."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(path)
    except FileNotFoundError as exc:
        raise IngestError(path, "file not found") from exc
    except _READ_ERRORS as exc:
        raise IngestError(path, f"cannot read image: {exc}") from exc
    with img:
        if img.format not in _FORMATS:
            raise IngestError(path, f"not a PNG or JPEG image (found {img.format})")
        yield img


def _to_array(img: Image.Image) -> np.ndarray:
    """Convert an opened Pillow image to a uint8 grey or RGB array."""
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return scale_to_uint8(np.asarray(img, dtype=np.float64))
    if mode in ("1", "L", "LA", "La"):
        converted = img.convert("L")
    elif mode == "P":
        has_alpha = "transparency" in img.info
        rgb = img.convert("RGBA" if has_alpha else "RGB").convert("RGB")
        array = np.asarray(rgb, dtype=np.uint8)
        if (array[..., 0] == array[..., 1]).all() and (array[..., 1] == array[..., 2]).all():
            return np.ascontiguousarray(array[..., 0])
        return np.ascontiguousarray(array)
    else:
        converted = img.convert("RGB")
    return np.ascontiguousarray(np.asarray(converted, dtype=np.uint8))


def scale_to_uint8(values: np.ndarray) -> np.ndarray:
    """Scale any numeric array linearly to 0..255 (a constant array becomes zeros)."""
    values = values.astype(np.float64)
    low, high = float(np.min(values)), float(np.max(values))
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    scaled = (values - low) * (255.0 / (high - low))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
