"""PNG round trips and PNG/JPEG file reading."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medloop.exceptions import IngestError, InvalidInputError
from medloop.ingest import decode_png, encode_png, load_image_file


@pytest.mark.parametrize("shape", [(5, 7), (4, 6, 3), (1, 1)])
def test_png_round_trip_is_exact(shape: tuple[int, ...]) -> None:
    image = np.random.default_rng(0).integers(0, 256, size=shape, dtype=np.uint8)
    data = encode_png(image)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    back = decode_png(data)
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back, image)


def test_png_encoding_is_deterministic() -> None:
    image = np.arange(64, dtype=np.uint8).reshape(8, 8)
    assert encode_png(image) == encode_png(image.copy())


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((4, 4), dtype=np.float32),
        np.zeros((4, 4, 4), dtype=np.uint8),
        np.zeros((4,), dtype=np.uint8),
        np.zeros((0, 4), dtype=np.uint8),
    ],
)
def test_encode_png_rejects_bad_arrays(bad: np.ndarray) -> None:
    with pytest.raises(InvalidInputError):
        encode_png(bad)


def test_decode_png_rejects_garbage() -> None:
    with pytest.raises(InvalidInputError, match="PNG"):
        decode_png(b"not a png at all")


def test_load_png_grey_rgb_and_16_bit(tmp_path: Path) -> None:
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4)
    Image.fromarray(grey, mode="L").save(tmp_path / "g.png")
    np.testing.assert_array_equal(load_image_file(tmp_path / "g.png"), grey)

    rgb = np.random.default_rng(1).integers(0, 256, size=(3, 4, 3), dtype=np.uint8)
    Image.fromarray(rgb, mode="RGB").save(tmp_path / "c.png")
    np.testing.assert_array_equal(load_image_file(tmp_path / "c.png"), rgb)

    rgba = np.dstack([rgb, np.full((3, 4), 128, dtype=np.uint8)])
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    np.testing.assert_array_equal(load_image_file(tmp_path / "a.png"), rgb)

    deep = np.array([[1000, 2000], [3000, 5000]], dtype=np.uint16)
    Image.fromarray(deep).save(tmp_path / "d.png")
    np.testing.assert_array_equal(load_image_file(tmp_path / "d.png"), [[0, 64], [128, 255]])


def test_load_jpeg(tmp_path: Path) -> None:
    flat = np.full((16, 16), 200, dtype=np.uint8)
    Image.fromarray(flat).save(tmp_path / "x.jpg", quality=95)
    image = load_image_file(tmp_path / "x.jpg")
    assert image.shape == (16, 16)
    assert np.abs(image.astype(int) - 200).max() <= 2


def test_load_image_file_errors_name_the_file(tmp_path: Path) -> None:
    corrupt = tmp_path / "broken.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    with pytest.raises(IngestError, match=r"broken\.png") as info:
        load_image_file(corrupt)
    assert info.value.path == str(corrupt)

    with pytest.raises(IngestError, match="not found"):
        load_image_file(tmp_path / "missing.png")

    gif = tmp_path / "anim.png"
    Image.fromarray(np.zeros((2, 2), dtype=np.uint8)).save(gif, format="GIF")
    with pytest.raises(IngestError, match="not a PNG or JPEG"):
        load_image_file(gif)
