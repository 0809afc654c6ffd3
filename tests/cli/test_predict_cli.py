"""`medloop predict` and `medloop model export` as a user meets them."""

from __future__ import annotations

import json
import shutil
from hashlib import sha256
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from cli_support import run
from medloop.config import Settings
from medloop.exceptions import InvalidInputError
from medloop.ingest import decode_png, load_image_file
from medloop.learning.data import prepare_images
from medloop.learning.ensemble import EnsembleClassifier, load_checkpoint, train_ensemble
from medloop.learning.train import TrainConfig, train_classifier
from medloop.store import repository as repo
from medloop.workflows import Workspace
from medloop.workflows import predict as predicting


def separable(n: int, seed: int, size: int = 12) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size=n)
    images = rng.integers(0, 60, size=(n, size, size)).astype(np.uint8)
    images[labels == 1, : size // 2] += 180
    images[labels == 0, size // 2 :] += 180
    return images, labels


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    x, y = separable(96, 0)
    xv, yv = separable(32, 1)
    path = tmp_path_factory.mktemp("model") / "v1.pt"
    config = TrainConfig(max_epochs=4, batch_size=16, num_threads=1)
    train_classifier(x, y, xv, yv, n_classes=2, config=config, checkpoint_path=path)
    return path


@pytest.fixture(scope="module")
def ensemble_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    x, y = separable(96, 0)
    xv, yv = separable(32, 1)
    config = TrainConfig(max_epochs=3, batch_size=16, num_threads=1)
    model = train_ensemble(x, y, xv, yv, n_classes=2, members=2, config=config)
    path = tmp_path_factory.mktemp("ensemble") / "ensemble.pt"
    model.save(path)
    return path


@pytest.fixture
def pngs(tmp_path: Path) -> Path:
    """A folder of three 24x24 PNGs: bright top, bright bottom, and a 30x20 bright top."""
    folder = tmp_path / "pngs"
    folder.mkdir()
    top = np.full((24, 24), 20, dtype=np.uint8)
    top[:12] = 230
    Image.fromarray(top).save(folder / "top.png")
    Image.fromarray(255 - top).save(folder / "bottom.png")
    tall = np.full((30, 20), 20, dtype=np.uint8)
    tall[:15] = 230
    Image.fromarray(tall).save(folder / "tall.png")
    return folder


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    """Two PNGs (24x24, one per class), an RGB JPEG in a subfolder, a DICOM, a text file."""
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    top = np.full((24, 24), 20, dtype=np.uint8)
    top[:12] = 230
    Image.fromarray(top).save(folder / "top.png")
    Image.fromarray(255 - top).save(folder / "bottom.png")
    Image.fromarray(np.stack([top] * 3, axis=2)).save(folder / "sub" / "colour.jpg", quality=95)
    shutil.copy(get_testdata_file("CT_small.dcm", download=False), folder / "scan.dcm")
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_predict_writes_probabilities_and_overlays(
    checkpoint: Path, inputs: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    out = tmp_path / "preds.csv"
    overlays = tmp_path / "cams"
    code, said, err = run(
        monkeypatch,
        capsys,
        "predict",
        str(checkpoint),
        str(inputs),
        "--output",
        str(out),
        "--overlays",
        str(overlays),
        "--classes",
        "bottom,top",
    )
    assert code == 0, err
    frame = pd.read_csv(out)
    assert list(frame.columns) == ["file", "label", "p0", "p1"]
    names = [Path(f).name for f in frame["file"]]
    assert sorted(names) == ["bottom.png", "colour.jpg", "scan.dcm", "top.png"]
    cut = load_checkpoint(checkpoint).threshold  # the label follows it, and says so
    assert (frame["label"] == np.where(frame["p1"] >= cut, "top", "bottom")).all()
    assert f"label is 'top' where p1 >= {cut:.3f} (the cut chosen" in " ".join(said.split())
    np.testing.assert_allclose(frame[["p0", "p1"]].sum(axis=1), 1.0, atol=1e-5)
    by_name = frame.set_index(frame["file"].map(lambda f: Path(f).name))
    assert by_name.loc["top.png", "label"] == "top"
    assert by_name.loc["bottom.png", "label"] == "bottom"
    assert by_name.loc["colour.jpg", "label"] == "top"
    text = out.read_text()
    for identifier in ("CompressedSamples", "CT1", "1CT1"):  # CT_small's patient name and id
        assert identifier not in text
    cams = sorted(p.name for p in overlays.iterdir())
    assert len(cams) == 4 and all(name.endswith(".gradcam.png") for name in cams)
    dicom_cam = decode_png(next(overlays.glob("*scan.gradcam.png")).read_bytes())
    assert dicom_cam.shape == (256, 256, 3)  # the original 128x128 pixels, enlarged 2x


def test_unreadable_file_is_named(
    checkpoint: Path, inputs: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    (inputs / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    out = tmp_path / "preds.csv"
    code, _, err = run(monkeypatch, capsys, "predict", str(checkpoint), str(inputs), "-o", str(out))
    assert code == 2
    assert "broken.png" in err and "--skip-unreadable" in err
    assert not out.exists()


def test_skip_unreadable_predicts_the_rest_and_lists_what_it_left_out(
    checkpoint: Path, inputs: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    (inputs / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (inputs / "sub" / "empty.dcm").write_bytes(b"")
    out, overlays = tmp_path / "preds.csv", tmp_path / "cams"
    command = ["predict", str(checkpoint), str(inputs), "-o", str(out), "--skip-unreadable"]
    code, stdout, err = run(
        monkeypatch, capsys, *command, "--overlays", str(overlays), "--batch-size", "2", "--json"
    )
    assert code == 0, err
    result = json.loads(stdout)
    names = sorted(Path(f).name for f in pd.read_csv(out)["file"])
    assert names == ["bottom.png", "colour.jpg", "scan.dcm", "top.png"]
    assert result["files"] == 4 and result["overlays"] == 4 and len(list(overlays.iterdir())) == 4
    assert sorted(Path(s["file"]).name for s in result["skipped"]) == ["broken.png", "empty.dcm"]
    assert all(s["reason"] for s in result["skipped"])
    code, stdout, err = run(monkeypatch, capsys, *command)
    assert code == 0, err
    assert "skipped 2 unreadable files" in err and "broken.png" in err
    only_broken = tmp_path / "only"
    only_broken.mkdir()
    (only_broken / "broken.png").write_bytes(b"junk")
    code, _, err = run(
        monkeypatch, capsys, "predict", str(checkpoint), str(only_broken), "--skip-unreadable"
    )
    assert code == 2 and "none of the 1 input files could be read" in err


def test_predicting_in_batches_gives_the_same_csv_and_reports_progress(
    ensemble_checkpoint: Path, inputs: Path, tmp_path: Path
) -> None:
    model = predicting.load_model(str(ensemble_checkpoint))
    whole, batched = tmp_path / "whole.csv", tmp_path / "batched.csv"
    predicting.predict_files([inputs], model=model, output=whole)
    calls: list[tuple[str, int, int]] = []
    summary = predicting.predict_files(
        [inputs],
        model=model,
        output=batched,
        batch_size=3,
        progress=lambda stage, done, total: calls.append((stage, done, total)),
    )
    assert summary.files == 4 and summary.skipped == []
    pd.testing.assert_frame_equal(pd.read_csv(whole), pd.read_csv(batched))
    assert calls == [("predicting", 3, 4), ("predicting", 4, 4)]
    with pytest.raises(InvalidInputError, match="batch_size"):
        predicting.predict_files([inputs], model=model, output=batched, batch_size=0)


def test_missing_input_and_wrong_class_names(
    checkpoint: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    code, _, err = run(monkeypatch, capsys, "predict", str(checkpoint), str(tmp_path / "nope.png"))
    assert code == 2 and "nope.png" in err
    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((12, 12), dtype=np.uint8)).save(image)
    code, _, err = run(
        monkeypatch, capsys, "predict", str(checkpoint), str(image), "--classes", "a,b,c"
    )
    assert code == 2 and "2 classes" in err


def test_export_torchscript_then_predict_with_it(
    checkpoint: Path, inputs: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    exported = tmp_path / "model.ts"
    code, out, err = run(
        monkeypatch,
        capsys,
        "model",
        "export",
        str(checkpoint),
        "--format",
        "torchscript",
        "--quantize",
        "-o",
        str(exported),
    )
    assert code == 0, err
    assert "quantized" in out and exported.is_file()
    preds = tmp_path / "ts.csv"
    code, _, err = run(monkeypatch, capsys, "predict", str(exported), str(inputs), "-o", str(preds))
    assert code == 0, err
    eager = tmp_path / "eager.csv"
    assert (
        run(monkeypatch, capsys, "predict", str(checkpoint), str(inputs), "-o", str(eager))[0] == 0
    )
    np.testing.assert_allclose(
        pd.read_csv(preds)[["p0", "p1"]], pd.read_csv(eager)[["p0", "p1"]], atol=0.02
    )
    code, _, err = run(
        monkeypatch, capsys, "predict", str(exported), str(inputs), "--overlays", str(tmp_path)
    )
    assert code == 2 and "checkpoint" in err
    code, _, err = run(
        monkeypatch, capsys, "model", "export", str(checkpoint), "--format", "onnx", "-o", "x"
    )
    assert code == 2 and "torchscript" in err


def test_predict_with_an_ensemble_writes_probabilities_and_overlays(
    ensemble_checkpoint: Path, pngs: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    out, overlays = tmp_path / "preds.csv", tmp_path / "cams"
    code, _, err = run(
        monkeypatch,
        capsys,
        "predict",
        str(ensemble_checkpoint),
        str(pngs),
        "-o",
        str(out),
        "--overlays",
        str(overlays),
        "--classes",
        "bottom,top",
    )
    assert code == 0, err
    frame = pd.read_csv(out)
    assert [Path(f).name for f in frame["file"]] == ["bottom.png", "tall.png", "top.png"]
    assert frame["label"].tolist() == ["bottom", "top", "top"]
    model = load_checkpoint(ensemble_checkpoint)
    assert isinstance(model, EnsembleClassifier)
    pixels = [load_image_file(Path(f)) for f in frame["file"]]
    images = prepare_images(pixels, in_channels=1, image_size=model.image_size)
    np.testing.assert_allclose(frame[["p0", "p1"]], model.predict_proba(images), atol=1e-6)
    for name in ("bottom", "tall", "top"):
        assert len(list(overlays.glob(f"*_{name}.gradcam.png"))) == 1
    tall_cam = decode_png(next(overlays.glob("*tall.gradcam.png")).read_bytes())
    assert tall_cam.shape[:2] == (30 * 8, 20 * 8)  # the original pixels, enlarged for display
    assert (tall_cam[..., 0] != tall_cam[..., 2]).any()  # coloured by heat, not only grey


@pytest.mark.parametrize("quantize", [False, True])
def test_export_an_ensemble_then_predict_with_it(
    ensemble_checkpoint: Path, pngs: Path, tmp_path: Path, monkeypatch, capsys, quantize: bool
) -> None:
    exported = tmp_path / "ensemble.ts"
    flags = ["--quantize"] if quantize else []
    code, _, err = run(
        monkeypatch,
        capsys,
        "model",
        "export",
        str(ensemble_checkpoint),
        *flags,
        "-o",
        str(exported),
    )
    assert code == 0, err
    scripted, eager = tmp_path / "ts.csv", tmp_path / "eager.csv"
    for model, csv in ((exported, scripted), (ensemble_checkpoint, eager)):
        code, _, err = run(monkeypatch, capsys, "predict", str(model), str(pngs), "-o", str(csv))
        assert code == 0, err
    np.testing.assert_allclose(
        pd.read_csv(scripted)[["p0", "p1"]],
        pd.read_csv(eager)[["p0", "p1"]],
        atol=0.02 if quantize else 1e-5,
    )
    assert pd.read_csv(scripted)["label"].tolist() == pd.read_csv(eager)["label"].tolist()


def test_a_bad_model_file_is_a_clear_error(
    ensemble_checkpoint: Path, pngs: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    truncated = tmp_path / "truncated.pt"
    data = ensemble_checkpoint.read_bytes()
    truncated.write_bytes(data[: len(data) // 3])
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"hello")
    table = tmp_path / "table.csv"
    table.write_text("a,b\n1,2\n")
    for bad in (truncated, junk, table):
        for command in (["predict", str(bad), str(pngs)], ["model", "export", str(bad), "-o", "x"]):
            code, _, err = run(monkeypatch, capsys, *command)
            assert code == 2 and "not a medloop checkpoint" in err, err
    missing = str(tmp_path / "nosuch.pt")
    for command in (["predict", missing, str(pngs)], ["model", "export", missing, "-o", "x"]):
        code, _, err = run(monkeypatch, capsys, *command)
        assert code == 2 and "no model file" in err and "project" not in err, err


def test_predict_with_a_project_needs_its_model(home: Path, monkeypatch, capsys) -> None:
    code, _, err = run(monkeypatch, capsys, "predict", "no-such-project", str(home))
    assert code == 2 and "no-such-project" in err


def test_a_model_versions_file_is_checked_and_another_said_unverified(
    checkpoint: Path, pngs: Path, home: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    """Given by its path, a model version's checkpoint was loaded without the check its
    project's name gets: a damaged file predicted as if whole."""
    stored = home / "models" / "chest" / "v1.pt"
    ws = Workspace.open(Settings())
    try:
        with ws.db.session() as s:
            project = repo.create_project(s, name="chest", classes=["a", "b"], n_channels=1)
            repo.add_model_version(
                s, project_id=project.id, network="cnn", n_train=2,
                checkpoint_path="chest/v1.pt", version=1,
                metrics={"checkpoint_sha256": sha256(checkpoint.read_bytes()).hexdigest()},
            )  # fmt: skip
    finally:
        ws.close()
    stored.parent.mkdir(parents=True)
    shutil.copyfile(checkpoint, stored)
    out = str(tmp_path / "p.csv")

    code, said, err = run(monkeypatch, capsys, "predict", str(stored), str(pngs), "-o", out,
                          "--json")  # fmt: skip
    assert code == 0 and json.loads(said)["verified"] is True, err
    code, said, err = run(monkeypatch, capsys, "predict", str(checkpoint), str(pngs), "-o", out)
    assert code == 0 and "v1.pt is unverified" in " ".join(said.split()), err

    with stored.open("ab") as handle:
        handle.write(b"\0")  # still readable by torch: only the digest tells
    code, _, err = run(monkeypatch, capsys, "predict", str(stored), str(pngs), "-o", out)
    assert code != 0 and "model version 1 of project 'chest' is damaged" in " ".join(err.split())
