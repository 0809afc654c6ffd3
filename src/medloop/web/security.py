"""Edge security: login rate limiting (in the database) and CSRF tokens (stateless).

Failed logins are counted in the database, so every server process of `serve --workers
N` shares one count and a restart does not lift a lock-out.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

from medloop.store import logins
from medloop.workflows.accounts import derive_secret
from medloop.workflows.workspace import Workspace

SESSION_COOKIE = "medloop_session"
LOGIN_CSRF_COOKIE = "medloop_login_csrf"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"


class LoginLimiter:
    """At most `max_failures` failed logins per (username, client) in `window` seconds.

    The pair is stored only as a keyed digest; a success clears its failures, and each
    new failure forgets everyone's failures older than the window.
    """

    def __init__(
        self,
        ws: Workspace,
        *,
        max_failures: int = 5,
        window: float = 300.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ws = ws
        self.max_failures = max_failures
        self.window = window
        self.clock = clock

    def _key(self, username: str, client: str) -> str:
        return derive_secret(self.ws, "login-failures", f"{username.lower()}\n{client}")[:64]

    def retry_after(self, username: str, client: str) -> int:
        """Seconds until another attempt is allowed (0 when allowed now)."""
        now = self.clock()
        with self.ws.db.session() as s:
            times = logins.failures_since(
                s, key=self._key(username, client), since=now - self.window
            )
        if len(times) < self.max_failures:
            return 0
        # allowed again once all but max_failures - 1 of them are older than the window
        unlocks = times[len(times) - self.max_failures] + self.window
        return max(1, int(unlocks - now) + 1)

    def failed(self, username: str, client: str) -> None:
        now = self.clock()
        with self.ws.db.session() as s:
            logins.prune_failures(s, before=now - self.window)
            logins.record_failure(s, key=self._key(username, client), at=now)

    def succeeded(self, username: str, client: str) -> None:
        with self.ws.db.session() as s:
            logins.clear_failures(s, key=self._key(username, client))


def csrf_token(ws: Workspace, session_token: str) -> str:
    """The CSRF token bound to one session (stateless: derived from the session token)."""
    return derive_secret(ws, "csrf", session_token)


def new_login_csrf() -> str:
    return secrets.token_urlsafe(24)
