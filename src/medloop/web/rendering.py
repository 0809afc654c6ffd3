"""What every server-rendered page shares: templates, the signed-in account, and the
responses for signed-out, wrong-role and refused requests."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode, urlsplit

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from medloop.exceptions import MedloopError
from medloop.times import utc_text
from medloop.types import REVIEWER_ROLES, Role
from medloop.web import sessions
from medloop.web.deps import optional_account
from medloop.web.errors import PageStop, status_for
from medloop.web.security import CSRF_FIELD, SESSION_COOKIE, csrf_token
from medloop.workflows.accounts import Account

STATIC = Path(__file__).parent / "static"
templates = Jinja2Templates(directory=Path(__file__).parent / "templates")


def static_url(name: str) -> str:
    """`/static/<name>?v=<digest of its content>`: the URL changes whenever the file
    does, so browsers may keep a versioned file for a year (`app.IMMUTABLE`)."""
    path = STATIC / name
    return f"/static/{name}?v={_digest(path, path.stat().st_mtime_ns)}"


@functools.lru_cache(maxsize=64)
def _digest(path: Path, _mtime_ns: int) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


templates.env.globals["static"] = static_url
templates.env.filters["utc"] = utc_text  # {{ moment|utc }}: "2026-12-07 14:03 UTC"

PageAccount = Annotated[Account | None, Depends(optional_account)]


def render(
    request: Request,
    name: str,
    account: Account | None,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    """Render template `name` with the account and the session's CSRF token."""
    session = request.cookies.get(SESSION_COOKIE)
    ws = request.app.state.ws
    context.update(
        account=account,
        csrf=csrf_token(ws, session) if account is not None and session else "",
        csrf_field=CSRF_FIELD,
        idle_sign_out_minutes=ws.settings.idle_sign_out_minutes,
    )
    return templates.TemplateResponse(request, name, context, status_code=status_code)


def to_login(request: Request | None = None) -> Response:
    """Signed out: on to the login page, which leads back to the page asked for
    (`next`); a form sent without a session is said to be not saved (`ended`), and leads
    back to the page it was sent from; a session refused for want of use says so
    (`idle`). An htmx request (a dashboard panel) is told to load the login page as the
    whole page: a redirect would be followed inside the panel."""
    target = "/login"
    if request is not None:
        sent = request.method not in ("GET", "HEAD")
        if request.headers.get("HX-Request"):  # a panel: back to the page it is on
            asked = request.headers.get("HX-Current-URL", "")
        else:
            asked = request.headers.get("referer", "") if sent else str(request.url)
        page = urlsplit(asked)
        back = page.path + (f"?{page.query}" if page.query else "")
        same_site = page.netloc in ("", request.url.netloc)
        params = {"next": back} if same_site and local_path(back) and back != "/" else {}
        if sent:
            params["ended"] = "1"
        if sessions.went_idle(request):
            params["idle"] = "1"
        if params:
            target += "?" + urlencode(params)
    if request is not None and request.headers.get("HX-Request"):
        return Response(status_code=401, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)


def local_path(path: str) -> bool:
    """A path on this site to go back to after signing in (never another site's URL)."""
    return (
        path.startswith("/")
        and not path.startswith("//")
        and not any(c in path for c in "\\\r\n")
        and not path.startswith("/login")
    )


def message_page(
    request: Request, account: Account | None, *, status_code: int, title: str, message: str
) -> HTMLResponse:
    """A page that says why a request was refused; for an htmx request, only the panel it
    was going to replace (same id, the message in place of the content), which htmx swaps
    in for 4xx answers too (`htmx-config` in base.html): a refused plan must not leave the
    last plan on screen as if nothing happened."""
    target = request.headers.get("HX-Target") if request.headers.get("HX-Request") else None
    if target:
        return render(
            request,
            "_refused.html",
            account,
            status_code=status_code,
            target=target,
            title=title,
            message=message,
        )
    return render(
        request, "message.html", account, status_code=status_code, title=title, message=message
    )


def forbidden(request: Request, account: Account) -> HTMLResponse:
    """A 403 page naming who is signed in."""
    return message_page(
        request,
        account,
        status_code=403,
        title="Not for your role",
        message=f"Signed in as {account.username} ({account.role}); this page is not for you.",
    )


def error_page(request: Request, account: Account, error: MedloopError) -> HTMLResponse:
    """The page for a refused request: the domain error's message and HTTP status."""
    return message_page(
        request, account, status_code=status_for(error), title="Cannot do that", message=str(error)
    )


def _signed_in_as(*roles: Role) -> Callable[[Request, Account | None], Account]:
    def account_for_page(request: Request, account: PageAccount) -> Account:
        if account is None:
            raise PageStop(to_login(request))
        if account.role not in roles:
            raise PageStop(forbidden(request, account))
        return account

    return account_for_page


#: The signed-in account of a page for these roles; others go to login or get a 403 page.
AnnotatorPage = Annotated[Account, Depends(_signed_in_as(Role.ANNOTATOR))]
ReviewerPage = Annotated[Account, Depends(_signed_in_as(*REVIEWER_ROLES))]
DoctorPage = Annotated[Account, Depends(_signed_in_as(Role.DOCTOR))]
AdminPage = Annotated[Account, Depends(_signed_in_as(Role.ADMIN))]
