"""The pages in a real browser: an annotator labels by keyboard, draws a box, skips, zooms;
a doctor accepts and corrects. What the pages did is checked in the store, not only on
screen. Screenshots go to tests/artifacts/browser/<test>/."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from browser_support import (
    CLASSES,
    PASSWORD,
    Server,
    answers_of,
    audit_actions,
    current_task,
    image_rect,
    login,
)
from sqlalchemy import select

from medloop.store import assignments
from medloop.store.models import Item, ItemLabel, Task
from medloop.workflows import accounts, aggregate, annotate
from medloop.workflows.loop import write_decisions

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
expect: Any = sync_api.expect


def test_annotator_labels_by_keyboard_draws_a_box_skips_and_zooms(
    server: Server, page: Any, artifacts: Path
) -> None:
    login(page, server, "ann")
    expect(page).to_have_url(f"{server.url}/annotate")
    first = current_task(page)
    page.screenshot(path=artifacts / "01-first-task.png")

    # zoom with the wheel, raise the contrast, then reset with R
    viewer = page.locator("#viewer").bounding_box()
    page.mouse.move(viewer["x"] + viewer["width"] / 2, viewer["y"] + viewer["height"] / 2)
    page.mouse.wheel(0, -400)
    expect(page.locator("#stage")).not_to_have_attribute("style", re.compile(r"scale\(1\)"))
    page.locator("#contrast").fill("250")
    expect(page.locator("#image")).to_have_attribute("style", re.compile(r"contrast\(250%\)"))
    page.screenshot(path=artifacts / "02-zoomed-contrast.png")
    page.locator("#status").click()  # focus off the slider: keys are for the workspace again
    page.keyboard.press("r")
    expect(page.locator("#stage")).to_have_attribute("style", re.compile(r"scale\(1\)"))
    expect(page.locator("#image")).to_have_attribute("style", re.compile(r"contrast\(100%\)"))

    # draw a box over the middle half of the image, then answer 'pneumonia' with key 2
    page.keyboard.press("b")
    expect(page.locator("#box-mode")).to_have_attribute("aria-pressed", "true")
    r = image_rect(page)
    page.mouse.move(r["x"] + 0.25 * r["w"], r["y"] + 0.25 * r["h"])
    page.mouse.down()
    page.mouse.move(r["x"] + 0.75 * r["w"], r["y"] + 0.75 * r["h"], steps=5)
    page.mouse.up()
    expect(page.locator("#box")).to_be_visible()
    page.screenshot(path=artifacts / "03-box.png")
    page.keyboard.press("2")
    second = current_task(page, previous=first)
    expect(page.locator("#answered")).to_have_text("1")
    expect(page.locator("#box")).to_be_hidden()

    # key 1 answers 'normal' without a box
    page.keyboard.press("b")  # leave box mode: a drag pans again
    page.keyboard.press("1")
    third = current_task(page, previous=second)
    expect(page.locator("#answered")).to_have_text("2")

    # S skips, the Unsure button marks unsure; neither stores an answer
    page.keyboard.press("s")
    fourth = current_task(page, previous=third)
    page.get_by_role("button", name="Unsure").click()
    fifth = current_task(page, previous=fourth)
    page.screenshot(path=artifacts / "04-after-skips.png")

    stored = answers_of(server, "ann")
    assert [(t, lb) for t, lb, _ in stored] == [(first, 1), (second, 0)]
    box = stored[0][2]
    assert box is not None and box == pytest.approx((0.25, 0.25, 0.5, 0.5), abs=0.02), (
        "the box is stored as fractions of the image"
    )
    assert stored[1][2] is None
    actions = audit_actions(server, "ann")
    assert ("task.skip", third) in actions and ("task.unsure", fourth) in actions
    assert fifth not in (first, second, third, fourth), "skipped tasks are not offered again"

    # a held key (auto-repeat: keydown after keydown) answers one image, not every one
    # that loads while it is down
    page.keyboard.down("1")
    for _ in range(12):
        page.wait_for_timeout(50)
        page.keyboard.down("1")
    page.keyboard.up("1")
    current_task(page, previous=fifth)
    assert len(answers_of(server, "ann")) == 3

    # answer the rest: with no image left, the viewer and its controls go away
    workspace = page.locator("#workspace")
    for _ in range(6):
        shown = workspace.get_attribute("data-task")
        if shown is None:
            break
        current_task(page)  # answers wait until the image is on screen
        page.keyboard.press("1")
        expect(workspace).not_to_have_attribute("data-task", shown)
    expect(page.locator("#status")).to_have_text(re.compile("No image is waiting for you"))
    expect(page.locator("#viewer")).to_be_hidden()
    expect(page.locator("#task-controls")).to_be_hidden()
    expect(page.locator("#waiting")).to_have_text("0")
    page.screenshot(path=artifacts / "05-nothing-left.png")


def test_doctor_accepts_and_corrects_in_the_review_pages(
    server: Server, page: Any, artifacts: Path
) -> None:
    ws = server.workspace()
    try:  # the crowd (ben, through the library) answers two tasks, then aggregation
        ben = accounts.authenticate(ws, username="ben", password=PASSWORD)
        assert ben is not None
        for label in ("pneumonia", "normal"):
            task = annotate.next_task(ws, account=ben)
            assert task is not None
            annotate.submit_answer(ws, account=ben, task_id=task.task_id, label=label)
        aggregate(ws, project="chest")
    finally:
        ws.close()

    login(page, server, "dora")
    expect(page).to_have_url(f"{server.url}/review")
    expect(page.get_by_role("heading", name="Review queue")).to_be_visible()
    page.screenshot(path=artifacts / "01-queue.png")
    links = page.locator("table.queue a")
    assert links.count() >= 2
    first = int(links.nth(0).inner_text().split()[-1])

    # accept the crowd's label with the primary button
    links.nth(0).click()
    expect(page.get_by_role("heading", name=re.compile(f"Item {first}"))).to_be_visible()
    expect(page.locator("table.answers tbody tr")).not_to_have_count(0)
    page.screenshot(path=artifacts / "02-item.png")
    panel = page.locator(".panel").bounding_box()
    table = page.locator("table.answers").bounding_box()
    assert table["x"] + table["width"] <= panel["x"] + panel["width"], "the table fits its panel"
    accept = page.locator("form.choices button.primary")
    accepted = str(accept.get_attribute("value"))
    with page.expect_navigation():
        accept.click()

    # the page moved on to the next item: correct it by number key to the other class
    expect(page).to_have_url(re.compile(r"/review/\d+$"))
    second = int(page.url.rsplit("/", 1)[-1])
    assert second != first
    other = page.locator("form.choices button:not(.primary)").first
    corrected = str(other.get_attribute("value"))
    key = str(other.get_attribute("data-key"))
    page.keyboard.down(key)  # held down (auto-repeat) it is still one press: it only picks
    for _ in range(8):
        page.wait_for_timeout(50)
        page.keyboard.down(key)
    page.keyboard.up(key)
    page.wait_for_timeout(300)
    expect(page).to_have_url(f"{server.url}/review/{second}")
    page.keyboard.press("Escape")
    page.keyboard.press(key)  # a final label cannot be undone: the first press only picks
    expect(other).to_have_class(re.compile("armed"))
    expect(page.locator("#decision-hint")).to_contain_text(f"Press {key} again or Enter")
    page.keyboard.press("Escape")
    expect(other).not_to_have_class(re.compile("armed"))
    page.keyboard.press("Enter")  # Esc let go of the button: Enter signs nothing
    page.wait_for_timeout(300)
    expect(page).to_have_url(f"{server.url}/review/{second}")
    page.keyboard.press(key)
    expect(page).to_have_url(f"{server.url}/review/{second}")  # nothing signed yet
    with page.expect_navigation():
        page.keyboard.press(key)
    expect(page).not_to_have_url(f"{server.url}/review/{second}")

    ws = server.workspace()
    try:
        with ws.db.session() as s:
            finals = assignments.final_labels_for(s, item_ids=[first, second])
    finally:
        ws.close()
    assert finals == {first: CLASSES.index(accepted), second: CLASSES.index(corrected)}
    page.goto(f"{server.url}/review/{first}")
    expect(page.locator(".final")).to_have_text(f"Final label: {accepted}")
    expect(page.locator("form.choices")).to_have_count(0)
    page.screenshot(path=artifacts / "03-decided.png")


def test_an_annotator_whose_session_ended_is_told_how_to_go_on(
    server: Server, page: Any, artifacts: Path
) -> None:
    ws = server.workspace()
    try:  # one more task for ann, who answered every earlier one
        annotate.publish_tasks(ws, project="chest", k=1, strategy="random", redundancy=1)
    finally:
        ws.close()
    login(page, server, "ann")
    current_task(page)
    before = answers_of(server, "ann")
    page.context.clear_cookies()  # signed out in another tab, or the session expired
    page.expected_statuses.add(401)
    page.keyboard.press("1")
    status = page.locator("#status")
    expect(status).to_have_text(re.compile(r"^Your session has ended \(nothing was saved\)"))
    page.screenshot(path=artifacts / "06-session-ended.png")
    assert answers_of(server, "ann") == before
    status.get_by_role("link", name="Sign in again").click()
    expect(page).to_have_url(f"{server.url}/login?next=/annotate")  # and back to work


def test_a_check_question_answered_wrongly_stays_on_screen_until_next(
    server: Server, page: Any, artifacts: Path
) -> None:
    ws = server.workspace()
    try:  # a doctor's final label on a training item makes it a check question
        with ws.db.session() as s:
            asked = select(Task.item_id)
            untouched = (Item.split == "train") & Item.id.not_in(asked)
            item = s.scalar(select(Item.id).where(untouched).order_by(Item.id))
            write_decisions(s, project="chest", decisions=pd.Series({item: 1}), doctor="dora")
        published = annotate.publish_tasks(
            ws, project="chest", k=1, strategy="random", redundancy=1, gold_rate=0.5
        )
        # someone new: nobody is asked a check question on an item they labelled before
        accounts.add_user(ws, username="cleo", role="annotator", password=PASSWORD)
    finally:
        ws.close()
    assert published.gold_tasks == 1
    page.set_viewport_size({"width": 360, "height": 740})  # a phone: the Next button is below
    login(page, server, "cleo")
    workspace = page.locator("#workspace")
    wrong = None
    while workspace.get_attribute("data-task") is not None:
        shown = current_task(page)
        expected = gold_label(server, shown)
        if expected is None:
            page.keyboard.press("2")
            expect(workspace).not_to_have_attribute("data-task", str(shown))
            continue
        wrong = 1 - expected
        page.keyboard.press(str(wrong + 1))
        said = f"expected answer was {CLASSES[expected]}"
        expect(page.locator("#feedback")).to_have_text(re.compile(said))
        page.screenshot(path=artifacts / "07-check-question-feedback.png")
        page.keyboard.press(str(expected + 1))  # no second answer while the feedback is up
        page.wait_for_timeout(400)
        expect(workspace).to_have_attribute("data-task", str(shown))
        page.keyboard.press("n")
        expect(workspace).not_to_have_attribute("data-task", str(shown))
        expect(page.locator("#feedback-next")).to_be_hidden()
        # the feedback was about the last image: it goes, the next image is in view, and
        # the focus is on its first answer (or on the status line when none is left)
        expect(page.locator("#feedback")).to_have_text("")
        status = page.locator("#status")
        expect(status).to_have_text(re.compile("^(Which of these|No image is waiting)"))
        if workspace.get_attribute("data-task") is None:
            expect(status).to_be_focused()
            continue
        top = page.evaluate("document.getElementById('viewer').getBoundingClientRect().top")
        assert top >= 0, "the new image is not scrolled off the screen"
        expect(page.locator("button.choice").first).to_be_focused()
    answers = answers_of(server, "cleo")
    gold = [label for task, label, _ in answers if gold_label(server, task) is not None]
    assert wrong is not None and gold == [wrong]


def gold_label(server: Server, task_id: int) -> int | None:
    """The final label a check question expects (None for an ordinary task)."""
    ws = server.workspace()
    try:
        with ws.db.session() as s:
            task = s.get(Task, task_id)
            if task is None or not task.is_gold:
                return None
            final = select(ItemLabel.label).where(
                ItemLabel.item_id == task.item_id, ItemLabel.kind == "final"
            )
            return s.scalar(final.order_by(ItemLabel.id.desc()))
    finally:
        ws.close()


def test_doctor_pages_fit_a_phone_and_the_queue_keeps_the_keyboard_focus(
    server: Server, page: Any, artifacts: Path
) -> None:
    """At 390 px wide no page is wider than the screen (tables scroll inside their cards,
    charts shrink); the review queue's timed refresh never takes the focus away."""
    ws = server.workspace()
    try:  # one more item in the review queue: a task ben answers, then aggregation
        annotate.publish_tasks(ws, project="chest", k=1, strategy="random", redundancy=1)
        ben = accounts.authenticate(ws, username="ben", password=PASSWORD)
        assert ben is not None
        task = annotate.next_task(ws, account=ben)
        assert task is not None
        annotate.submit_answer(ws, account=ben, task_id=task.task_id, label="normal")
        aggregate(ws, project="chest")
    finally:
        ws.close()
    page.set_viewport_size({"width": 390, "height": 844})
    login(page, server, "dora")
    expect(page).to_have_url(f"{server.url}/review")
    links = page.locator("table.queue a")
    assert links.count() >= 1
    item = links.nth(0).get_attribute("href")
    for url in ("/review", f"{item}", "/dashboard"):
        page.goto(f"{server.url}{url}")
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"{url} is {width} px wide on a 390 px screen"
    page.screenshot(path=artifacts / "07-dashboard-phone.png", full_page=True)

    page.goto(f"{server.url}/review")
    links.nth(0).focus()
    refresh = "{source: '#queue', target: '#queue', swap: 'outerHTML', select: '#queue'}"
    page.evaluate(f"htmx.ajax('GET', '/review', {refresh})")  # what the 20 s timer does
    page.wait_for_timeout(500)
    assert page.evaluate("document.activeElement.getAttribute('href')") == item


