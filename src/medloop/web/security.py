"""Edge security: login rate limiting (in the database), a cap on concurrent password
checks, and CSRF tokens (stateless).

Failed logins are counted in the database, so every server process of `serve --workers
N` shares one count and a restart does not lift a lock-out.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from medloop.store import logins
from medloop.workflows import accounts
from medloop.workflows.workspace import Workspace

SESSION_COOKIE = "medloop_session"
LOGIN_CSRF_COOKIE = "medloop_login_csrf"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
#: Password checks (Argon2id, 64 MiB each) one server process runs at once; a login
#: beyond them is answered 503 at once rather than queued (a queue of them held every
#: request thread and gigabytes of memory).
MAX_PASSWORD_CHECKS = 4
#: Seconds a login refused for want of a free password check is told to wait.
BUSY_RETRY_AFTER = 1


class LoginRefused(Exception):
    """A login refused before its password was checked: `status` 429 (too many failed
    logins) or 503 (every password check of this process busy); `retry_after` seconds."""

    def __init__(self, status: int, retry_after: int) -> None:
        super().__init__(f"login refused ({status}); retry after {retry_after} s")
        self.status = status
        self.retry_after = retry_after


@dataclass(frozen=True)
class Reservation:
    """A login attempt counted as failed until `LoginLimiter.succeeded` takes it back:
    its `pair` key and the ids of its failure rows."""

    pair: str
    ids: tuple[int, ...]


class LoginLimiter:
    """At most `max_failures` failed logins per (username, client) and
    `max_client_failures` per client, whatever the usernames, in `window` seconds; at
    most `max_checks` password checks at once in this process.

    An attempt is recorded as a failure before its password is checked, and counted in
    the same transaction, so parallel attempts cannot pass the limits together. Keys are
    keyed digests, never a name or an address; a success clears its pair's failures, and
    each attempt forgets everyone's failures older than the window.
    """

    def __init__(
        self,
        ws: Workspace,
        *,
        max_failures: int = 5,
        max_client_failures: int = 50,
        window: float = 300.0,
        max_checks: int = MAX_PASSWORD_CHECKS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ws = ws
        self.max_failures = max_failures
        self.max_client_failures = max_client_failures
        self.window = window
        self.checks = threading.BoundedSemaphore(max_checks)
        self.clock = clock

    def _key(self, username: str, client: str) -> str:
        pair = f"{username.lower()}\n{client}"
        return accounts.derive_secret(self.ws, "login-failures", pair)[:64]

    def _client_key(self, client: str) -> str:
        return accounts.derive_secret(self.ws, "login-failures-client", _network(client))[:64]

    def _wait(self, times: list[float], limit: int, now: float) -> int:
        """Seconds until fewer than `limit` of `times` (this attempt's among them) are
        in the window; 0 when this attempt is within the limit."""
        if len(times) <= limit:
            return 0
        # allowed again once all but limit - 1 of the others are older than the window
        unlocks = times[len(times) - 1 - limit] + self.window
        return max(1, int(unlocks - now) + 1)

    def reserve(self, username: str, client: str) -> Reservation:
        """Record this attempt as a failure of its pair and its client, or raise
        LoginRefused (429, nothing recorded) when that would pass either limit."""
        now = self.clock()
        pair, client_key = self._key(username, client), self._client_key(client)
        with self.ws.db.writing() as s:
            logins.take_turn(s, key=client_key)  # both counts are this client's
            logins.prune_failures(s, before=now - self.window)
            ids = (
                logins.record_failure(s, key=pair, at=now),
                logins.record_failure(s, key=client_key, at=now),
            )
            limits = ((pair, self.max_failures), (client_key, self.max_client_failures))
            wait = max(
                self._wait(logins.failures_since(s, key=key, since=now - self.window), limit, now)
                for key, limit in limits
            )
            if wait:  # raising rolls the attempt back: it checked no password
                raise LoginRefused(429, wait)
        return Reservation(pair=pair, ids=ids)

    def succeeded(self, reservation: Reservation) -> None:
        """Take back a successful attempt and clear its pair's failures (the client's
        other failures stay: one right password must not lift a guesser's limit)."""
        with self.ws.db.writing() as s:
            logins.remove_failures(s, ids=reservation.ids)
            logins.clear_failures(s, key=reservation.pair)

    def authenticate(self, username: str, password: str, client: str) -> accounts.Account | None:
        """`accounts.authenticate` within the limits: the account, or None for a wrong
        username or password (then counted as a failure); LoginRefused when refused."""
        # A full process refuses before any database work: under a flood of logins that
        # is what keeps the other requests' threads and the database free.
        if not self.checks.acquire(blocking=False):  # never queue: each waiter holds a thread
            raise LoginRefused(503, BUSY_RETRY_AFTER)
        try:
            reservation = self.reserve(username, client)
            account = accounts.authenticate(self.ws, username=username, password=password)
        finally:
            self.checks.release()
        if account is not None:
            self.succeeded(reservation)
        return account


def _network(client: str) -> str:
    """The address a client is counted under: an IPv6 client by its /64 (one host
    usually holds all of it, so a new address per attempt would lift the limit)."""
    try:
        address = ipaddress.ip_address(client)
    except ValueError:  # not an address (e.g. "testclient")
        return client
    if not isinstance(address, ipaddress.IPv6Address):
        return client
    if address.ipv4_mapped is not None:  # a dual-stack socket's IPv4 client
        return str(address.ipv4_mapped)
    return str(ipaddress.ip_network(f"{address}/64", strict=False))


def csrf_token(ws: Workspace, session_token: str) -> str:
    """The CSRF token bound to one sign-in (stateless: derived from the session token's
    sign-in, so a page opened before the cookie was renewed still sends a valid one); ""
    for a token that is not a session's, which no sent token matches."""
    sign_in = accounts.sign_in_of(ws, session_token)
    return "" if sign_in is None else accounts.derive_secret(ws, "csrf", sign_in)


def login_csrf(request_cookie: str | None) -> str:
    """The login form's CSRF token (double-submit, with its cookie): the browser's own
    while it holds one, so a second sign-in page (another tab signed out too) does not
    spoil the first one's form; else a new random one."""
    if request_cookie and _LOGIN_CSRF.fullmatch(request_cookie):
        return request_cookie
    return secrets.token_urlsafe(24)


_LOGIN_CSRF = re.compile(r"[A-Za-z0-9_-]{32}")
