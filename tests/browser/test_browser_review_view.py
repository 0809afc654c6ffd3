"""The doctor windows the image on the review page: contrast and brightness sliders act
on the image, R and Reset put them back, and the page says how many pixels the image
holds (a small image shown large is not more detailed). Screenshots go to
tests/artifacts/browser/<test>/."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from browser_support import Server, login

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
expect: Any = sync_api.expect


def test_the_doctor_sets_contrast_and_brightness_and_sees_the_image_size(
    server: Server, page: Any, artifacts: Path
) -> None:
    login(page, server, "dora")
    page.goto(f"{server.url}/review/1")
    image = page.locator("#image")
    expect(page.locator("#image-size")).to_have_text(
        "Image 96 \u00d7 64 pixels as stored; zoom enlarges those pixels."
    )
    page.get_by_label("Contrast").fill("250")
    page.get_by_label("Brightness").fill("150")
    assert image.evaluate("i => i.style.filter") == "contrast(250%) brightness(150%)"
    page.screenshot(path=artifacts / "01-windowed.png")
    page.locator("h1").click()
    page.keyboard.press("r")
    assert image.evaluate("i => i.style.filter") == "contrast(100%) brightness(100%)"
    expect(page.get_by_label("Contrast")).to_have_value("100")
    page.get_by_label("Contrast").fill("60")
    page.get_by_role("button", name="Reset").click()
    assert image.evaluate("i => i.style.filter") == "contrast(100%) brightness(100%)"
