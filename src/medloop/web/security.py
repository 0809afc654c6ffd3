"""Edge security: login rate limiting (in memory) and CSRF tokens (stateless).

The login limiter is per server process and bounded; it forgets on restart, which lifts a
lock-out early.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from medloop.workflows.accounts import derive_secret
from medloop.workflows.workspace import Workspace

SESSION_COOKIE = "medloop_session"
LOGIN_CSRF_COOKIE = "medloop_login_csrf"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"


class LoginLimiter:
    """At most `max_failures` failed logins per (username, client) in `window` seconds."""

    def __init__(
        self,
        *,
        max_failures: int = 5,
        window: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 10_000,
    ) -> None:
        self.max_failures = max_failures
        self.window = window
        self.clock = clock
        self.max_keys = max_keys
        self._failures: OrderedDict[tuple[str, str], deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def _recent(self, key: tuple[str, str]) -> deque[float]:
        now = self.clock()
        times = self._failures.get(key, deque())
        while times and now - times[0] > self.window:
            times.popleft()
        return times

    def retry_after(self, username: str, client: str) -> int:
        """Seconds until another attempt is allowed (0 when allowed now)."""
        key = (username.lower(), client)
        with self._lock:
            times = self._recent(key)
            if len(times) < self.max_failures:
                return 0
            return max(1, int(self.window - (self.clock() - times[0])) + 1)

    def failed(self, username: str, client: str) -> None:
        key = (username.lower(), client)
        with self._lock:
            times = self._recent(key)
            times.append(self.clock())
            self._failures[key] = times
            self._failures.move_to_end(key)
            while len(self._failures) > self.max_keys:
                self._failures.popitem(last=False)

    def succeeded(self, username: str, client: str) -> None:
        with self._lock:
            self._failures.pop((username.lower(), client), None)


def csrf_token(ws: Workspace, session_token: str) -> str:
    """The CSRF token bound to one session (stateless: derived from the session token)."""
    return derive_secret(ws, "csrf", session_token)


def new_login_csrf() -> str:
    return secrets.token_urlsafe(24)
