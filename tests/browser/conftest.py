"""Browser fixtures: Debian's chromium under Playwright, and a real server on loopback over
a temporary home with a few ingested images, people and published tasks."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_support import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    CLASSES,
    PASSWORD,
    PEOPLE,
    SECRET,
    Server,
    free_port,
    wait_healthy,
    write_images,
)

from medloop.config import Settings
from medloop.workflows import Workspace, accounts, annotate, ingest_image_folder

SERVE = "from medloop.cli import main; main()"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`medloop serve` on a free loopback port over a fresh home: 20 ingested images in
    project 'chest', annotators ann and ben, doctor dora, 6 published tasks (one answer
    each, no gold questions yet)."""
    root = tmp_path_factory.mktemp("browser")
    settings = Settings(home=root / "home", secret_key=SECRET)
    ws = Workspace.open(settings)
    try:
        write_images(root / "images", 20)
        ingest_image_folder(ws, folder=root / "images", project="chest", classes=CLASSES)
        for name, role in PEOPLE.items():
            accounts.add_user(ws, username=name, role=role, password=PASSWORD)
        annotate.publish_tasks(
            ws, project="chest", k=6, strategy="random", redundancy=1, gold_rate=0.0
        )
    finally:
        ws.close()
    port = free_port()
    env = {**os.environ, "MEDLOOP_HOME": str(settings.home), "MEDLOOP_SECRET_KEY": SECRET}
    env.pop("MEDLOOP_DATABASE_URL", None)
    log = (root / "server.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-c", SERVE, "serve", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process)
        yield Server(url=url, settings=settings)
        assert process.poll() is None, "the server stayed up"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        log.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's chromium driven by Playwright (never a downloaded browser)."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    executable = CHROMIUM if CHROMIUM.exists() else None
    if executable is None:
        found = shutil.which("chromium")
        if found is None:
            pytest.skip("Debian's chromium is not installed (`make browser` installs it as root)")
        executable = Path(found)
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(executable), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def artifacts(request: pytest.FixtureRequest) -> Path:
    """A folder for this test's screenshots."""
    folder = ARTIFACTS / request.node.name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser context (no cookies) whose JS errors, CSP violations and failed
    requests fail the test (except statuses a test adds to `page.expected_statuses`, and
    console errors holding a text it adds to `page.expected_console`)."""
    context = browser.new_context(viewport={"width": 1200, "height": 800})
    opened = context.new_page()
    opened.expected_statuses = set()
    opened.expected_console = []
    problems: list[str] = []

    def failed_response(response: Any) -> None:
        if response.status >= 400 and response.status not in opened.expected_statuses:
            problems.append(f"{response.status} {response.url}")

    def console_error(message: Any) -> None:
        expected = any(
            f"status of {code}" in message.text for code in opened.expected_statuses
        ) or any(text in message.text for text in opened.expected_console)
        if message.type == "error" and not expected:
            problems.append(f"console: {message.text} {message.location}")

    opened.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    opened.on("response", failed_response)
    opened.on("console", console_error)
    yield opened
    context.close()
    assert not problems, problems
