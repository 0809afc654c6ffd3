"""A hospital's export mixes image sizes, grey and colour: a project of them trains,
and active learning scores its pool with the trained model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from medloop.config import Settings
from medloop.learning import TrainConfig
from medloop.types import Role
from medloop.workflows import (
    Workspace,
    accounts,
    ingest_image_folder,
    load_images,
    select_items,
    train,
)

SIZES = [(40, 40), (36, 48), (48, 32)]


def write_mixed_folder(folder: Path, n: int = 160) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = ["file,label,patient_id"]
    for i in range(n):
        height, width = SIZES[i % len(SIZES)]
        pixels = rng.integers(0, 100, size=(height, width), dtype=np.uint8)
        if i % 2:
            pixels[height // 4 : height // 2, width // 4 : width // 2] = 240
        image = Image.fromarray(pixels)
        (image.convert("RGB") if i % 5 == 0 else image).save(folder / f"img{i:02d}.png")
        label = "" if i % 4 == 3 else ("yes" if i % 2 else "no")  # a quarter unlabelled
        rows.append(f"img{i:02d}.png,{label},P{i:02d}")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")


def test_a_project_of_mixed_sizes_and_colours_trains(tmp_path: Path) -> None:
    write_mixed_folder(tmp_path / "images")
    ws = Workspace.open(Settings(home=tmp_path / "home", secret_key="k" * 32))
    try:
        accounts.add_user(ws, username="dora", role=Role.DOCTOR, password="correct horse battery")
        ingest_image_folder(ws, folder=tmp_path / "images", project="mixed", final_by="dora")
        metrics = train(ws, project="mixed", config=TrainConfig(max_epochs=1, seed=0))
        assert metrics["version"] == 1 and metrics["n_train"] > 10
        picked = select_items(ws, project="mixed", k=3, strategy="coreset")
        assert len(picked) == 3
    finally:
        ws.close()


def test_loaded_images_share_the_most_common_size_or_the_one_asked(tmp_path: Path) -> None:
    write_mixed_folder(tmp_path / "images", n=7)
    ws = Workspace.open(Settings(home=tmp_path / "home", secret_key="k" * 32))
    try:
        shas = [
            ws.blobs.put((tmp_path / "images" / f"img{i:02d}.png").read_bytes()) for i in range(7)
        ]
        grey = load_images(ws, shas=shas, channels=1)
        assert grey.shape == (7, 40, 40) and grey.dtype == np.uint8
        colour = load_images(ws, shas=shas, channels=3, size=(28, 30))
        assert colour.shape == (7, 28, 30, 3)
    finally:
        ws.close()
