"""Shared pieces of the browser tests: chromium options, people, the served home."""

from __future__ import annotations

import re
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from sqlalchemy import select

from medloop.config import Settings
from medloop.store.models import Answer, AnswerBox, AuditEntry, User
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


def login(page: Any, server: Server, username: str) -> None:
    page.goto(f"{server.url}/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    with page.expect_navigation():
        page.get_by_role("button", name="Sign in").click()


def current_task(page: Any, previous: int | None = None) -> int:
    """The task id the page shows, once it differs from `previous` and its image loaded."""
    from playwright.sync_api import expect  # optional: only browser tests get here

    workspace = page.locator("#workspace")
    other = "" if previous is None else f"(?!{previous}$)"
    expect(workspace).to_have_attribute("data-task", re.compile(rf"^{other}\d+$"))
    expect(page.locator("#status")).to_have_text("Which of these does the image show?")
    page.wait_for_function(
        "() => { const i = document.getElementById('image');"
        " return i.complete && i.naturalWidth > 0; }"
    )
    return int(str(workspace.get_attribute("data-task")))


def image_rect(page: Any) -> dict[str, float]:
    """Where the image's pixels are on screen (object-fit: contain inside the img box)."""
    rect: dict[str, float] = page.evaluate(
        """() => {
          const img = document.getElementById('image');
          const r = img.getBoundingClientRect();
          const k = Math.min(r.width / img.naturalWidth, r.height / img.naturalHeight);
          const w = img.naturalWidth * k, h = img.naturalHeight * k;
          return {x: r.left + (r.width - w) / 2, y: r.top + (r.height - h) / 2, w: w, h: h};
        }"""
    )
    return rect


def answers_of(server: Server, username: str) -> list[tuple[int, int, tuple[float, ...] | None]]:
    """(task, label, box) of each answer a person gave, read from the store."""
    ws = server.workspace()
    try:
        with ws.db.session() as s:
            rows = s.execute(
                select(Answer.task_id, Answer.label, AnswerBox.x, AnswerBox.y)
                .add_columns(AnswerBox.width, AnswerBox.height)
                .join(User, User.id == Answer.worker_id)
                .outerjoin(AnswerBox, AnswerBox.answer_id == Answer.id)
                .where(User.username == username)
                .order_by(Answer.id)
            ).all()
    finally:
        ws.close()
    return [(t, lb, None if x is None else (x, y, w, h)) for t, lb, x, y, w, h in rows]


def audit_actions(server: Server, username: str) -> list[tuple[str, int]]:
    ws = server.workspace()
    try:
        with ws.db.session() as s:
            rows = s.execute(
                select(AuditEntry.action, AuditEntry.entity_id)
                .where(AuditEntry.actor == username)
                .order_by(AuditEntry.id)
            ).all()
    finally:
        ws.close()
    return [(a, int(e)) for a, e in rows]
