"""Shared pieces of the browser tests: chromium options, people, the served home."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from medloop.config import Settings
from medloop.types import Role
from medloop.workflows import Workspace

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: Screenshots land here (ignored by git); `make test` keeps the last run's.
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "browser"
PASSWORD = "correct horse battery"
PEOPLE = {"ann": Role.ANNOTATOR, "ben": Role.ANNOTATOR, "dora": Role.DOCTOR}
CLASSES = ["normal", "pneumonia"]
SECRET = "browser-test-secret"


@dataclass
class Server:
    url: str
    settings: Settings

    def workspace(self) -> Workspace:
        """A second connection to the server's home, to check what it stored."""
        return Workspace.open(self.settings)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_images(folder: Path, n: int) -> None:
    """`n` distinct 96x64 greyscale images (wider than tall) with a labels CSV."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = ["file,label"]
    for i in range(n):
        pixels = rng.integers(0, 120, size=(64, 96), dtype=np.uint8)
        pixels[16:48, 24 + i : 56 + i] = 230  # a bright "lesion", shifted per image
        Image.fromarray(pixels).save(folder / f"img{i:02d}.png")
        rows.append(f"img{i:02d}.png,{CLASSES[i % 2]}")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")


def wait_healthy(url: str, server: subprocess.Popen[bytes], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{url}/api/health", timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError):
            pass
        assert server.poll() is None, "the server exited"
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.2)
