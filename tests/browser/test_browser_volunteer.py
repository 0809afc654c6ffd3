"""The annotator's workspace for everyone: a finger on a phone, the keyboard alone, a bad
connection, an ended session, stray keys. What was saved is checked in the store.
Screenshots go to tests/artifacts/browser/<test>/."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_support import PASSWORD, Server, answers_of, current_task, image_rect, login

from medloop.workflows import accounts, annotate

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
expect: Any = sync_api.expect
#: What chromium says in the console about a request a test made fail.
ABORTED = "net::ERR_FAILED"


@pytest.fixture(scope="module")
def shared_tasks(server: Server) -> None:
    """Ten more tasks that up to ten annotators each answer (the server's own six go to
    whoever asks first)."""
    ws = server.workspace()
    try:
        annotate.publish_tasks(ws, project="chest", k=10, strategy="random", redundancy=10)
    finally:
        ws.close()


@pytest.fixture
def volunteer(server: Server, shared_tasks: None, request: pytest.FixtureRequest) -> str:
    """A new annotator for one test, named after it."""
    name = "v" + str(abs(hash(request.node.name)) % 10**8)
    ws = server.workspace()
    try:
        accounts.add_user(ws, username=name, role="annotator", password=PASSWORD)
    finally:
        ws.close()
    return name


@pytest.fixture
def phone(browser: Any) -> Iterator[Any]:
    """A page in a phone's browser: 360 x 740, touch."""
    context = browser.new_context(
        viewport={"width": 360, "height": 740}, has_touch=True, is_mobile=True
    )
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    yield opened
    context.close()
    assert not errors, errors


def finger(cdp: Any, points: list[tuple[float, float]], *, end: str = "touchEnd") -> None:
    """One finger down at the first point, through the others, then lifted (or the touch
    cancelled, as when the browser takes it over)."""
    (x, y), rest = points[0], points[1:]
    cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": x, "y": y}]})
    for x, y in rest:
        cdp.send(
            "Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [{"x": x, "y": y}]}
        )
    cdp.send("Input.dispatchTouchEvent", {"type": end, "touchPoints": []})


def on_image(r: dict[str, float], fx: float, fy: float) -> tuple[float, float]:
    return r["x"] + fx * r["w"], r["y"] + fy * r["h"]


def line(
    a: tuple[float, float], b: tuple[float, float], steps: int = 12
) -> list[tuple[float, float]]:
    return [
        (a[0] + (b[0] - a[0]) * i / steps, a[1] + (b[1] - a[1]) * i / steps)
        for i in range(steps + 1)
    ]


def shown_box(page: Any) -> list[float] | None:
    """The box on screen, as fractions of the image (None when hidden)."""
    box: list[float] | None = page.evaluate(
        """() => { const b = document.getElementById('box');
          return b.hidden ? null : ['left', 'top', 'width', 'height'].map(
            k => parseFloat(b.style[k]) / 100); }"""
    )
    return box


def test_a_finger_draws_a_box_on_a_phone_by_dragging_or_by_two_taps(
    server: Server, phone: Any, volunteer: str, artifacts: Path
) -> None:
    login(phone, server, volunteer)
    task = current_task(phone)
    assert "scroll to zoom" not in phone.locator("main").inner_text()
    phone.locator("#box-mode").tap()
    touch = phone.evaluate("getComputedStyle(document.getElementById('viewer')).touchAction")
    assert touch == "none", "in box mode a finger draws; it does not scroll the page"
    cdp = phone.context.new_cdp_session(phone)
    phone.evaluate("window.scrollTo(0, 0)")

    # a diagonal drag over the middle of the image draws that box, and says so
    r = image_rect(phone)
    finger(cdp, line(on_image(r, 0.25, 0.25), on_image(r, 0.75, 0.75)))
    assert shown_box(phone) == pytest.approx([0.25, 0.25, 0.5, 0.5], abs=0.02)
    expect(phone.locator("#status")).to_have_text(
        "Box drawn: centre, about a quarter of the image."
    )
    phone.screenshot(path=artifacts / "01-dragged-box.png")

    # a drag the browser cancels leaves the box as it was, and says so
    finger(cdp, line(on_image(r, 0.1, 0.1), on_image(r, 0.3, 0.2), 4), end="touchCancel")
    assert shown_box(phone) == pytest.approx([0.25, 0.25, 0.5, 0.5], abs=0.02)
    expect(phone.locator("#status")).to_contain_text("The box was not drawn")

    # without dragging: tap two opposite corners
    finger(cdp, [on_image(r, 0.1, 0.2)])
    expect(phone.locator("#status")).to_contain_text("Tap the opposite corner")
    finger(cdp, [on_image(r, 0.4, 0.6)])
    assert shown_box(phone) == pytest.approx([0.1, 0.2, 0.3, 0.4], abs=0.02)
    expect(phone.locator("#status")).to_have_text(re.compile(r"^Box drawn: (upper|middle) left"))

    # zoom by buttons (a phone has no wheel), then answer: the tapped box is stored
    phone.get_by_role("button", name="Zoom in").tap()
    expect(phone.locator("#stage")).not_to_have_attribute("style", re.compile(r"scale\(1\)"))
    phone.get_by_role("button", name="Fit").tap()
    expect(phone.locator("#stage")).to_have_attribute("style", re.compile(r"scale\(1\)"))
    phone.locator("button.choice").first.tap()
    current_task(phone, previous=task)
    [(answered, label, box)] = answers_of(server, volunteer)
    assert (answered, label) == (task, 0)
    assert box == pytest.approx((0.1, 0.2, 0.3, 0.4), abs=0.02)


