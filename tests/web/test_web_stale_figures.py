"""Annotator figures on the review pages and the dashboard: a server shows them outdated
at once while they are recomputed in the background, and says how far behind they are;
the next view after the recompute shows current ones. Background work is awaited with
`Workspace.settle`, never with sleeps."""

from __future__ import annotations

from test_web_pages import sign_in
from test_web_review import crowd_with_boxes
from web_support import Site

from medloop.workflows import Workspace, dashboard, review


def one_more_answer(site: Site) -> int:
    """carol answers one task (the project gains one answer); returns its item."""
    headers = site.headers("carol")
    task = site.client.get("/api/tasks/next", headers=headers).json()
    answered = site.client.post(
        f"/api/tasks/{task['task_id']}/answer", headers=headers, json={"label": 1}
    )
    assert answered.status_code == 201, answered.text
    return int(task["item_id"])


def estimates(detail: review.ReviewDetail) -> dict[str, tuple[float | None, ...]]:
    return {
        a.worker: (a.estimated_accuracy, a.gold_accuracy, a.agrees_with_consensus)
        for a in detail.answers
    }


def test_outdated_figures_are_served_said_so_and_then_current(any_site: Site) -> None:
    site = any_site
    ws = site.ws
    crowd_with_boxes(site)
    item = review.review_entries(ws)[0].item_id
    first = review.review_detail(ws, item_id=item, fresh=False)
    board = dashboard.project_dashboard(ws, project="chest", fresh=False)
    assert first.figures_as_of is None and board.figures_as_of is None

    one_more_answer(site)
    stale = review.review_detail(ws, item_id=item, fresh=False)
    stale_board = dashboard.project_dashboard(ws, project="chest", fresh=False)
    for age in (stale.figures_as_of, stale_board.figures_as_of):
        assert age is not None
        assert (age.answers, age.labels, age.updating) == (1, 0, True)
        assert age.behind == "1 answer" and age.seconds >= 0
    assert estimates(stale) == estimates(first), "the kept figures, at once"
    assert stale_board.progress.crowd_answers == board.progress.crowd_answers
    assert stale_board.annotators == board.annotators

    ws.settle()
    now = review.review_detail(ws, item_id=item, fresh=False)
    now_board = dashboard.project_dashboard(ws, project="chest", fresh=False)
    assert now.figures_as_of is None and now_board.figures_as_of is None
    assert now_board.progress.crowd_answers == board.progress.crowd_answers + 1
    fresh = Workspace.open(ws.settings)
    try:
        assert review.review_detail(fresh, item_id=item) == now
        assert dashboard.project_dashboard(fresh, project="chest") == now_board
    finally:
        fresh.close()


def test_fresh_reads_never_show_outdated_figures(site: Site) -> None:
    """The library's default (the CLI, scripts): current figures, computed in the call."""
    ws = site.ws
    crowd_with_boxes(site)
    item = review.review_entries(ws)[0].item_id
    before = dashboard.project_dashboard(ws, project="chest")
    review.review_detail(ws, item_id=item)
    one_more_answer(site)
    after = dashboard.project_dashboard(ws, project="chest")
    assert (
        after.figures_as_of is None and review.review_detail(ws, item_id=item).figures_as_of is None
    )
    assert after.progress.crowd_answers == before.progress.crowd_answers + 1
    assert not ws.computing, "nothing left running in the background"


def test_pages_and_the_api_say_when_figures_are_not_current(site: Site) -> None:
    """Each check is the first view of its figures after an answer, so a recompute it
    starts cannot have finished before it is rendered."""
    crowd_with_boxes(site)
    client = site.client
    sign_in(client, "dora")
    doctor = site.headers("dora")
    item = client.get("/api/review/queue", headers=doctor).json()[0]["item_id"]
    assert "figures-note" not in client.get(f"/review/{item}").text
    assert "figures-note" not in client.get("/dashboard").text

    one_more_answer(site)
    page = client.get(f"/review/{item}").text
    assert 'id="figures-note"' in page
    assert "annotator figures" in page and "as of 1 answer ago" in page
    assert "updating: reload for current ones" in page
    board = client.get("/dashboard").text
    assert 'id="figures-note"' in board and "as of 1 answer ago" in board
    site.ws.settle()

    one_more_answer(site)
    age = client.get(f"/api/review/{item}", headers=doctor).json()["figures_as_of"]
    assert (age["answers"], age["labels"], age["updating"]) == (1, 0, True)
    age = client.get("/api/dashboard", headers=doctor).json()["figures_as_of"]
    assert (age["answers"], age["labels"], age["updating"]) == (1, 0, True)
    site.ws.settle()

    assert "figures-note" not in client.get(f"/review/{item}").text
    assert "figures-note" not in client.get("/dashboard").text
    assert client.get(f"/api/review/{item}", headers=doctor).json()["figures_as_of"] is None
    assert client.get("/api/dashboard", headers=doctor).json()["figures_as_of"] is None