def test_an_annotator_on_a_phone_reaches_the_answers_and_can_scroll(
    server: Server, page: Any, artifacts: Path
) -> None:
    ws = server.workspace()
    try:  # one more task for ann
        annotate.publish_tasks(ws, project="chest", k=1, strategy="random", redundancy=1)
    finally:
        ws.close()
    page.set_viewport_size({"width": 390, "height": 844})
    login(page, server, "ann")
    current_task(page)
    page.screenshot(path=artifacts / "08-annotate-phone.png")
    for box in (b.bounding_box() for b in page.locator("button.choice").all()):
        assert box["y"] + box["height"] <= 844, "every answer button is on the first screen"
    assert page.evaluate("getComputedStyle(document.getElementById('viewer')).touchAction") == (
        "pan-y"
    )  # a vertical swipe on the image scrolls the page


def test_a_page_left_alone_signs_out_and_comes_back_after_sign_in(
    server: Server, page: Any, artifacts: Path
) -> None:
    """A ward computer left signed in: after the idle time (15 minutes here) without a key
    press, click or touch in any tab, the page signs out (revoking the session) and the
    next sign-in comes back to it; the last minute is announced and can be called off."""
    page.clock.install()
    login(page, server, "dora")
    page.goto(f"{server.url}/patients")
    page.clock.fast_forward("14:10")
    warning = page.get_by_role("alertdialog")
    expect(warning).to_contain_text(re.compile(r"you will be signed out in \d+ s"))
    page.screenshot(path=artifacts / "01-idle-warning.png")
    warning.get_by_role("button", name="Stay signed in").click()
    expect(warning).to_have_count(0)
    page.clock.fast_forward("10:00")  # 10 minutes after the click: still signed in
    expect(warning).to_have_count(0)
    other = page.context.new_page()  # a second tab, used: it keeps the first one too
    other.goto(f"{server.url}/review")
    other.keyboard.press("Tab")
    page.clock.fast_forward("06:00")  # 16 minutes after the first tab's last use
    expect(page).to_have_url(f"{server.url}/patients")
    cookie = next(c for c in page.context.cookies() if c["name"] == "medloop_session")
    page.clock.fast_forward("15:00")  # both tabs sign out: one posts, the other follows
    page.clock.run_for(2000)
    expect(page).to_have_url(f"{server.url}/login?signed_out=1&idle=1&next=%2Fpatients")
    expect(other).to_have_url(f"{server.url}/login?signed_out=1&idle=1&next=%2Freview")
    expect(page.get_by_role("status")).to_contain_text("left without activity (15 minutes)")
    page.screenshot(path=artifacts / "02-signed-out.png")
    ws = server.workspace()
    try:  # revoked on the server, not only forgotten by the browser
        assert accounts.account_for_token(ws, cookie["value"], purpose="session") is None
    finally:
        ws.close()
    page.get_by_label("Username").fill("dora")
    page.get_by_label("Password").fill(PASSWORD)
    with page.expect_navigation():
        page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{server.url}/patients")


def test_polling_is_marked_and_use_without_requests_is_reported(server: Server, page: Any) -> None:
    """The server's idle sign-out sees requests only: the review queue's timed refresh
    says it is polling (never counted as use), and a key press that sends no request of
    its own is reported within half a minute (idle.js)."""
    page.clock.install()
    login(page, server, "dora")
    expect(page).to_have_url(f"{server.url}/review")
    with page.expect_request(re.compile(r"/review\?offset=")) as polled:
        page.clock.fast_forward("00:21")
    assert polled.value.headers.get("x-medloop-poll") == "1"
    with page.expect_request(f"{server.url}/api/auth/activity") as reported:
        page.keyboard.press("Shift")
        page.clock.fast_forward("00:31")
    assert reported.value.method == "POST"
    assert "x-medloop-poll" not in reported.value.headers
    assert reported.value.response().status == 204