def test_the_image_viewer_works_by_keyboard(server: Server, page: Any, volunteer: str) -> None:
    login(page, server, volunteer)
    task = current_task(page)
    viewer = page.get_by_role("group", name="Image viewer")
    expect(viewer).to_have_attribute("aria-describedby", "viewer-help")
    expect(page.locator("#viewer-help")).to_contain_text("arrow keys pan")
    viewer.focus()
    stage = page.locator("#stage")
    page.keyboard.press("+")
    expect(stage).not_to_have_attribute("style", re.compile(r"scale\(1\)"))
    page.keyboard.press("0")
    expect(stage).to_have_attribute("style", re.compile(r"scale\(1\)"))
    before = stage.get_attribute("style")
    page.keyboard.press("ArrowRight")
    assert stage.get_attribute("style") != before, "an arrow key pans"

    # box mode: an arrow places a box in the centre, arrows move it, Shift+arrows resize it
    page.get_by_role("button", name="Draw box").click()
    viewer.focus()
    page.keyboard.press("ArrowDown")
    assert shown_box(page) == pytest.approx([0.35, 0.35, 0.3, 0.3], abs=0.001)
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Shift+ArrowRight")
    assert shown_box(page) == pytest.approx([0.35, 0.4, 0.35, 0.3], abs=0.001)
    expect(page.locator("#status")).to_have_text("Box drawn: centre, about a tenth of the image.")
    page.keyboard.press("2")  # the page's keys still answer from the viewer
    current_task(page, previous=task)
    [(_, label, box)] = answers_of(server, volunteer)
    assert label == 1 and box == pytest.approx((0.35, 0.4, 0.35, 0.3), abs=0.001)


def test_a_failed_send_is_said_plainly_and_sent_again(
    server: Server, page: Any, volunteer: str, artifacts: Path
) -> None:
    page.expected_console.append(ABORTED)
    page.expected_statuses.update({403, 409, 502})
    login(page, server, volunteer)
    status, again = page.locator("#status"), page.locator("#retry")
    answer = "**/api/tasks/*/answer"

    # the connection drops: a plain message, and Send again resends the same answer
    task = current_task(page)
    page.route(answer, lambda route: route.abort())
    page.keyboard.press("2")
    expect(status).to_contain_text("The connection to the server failed.")
    expect(again).to_have_text("Send again")
    expect(again).to_be_focused()
    expect(page.locator("button.choice").first).not_to_have_attribute("aria-disabled", "true")
    page.screenshot(path=artifacts / "01-connection-failed.png")
    assert answers_of(server, volunteer) == []
    page.unroute(answer)
    again.click()
    task2 = current_task(page, previous=task)
    assert answers_of(server, volunteer) == [(task, 1, None)]

    # the answer arrives but its reply is lost: sent again, it is reported saved, once
    def reply_lost(route: Any) -> None:
        route.fetch()
        route.abort()

    page.route(answer, reply_lost)
    page.keyboard.press("1")
    expect(again).to_be_visible()
    page.unroute(answer)
    again.click()
    expect(page.locator("#feedback")).to_have_text("Your answer was saved.")
    task3 = current_task(page, previous=task2)
    assert answers_of(server, volunteer) == [(task, 1, None), (task2, 0, None)]

    # a proxy's HTML error page is not shown as a JSON parse error
    page.route(
        answer,
        lambda route: route.fulfill(
            status=502, content_type="text/html", body="<html>Bad gateway</html>"
        ),
    )
    page.keyboard.press("1")
    expect(status).to_have_text(re.compile(r"^Something went wrong on the server\. "))
    page.unroute(answer)

    # signed in again in another tab (a new session, a new CSRF token): sent once more
    # with the new token
    page.context.clear_cookies()
    other = page.context.new_page()
    login(other, server, volunteer)
    other.close()
    again.click()
    current_task(page, previous=task3)
    assert answers_of(server, volunteer)[-1] == (task3, 0, None)

    # the next image does not come: Retry
    page.route("**/api/tasks/next", lambda route: route.abort())
    page.keyboard.press("1")
    expect(status).to_contain_text("The next image could not be loaded.")
    expect(again).to_have_text("Retry")
    expect(page.locator("button.choice").first).to_have_attribute("aria-disabled", "true")
    page.unroute("**/api/tasks/next")
    again.click()
    current_task(page)


