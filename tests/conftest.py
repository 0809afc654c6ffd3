"""Shared fixtures: real data from ../shared (skipped with a reason when absent)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from medloop.config import Settings

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


def _medmnist_dir() -> Path:
    env = os.environ.get("MEDLOOP_DATA_DIR")
    return Path(env) if env else SHARED_DATA / "medmnist"


@pytest.fixture(scope="session")
def medmnist_dir() -> Path:
    """Folder holding `<name>.npz` MedMNIST files."""
    directory = _medmnist_dir()
    if not (directory / "pneumoniamnist.npz").exists():
        pytest.skip(f"real MedMNIST data not found in {directory} (../shared absent)")
    return directory


@pytest.fixture(scope="session")
def crowd_dir() -> Path:
    """Folder of real crowdsourcing datasets (answers.csv, gold.csv)."""
    directory = SHARED_DATA / "crowd"
    if not directory.exists():
        pytest.skip(f"real crowd datasets not found in {directory} (../shared absent)")
    return directory


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty MEDLOOP_HOME with SQLite; environment settings point at it."""
    path = tmp_path / "home"
    monkeypatch.setenv("MEDLOOP_HOME", str(path))
    monkeypatch.delenv("MEDLOOP_DATABASE_URL", raising=False)
    yield path


@pytest.fixture
def settings(home: Path, medmnist_dir: Path) -> Settings:
    return Settings(home=home, data_dir=medmnist_dir)
