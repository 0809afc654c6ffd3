"""MedMNIST loading: real PneumoniaMNIST/BreastMNIST, synthetic npz files, downloads."""

from __future__ import annotations

import hashlib
import io
import urllib.error
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import medloop.ingest.medmnist as medmnist_module
from medloop.exceptions import (
    DatasetUnavailableError,
    IngestError,
    InvalidInputError,
    UnknownOptionError,
)
from medloop.ingest import MEDMNIST_2D, load_medmnist
from medloop.types import Split


def _write_npz(path: Path, *, rgb: bool = False, n_classes: int = 3, **override: Any) -> None:
    rng = np.random.default_rng(0)
    arrays: dict[str, np.ndarray] = {}
    for split, n in (("train", 12), ("val", 4), ("test", 6)):
        shape = (n, 5, 5, 3) if rgb else (n, 5, 5)
        arrays[f"{split}_images"] = rng.integers(0, 256, size=shape, dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % n_classes).reshape(n, 1).astype(np.uint8)
    arrays.update(override)
    np.savez_compressed(path, **arrays)  # type: ignore[arg-type]


class _FakeResponse(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.headers = {"Content-Length": str(len(data))}


def _serve(monkeypatch: pytest.MonkeyPatch, data: bytes, calls: list[str]) -> None:
    def fake_urlopen(url: str, timeout: float = 0) -> _FakeResponse:
        calls.append(url)
        return _FakeResponse(data)

    monkeypatch.setattr(medmnist_module.urllib.request, "urlopen", fake_urlopen)


def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    def fake_urlopen(url: str, timeout: float = 0) -> None:
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(medmnist_module.urllib.request, "urlopen", fake_urlopen)


def test_official_table_lists_the_twelve_2d_sets() -> None:
    assert set(MEDMNIST_2D) == {
        "pathmnist",
        "chestmnist",
        "dermamnist",
        "octmnist",
        "pneumoniamnist",
        "retinamnist",
        "breastmnist",
        "bloodmnist",
        "tissuemnist",
        "organamnist",
        "organcmnist",
        "organsmnist",
    }
    info = MEDMNIST_2D["pneumoniamnist"]
    assert info.url == "https://zenodo.org/records/10519652/files/pneumoniamnist.npz?download=1"
    assert info.md5 == "28209eda62fecd6e6a2d98b1501bb15f"
    assert len(MEDMNIST_2D["pathmnist"].classes) == 9
    assert len(MEDMNIST_2D["organamnist"].classes) == 11
    assert all(len(i.md5) == 32 for i in MEDMNIST_2D.values())


def test_real_pneumoniamnist(medmnist_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _offline(monkeypatch)  # a local file never touches the network
    data = load_medmnist("PneumoniaMNIST", data_dir=medmnist_dir, progress=False)
    assert data.name == "pneumoniamnist"
    assert data.classes == ["normal", "pneumonia"]
    assert data.n_channels == 1 and data.n_classes == 2
    assert data.counts == {Split.TRAIN: 4708, Split.VAL: 524, Split.TEST: 624}
    assert data.image_shape == (28, 28)
    train, test = data.splits[Split.TRAIN], data.splits[Split.TEST]
    assert train.images.dtype == np.uint8 and train.labels.dtype == np.int64
    assert train.labels.shape == (4708,)
    assert np.bincount(train.labels).tolist() == [1214, 3494]
    assert np.bincount(test.labels).tolist() == [234, 390]


def test_limit_keeps_a_representative_sample_in_file_order(medmnist_dir: Path) -> None:
    full = load_medmnist("pneumoniamnist", data_dir=medmnist_dir)
    small = load_medmnist("pneumoniamnist", data_dir=medmnist_dir, limit=300)
    again = load_medmnist("pneumoniamnist", data_dir=medmnist_dir, limit=300)
    assert small.counts == {Split.TRAIN: 300, Split.VAL: 300, Split.TEST: 300}
    for split in Split:
        part = small.splits[split]
        assert (np.diff(part.rows) > 0).all()
        np.testing.assert_array_equal(part.rows, again.splits[split].rows)
        np.testing.assert_array_equal(part.images, full.splits[split].images[part.rows])
        np.testing.assert_array_equal(part.labels, full.splits[split].labels[part.rows])
    # the shared file's train split is sorted by label: the first rows would all be normal
    assert set(full.splits[Split.TRAIN].labels[:300]) == {0}
    assert set(small.splits[Split.TRAIN].labels) == {0, 1}


@pytest.mark.parametrize("limit", [0, -3, 2.5, True])
def test_bad_limit(tmp_path: Path, limit: Any) -> None:
    _write_npz(tmp_path / "x.npz")
    with pytest.raises(InvalidInputError, match="limit"):
        load_medmnist("x", data_dir=tmp_path, limit=limit)


def test_synthetic_rgb_multiclass_unknown_name(tmp_path: Path) -> None:
    _write_npz(tmp_path / "mymnist.npz", rgb=True, n_classes=4)
    data = load_medmnist("mymnist", data_dir=tmp_path, download=False)
    assert data.classes == ["0", "1", "2", "3"]
    assert data.n_channels == 3
    assert data.image_shape == (5, 5, 3)
    assert data.splits[Split.TRAIN].labels.tolist() == [0, 1, 2, 3] * 3
    assert data.counts == {Split.TRAIN: 12, Split.VAL: 4, Split.TEST: 6}


def test_known_rgb_name_uses_official_classes(tmp_path: Path) -> None:
    _write_npz(tmp_path / "dermamnist.npz", rgb=True, n_classes=7)
    data = load_medmnist("dermamnist", data_dir=tmp_path, download=False)
    assert data.classes[4] == "melanoma" and len(data.classes) == 7


def test_wrong_keys(tmp_path: Path) -> None:
    path = tmp_path / "bad.npz"
    np.savez(path, x_train=np.zeros((2, 5, 5), np.uint8), y_train=np.zeros(2, np.uint8))
    with pytest.raises(IngestError, match=r"bad\.npz.*missing keys") as info:
        load_medmnist("bad", data_dir=tmp_path)
    assert info.value.path == str(path)


def test_corrupt_file(tmp_path: Path) -> None:
    (tmp_path / "broken.npz").write_bytes(b"PK\x03\x04 definitely not a zip archive")
    with pytest.raises(IngestError, match=r"broken\.npz.*not a readable npz"):
        load_medmnist("broken", data_dir=tmp_path)


def test_label_out_of_range_for_known_set(tmp_path: Path) -> None:
    _write_npz(tmp_path / "breastmnist.npz", n_classes=3)  # breastmnist has 2 classes
    with pytest.raises(IngestError, match=r"breastmnist\.npz.*label 2 out of range"):
        load_medmnist("breastmnist", data_dir=tmp_path, download=False)


def test_negative_label(tmp_path: Path) -> None:
    labels = np.array([[0], [-1], [1], [0]], dtype=np.int64)
    _write_npz(tmp_path / "neg.npz", val_labels=labels)
    with pytest.raises(IngestError, match="out of range"):
        load_medmnist("neg", data_dir=tmp_path)


def test_length_mismatch(tmp_path: Path) -> None:
    _write_npz(tmp_path / "short.npz", test_labels=np.zeros((5, 1), np.uint8))
    with pytest.raises(IngestError, match="test: 6 images but 5 labels"):
        load_medmnist("short", data_dir=tmp_path)


def test_channel_mismatch_for_known_set(tmp_path: Path) -> None:
    _write_npz(tmp_path / "pneumoniamnist.npz", rgb=True, n_classes=2)
    with pytest.raises(IngestError, match="1 channel"):
        load_medmnist("pneumoniamnist", data_dir=tmp_path, download=False)


def test_multilabel_loads_as_indicator_rows(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    multi = {f"{s}_labels": rng.integers(0, 2, size=(n, 4)) for s, n in _SIZES}
    _write_npz(tmp_path / "mychest.npz", **multi)
    data = load_medmnist("mychest", data_dir=tmp_path)
    assert data.multi_label and data.classes == ["0", "1", "2", "3"]
    labels = data.splits[Split.TEST].labels
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(labels, multi["test_labels"])
    _write_npz(tmp_path / "mymnist.npz")
    single = load_medmnist("mymnist", data_dir=tmp_path)
    assert not single.multi_label and single.splits[Split.TRAIN].labels.ndim == 1


_SIZES = (("train", 12), ("val", 4), ("test", 6))


@pytest.mark.parametrize(
    ("name", "override", "message"),
    [
        ("chestmnist", {}, r"chestmnist is a multi-label.*shape \(12, 1\)"),
        ("bloodmnist", {"train_labels": np.zeros((12, 8))}, "multi-class dataset"),
        (
            "multi",
            {f"{s}_labels": np.zeros((n, 2 if s == "val" else 3)) for s, n in _SIZES},
            "label counts",
        ),
        (
            "multi",
            {"train_labels": np.zeros((12, 3)), "val_labels": np.zeros((4, 1))},
            "val_labels",
        ),
        ("multi", {"train_labels": np.full((12, 3), 2)}, "0 or 1"),
        ("chestmnist", {f"{s}_labels": np.zeros((n, 3)) for s, n in _SIZES}, "14 labels"),
    ],
)
def test_bad_multilabel_files(tmp_path: Path, name: str, override: Any, message: str) -> None:
    _write_npz(tmp_path / f"{name}.npz", rgb=name == "bloodmnist", **override)
    with pytest.raises(IngestError, match=message):
        load_medmnist(name, data_dir=tmp_path, download=False)


def test_multilabel_refused_where_one_label_is_needed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    _serve(monkeypatch, b"", calls)
    with pytest.raises(InvalidInputError, match="multi-label"):
        load_medmnist("chestmnist", data_dir=tmp_path, require_single_label=True)
    assert calls == []  # refused before any download
    _write_npz(tmp_path / "mychest.npz", **{f"{s}_labels": np.ones((n, 5)) for s, n in _SIZES})
    with pytest.raises(InvalidInputError, match="mychest is a multi-label"):
        load_medmnist("mychest", data_dir=tmp_path, require_single_label=True)


def test_unknown_name_suggests(tmp_path: Path) -> None:
    with pytest.raises(UnknownOptionError, match="Did you mean 'pneumoniamnist'"):
        load_medmnist("pneumoniamnst", data_dir=tmp_path)


def test_missing_and_download_disabled(tmp_path: Path) -> None:
    with pytest.raises(DatasetUnavailableError) as info:
        load_medmnist("bloodmnist", data_dir=tmp_path, download=False)
    message = str(info.value)
    assert MEDMNIST_2D["bloodmnist"].url in message and "MEDLOOP_DATA_DIR" in message


def test_offline_download_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _offline(monkeypatch)
    with pytest.raises(DatasetUnavailableError) as info:
        load_medmnist("pneumoniamnist", data_dir=tmp_path / "data")
    message = str(info.value)
    assert "https://zenodo.org/records/10519652/files/pneumoniamnist.npz" in message
    assert "MEDLOOP_DATA_DIR" in message and "Name or service not known" in message
    assert list((tmp_path / "data").iterdir()) == []  # no partial file left


def test_checksum_mismatch_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    _serve(monkeypatch, b"these are not the bytes you are looking for", calls)
    with pytest.raises(DatasetUnavailableError, match="checksum mismatch"):
        load_medmnist("retinamnist", data_dir=tmp_path, progress=True)
    assert calls == [MEDMNIST_2D["retinamnist"].url]
    assert list(tmp_path.iterdir()) == []


def test_download_verifies_and_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "source.npz"
    _write_npz(source, n_classes=2)
    payload = source.read_bytes()
    info = replace(MEDMNIST_2D["breastmnist"], md5=hashlib.md5(payload).hexdigest())
    monkeypatch.setattr(medmnist_module, "MEDMNIST_2D", {"breastmnist": info})
    calls: list[str] = []
    _serve(monkeypatch, payload, calls)
    target = tmp_path / "data"
    data = load_medmnist("breastmnist", data_dir=target, progress=False)
    assert data.classes == ["malignant", "normal, benign"]
    assert (target / "breastmnist.npz").read_bytes() == payload
    assert sorted(p.name for p in target.iterdir()) == ["breastmnist.npz"]
    load_medmnist("breastmnist", data_dir=target)  # now local: no second download
    assert len(calls) == 1


def test_official_md5_of_real_breastmnist(
    medmnist_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Serve the real (official) BreastMNIST file: the table's MD5 must accept it."""
    real = medmnist_dir / "breastmnist.npz"
    if not real.exists():
        pytest.skip(f"{real} absent")
    calls: list[str] = []
    _serve(monkeypatch, real.read_bytes(), calls)
    data = load_medmnist("breastmnist", data_dir=tmp_path, progress=False)
    assert data.counts == {Split.TRAIN: 546, Split.VAL: 78, Split.TEST: 156}
    assert calls == [MEDMNIST_2D["breastmnist"].url]