def test_an_answer_survives_the_end_of_a_session(
    server: Server, page: Any, volunteer: str, artifacts: Path
) -> None:
    page.expected_statuses.add(401)
    login(page, server, volunteer)
    task = current_task(page)
    page.get_by_role("button", name="Draw box").click()
    page.locator("#viewer").focus()
    page.keyboard.press("ArrowUp")  # the default box, in the centre
    page.context.clear_cookies()  # the session expired
    page.keyboard.press("1")
    status = page.locator("#status")
    expect(status).to_contain_text("your answer and box are kept")
    status.get_by_role("link", name="Sign in again").click()
    page.get_by_label("Username").fill(volunteer)
    page.get_by_label("Password").fill(PASSWORD)
    with page.expect_navigation():
        page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{server.url}/annotate")
    expect(page.locator("#workspace")).to_have_attribute("data-task", str(task))
    expect(status).to_contain_text("not saved yet: normal, with your box")
    assert shown_box(page) == pytest.approx([0.35, 0.35, 0.3, 0.3], abs=0.001)
    page.screenshot(path=artifacts / "01-answer-kept.png")
    page.get_by_role("button", name="Send my answer (normal)").click()
    current_task(page, previous=task)
    assert answers_of(server, volunteer) == [(task, 0, pytest.approx((0.35, 0.35, 0.3, 0.3)))]


def test_single_key_shortcuts_can_be_turned_off_and_focus_stays_in_place(
    server: Server, page: Any, volunteer: str
) -> None:
    login(page, server, volunteer)
    task = current_task(page)
    page.keyboard.press("s")
    expect(page.locator("#feedback")).to_have_text("Skipped — next image.")
    task = current_task(page, previous=task)

    # answering by the focused button keeps the focus on the new button in its place
    second = page.locator("button.choice").nth(1)
    second.focus()
    page.keyboard.press("Enter")
    task = current_task(page, previous=task)
    expect(page.locator("button.choice").nth(1)).to_be_focused()

    # turned off, single keys do nothing, on this page and after a reload
    page.get_by_label("Keyboard shortcuts (single keys)").uncheck()
    page.locator("#status").focus()
    for key in ("s", "u", "1", "b"):
        page.keyboard.press(key)
    page.wait_for_timeout(400)
    expect(page.locator("#workspace")).to_have_attribute("data-task", str(task))
    expect(page.locator("#box-mode")).to_have_attribute("aria-pressed", "false")
    assert len(answers_of(server, volunteer)) == 1
    page.reload()
    current_task(page)
    expect(page.get_by_label("Keyboard shortcuts (single keys)")).not_to_be_checked()


def test_the_doctor_can_turn_the_review_keys_off_and_sees_focus_and_contrast(
    server: Server, page: Any
) -> None:
    login(page, server, "dora")
    page.goto(f"{server.url}/review/1")
    button = page.locator("form.choices button").first
    page.keyboard.press("1")
    expect(button).to_have_class(re.compile("armed"))
    colour = button.evaluate("b => getComputedStyle(b).outlineColor")
    assert colour == "rgb(180, 83, 9)", "#b45309: 3:1 or more against white"
    page.keyboard.press("Escape")
    page.get_by_label("Keyboard shortcuts (single keys)").uncheck()
    page.locator("h1").click()
    page.keyboard.press("1")
    expect(button).not_to_have_class(re.compile("armed"))
    expect(page.get_by_role("group", name="Image viewer")).to_be_visible()


def test_the_pressed_draw_box_button_shows_its_focus_and_text_follows_the_browser_size(
    server: Server, page: Any, volunteer: str
) -> None:
    login(page, server, volunteer)
    current_task(page)
    draw = page.locator("#box-mode")
    draw.focus()
    page.keyboard.press("Enter")
    expect(draw).to_have_attribute("aria-pressed", "true")
    focused = draw.evaluate("b => getComputedStyle(b).boxShadow")
    page.locator("#status").focus()
    unfocused = draw.evaluate("b => getComputedStyle(b).boxShadow")
    assert focused != unfocused, "the keyboard focus on a pressed button is visible"
    kbd = page.locator("kbd").first.evaluate("k => getComputedStyle(k).opacity")
    assert kbd == "1", "key labels at full contrast"
    page.evaluate("document.documentElement.style.fontSize = '24px'")  # a larger browser font
    size = page.evaluate("getComputedStyle(document.body).fontSize")
    assert size == "24px"
    expect(page.locator("details", has_text="What are check questions?")).to_be_visible()
