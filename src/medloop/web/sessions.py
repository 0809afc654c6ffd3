"""Browser sessions on the server: the session cookie, its idle expiry and its renewal.

A session cookie's token says when it was last used (`accounts.renew_session`): the
server refuses it once `MEDLOOP_IDLE_SIGN_OUT_MINUTES` have passed since, whatever the
browser does (JavaScript off, a laptop closed, a copied cookie). Each request a person
makes renews the cookie (`renew`, sent back by `SessionRenewal`), and `idle.js` reports
use that sends no request (reading, scrolling, typing) to `POST /api/auth/activity`.
Polling is not use: htmx refreshing a region on a timer marks its requests with
`POLL_HEADER` (`app.js`), and they never renew the cookie, so a page left alone on a
ward computer cannot keep itself signed in.
"""

from __future__ import annotations

from fastapi import Request, Response
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from medloop.web.security import SESSION_COOKIE
from medloop.workflows import accounts
from medloop.workflows.workspace import Workspace

#: Sent (any value) by requests a page makes on its own, on a timer (`app.js`).
POLL_HEADER = "X-Medloop-Poll"
#: Where a request keeps the renewed cookie (`request.state`) for `SessionRenewal`.
_RENEWED = "medloop_renewed_session"
#: Where a request notes that its session cookie was refused for want of use.
_IDLE = "medloop_idle_session"


def secure(request: Request) -> bool:
    """Whether cookies are sent over HTTPS only: in production, and whenever this request
    came over HTTPS (a deployment that did not say it is production)."""
    return (
        request.app.state.ws.settings.environment == "production" or request.url.scheme == "https"
    )


def session_cookie(request: Request, token: str, *, max_age: int) -> str:
    """The Set-Cookie header value that gives the browser session `token` (HttpOnly,
    SameSite=Lax, Secure where `secure`)."""
    carrier = Response()
    carrier.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=max_age,
        httponly=True,
        samesite="lax",
        secure=secure(request),
    )
    return carrier.headers["set-cookie"]


def renew(request: Request, ws: Workspace, token: str) -> None:
    """A person used the signed-in session `token`: have the response renew the cookie,
    unless the request is polling (`POLL_HEADER`)."""
    if request.headers.get(POLL_HEADER) is not None:
        return
    renewed = accounts.renew_session(ws, token)
    if renewed is not None:
        setattr(
            request.state, _RENEWED, session_cookie(request, renewed.token, max_age=renewed.max_age)
        )


def note_refused(request: Request, ws: Workspace, token: str) -> None:
    """The session cookie `token` was refused: note whether for want of use (`went_idle`)."""
    setattr(request.state, _IDLE, accounts.session_went_idle(ws, token))


def went_idle(request: Request) -> bool:
    """Whether this request's session cookie was refused for having gone unused for
    longer than the idle limit (the reply then says so)."""
    return bool(getattr(request.state, _IDLE, False))


class SessionRenewal:
    """Sends the cookie `renew` chose with the response, unless the response sets the
    session cookie itself (signing in or out). Plain ASGI, like `app.SecurityHeaders`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})  # what `request.state` reads and writes

        async def send_with_cookie(message: Message) -> None:
            renewed = state.get(_RENEWED)
            if message["type"] == "http.response.start" and renewed:
                headers = MutableHeaders(scope=message)
                own = f"{SESSION_COOKIE}="
                if not any(value.startswith(own) for value in headers.getlist("set-cookie")):
                    headers.append("set-cookie", renewed)
            await send(message)

        await self.app(scope, receive, send_with_cookie)
