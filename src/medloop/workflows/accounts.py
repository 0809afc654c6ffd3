"""Accounts: users with Argon2 password hashes, login, stateless signed tokens, and
what an admin does to an account (disable, enable, set its password or role, end its
sessions; each audited).

Tokens are `<payload>.<signature>`: the payload is base64url JSON (user id, purpose,
expiry, a fingerprint of the password hash, the user's token epoch) signed with
HMAC-SHA256 under `Settings.resolved_secret_key`. Changing a password, disabling the
account or ending its sessions (which raise the epoch) invalidates every token issued
before; the role is read from the database, not from the token.

A browser's session token also names its sign-in and when it was last used: it is refused
once unused for longer than `MEDLOOP_IDLE_SIGN_OUT_MINUTES` (`idle_limit`), and each use
renews it (`renew_session`: a new token for the same sign-in, with the same absolute
expiry, `TOKEN_TTL` after signing in). Signing out revokes the sign-in, so every renewal
ends with it.

>>> hasher_ok = verify_password(hash_password("s3cret-pass"), "s3cret-pass")
>>> hasher_ok
True
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy.orm import Session

from medloop.exceptions import ConflictError, InvalidInputError, NotFoundError
from medloop.store import erasure, logins, members
from medloop.store import repository as repo
from medloop.store.models import User
from medloop.types import Role, look_up_option
from medloop.workflows.workspace import Workspace

logger = logging.getLogger(__name__)

MIN_PASSWORD_LENGTH = 8
#: Passwords guessed first (the head of public leaked-password lists, and this product's
#: own words); one of these with digits or "!" after it is refused too (NIST SP 800-63B
#: asks for a check against commonly used passwords, not for composition rules).
COMMON_PASSWORDS = frozenset(
    {"password", "passwort", "qwerty", "qwertyuiop", "azerty", "abc", "abcdef", "abcd",
     "letmein", "welcome", "iloveyou", "admin", "administrator", "changeme", "secret",
     "trustno", "monkey", "dragon", "football", "baseball", "sunshine", "princess",
     "master", "superman", "starwars", "login", "guest", "test", "user", "passw0rd",
     "p@ssw0rd", "p@ssword", "medloop", "doctor", "hospital", "patient", "annotator", ""}
)  # fmt: skip
#: Actors the audit log uses for automated work: nobody may sign in under these names.
RESERVED_USERNAMES = frozenset({"system", "model", "cli"})
#: How the pseudonym of an erased person begins (`erase_user`); no account is named so.
ERASED_PREFIX = "erased-"
#: Lifetime of API bearer tokens and session cookies, in seconds (12 hours): a session
#: used within its idle limit is renewed (`renew_session`), never past this from sign-in.
TOKEN_TTL = 12 * 3600
#: The purpose of a browser's session cookie token (an API bearer token's is "api").
SESSION = "session"
_hasher = PasswordHasher()


@dataclass(frozen=True)
class Account:
    """A signed-in person: what the web needs to know, nothing more."""

    id: int
    username: str
    role: Role


def hash_password(password: str) -> str:
    """Argon2id hash of `password`."""
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Whether `password` matches the stored hash (False for accounts without one)."""
    if not password_hash:
        return False
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def generate_password() -> str:
    """A random password for a new account (printed once by the CLI)."""
    return secrets.token_urlsafe(12)


def _check_username(username: str) -> str:
    name = username.strip()
    if not (1 <= len(name) <= 100) or not all(
        c.isascii() and (c.isalnum() or c in "._-@") for c in name
    ):  # ASCII only: a look-alike letter must not make a second "dr_house"
        raise InvalidInputError(
            f"username {username!r} must be 1-100 letters, digits or . _ - @ characters"
        )
    if name.lower() in RESERVED_USERNAMES:
        raise InvalidInputError(f"{name!r} names the audit log's automated work; choose another")
    if name.lower().startswith(ERASED_PREFIX):
        raise InvalidInputError(f"names starting with {ERASED_PREFIX!r} stand for erased people")
    return name


def check_password(password: str, *, username: str) -> None:
    """Refuse a password shorter than `MIN_PASSWORD_LENGTH`, one of the most guessed
    (`COMMON_PASSWORDS`, also with digits or "!" after it, or digits alone) or one that
    holds the username."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInputError(f"passwords need at least {MIN_PASSWORD_LENGTH} characters")
    stem = password.lower().rstrip("0123456789!")
    if stem in COMMON_PASSWORDS or len(set(password)) < 3:
        raise InvalidInputError("that password is among the first ones guessed; choose another")
    if len(username) >= 3 and username.lower() in password.lower():
        raise InvalidInputError("a password must not contain the username")


def add_user(ws: Workspace, *, username: str, role: Role | str, password: str) -> Account:
    """Create a person's account (`check_password` rules); a username taken already, in
    any mix of upper and lower case, raises ConflictError."""
    name = _check_username(username)
    chosen = look_up_option(role, Role)
    check_password(password, username=name)
    with ws.db.session() as s:
        user = repo.create_user(
            s, username=name, role=chosen, password_hash=hash_password(password)
        )
        repo.audit(
            s,
            actor="system",
            action="user.add",
            entity="user",
            entity_id=user.id,
            detail={"role": str(chosen)},
        )
        account = Account(id=user.id, username=user.username, role=chosen)
    logger.info("added user %d with role %s", account.id, chosen)
    return account


def authenticate(ws: Workspace, *, username: str, password: str) -> Account | None:
    """The account if `password` is right and the account enabled, else None (same cost
    whether or not the user exists, or is disabled)."""
    with ws.db.session() as s:
        try:
            user = repo.get_user(s, username=username)
        except NotFoundError:
            _hasher.hash(password)  # spend the same time as a real check
            return None
        if user.is_simulated or not verify_password(user.password_hash, password):
            return None
        return None if user.is_disabled else _account(user)


def _account(user: User | repo.UserCredentials) -> Account:
    return Account(id=user.id, username=user.username, role=look_up_option(user.role, Role))


def account_in_role(ws: Workspace, *, username: str, roles: Collection[Role]) -> Account:
    """The real, enabled account `username`, which must have one of `roles` (for the CLI,
    where nobody signs in): NotFoundError, or InvalidInputError for another role."""
    with ws.db.session() as s:
        return _account(repo.get_user_in_role(s, username=username, roles=roles))


# --- managing accounts -------------------------------------------------------------------


@dataclass(frozen=True)
class UserSummary:
    """An account as an admin sees it in a list (never its password hash); `projects`
    names the projects it is a member of (`workflows.access`)."""

    username: str
    role: Role
    disabled: bool
    simulated: bool
    projects: list[str] = field(default_factory=list)


def list_users(ws: Workspace) -> list[UserSummary]:
    """Every account, people's and simulated ones, by username."""
    with ws.db.session() as s:
        named = members.memberships(s)
        return [
            UserSummary(
                username=u.username,
                role=look_up_option(u.role, Role),
                disabled=u.is_disabled,
                simulated=u.is_simulated,
                projects=named.get(u.id, []),
            )
            for u in repo.list_users(s)
        ]


def disable_user(ws: Workspace, *, username: str, actor: str) -> Account:
    """Keep `username` from signing in and end every token it holds (enabling it again
    does not bring them back). The last enabled admin cannot be disabled: ConflictError."""

    def change(s: Session, user: User) -> dict[str, Any]:
        with _keeping_an_admin(s, user):
            user.is_disabled = True
            user.token_epoch += 1
        return {}

    return _change_user(ws, username=username, actor=actor, action="user.disable", change=change)


def enable_user(ws: Workspace, *, username: str, actor: str) -> Account:
    """Let a disabled `username` sign in again."""

    def change(_s: Session, user: User) -> dict[str, Any]:
        user.is_disabled = False
        return {}

    return _change_user(ws, username=username, actor=actor, action="user.enable", change=change)


def set_password(ws: Workspace, *, username: str, password: str, actor: str) -> Account:
    """Give `username` a new password (`check_password` rules); every session and API
    token issued before stops working."""
    check_password(password, username=username)
    password_hash = hash_password(password)

    def change(_s: Session, user: User) -> dict[str, Any]:
        user.password_hash = password_hash
        return {}

    return _change_user(
        ws, username=username, actor=actor, action="user.set_password", change=change
    )


def set_role(ws: Workspace, *, username: str, role: Role | str, actor: str) -> Account:
    """Give `username` another role; its tokens keep working, and each request is
    checked against the new role (signed-in requests read it from the database). The
    last enabled admin keeps the role: ConflictError."""
    chosen = look_up_option(role, Role)

    def change(s: Session, user: User) -> dict[str, Any]:
        detail = {"from": user.role, "to": str(chosen)}
        with _keeping_an_admin(s, user):
            user.role = str(chosen)
        return detail

    return _change_user(ws, username=username, actor=actor, action="user.set_role", change=change)


def revoke_sessions(ws: Workspace, *, username: str, actor: str) -> Account:
    """End every session and API token of `username`, keeping its password."""

    def change(_s: Session, user: User) -> dict[str, Any]:
        user.token_epoch += 1
        return {}

    return _change_user(
        ws, username=username, actor=actor, action="user.revoke_sessions", change=change
    )


def _change_user(
    ws: Workspace,
    *,
    username: str,
    actor: str,
    action: str,
    change: Callable[[Session, User], dict[str, Any]],
) -> Account:
    """Apply `change` to the person's account `username` and audit it as `action` with
    the detail `change` returns, in one transaction. This process forgets the tokens it
    checked for the account at once; other server processes recheck them within
    `TOKEN_RECHECK_SECONDS`."""
    with ws.db.session() as s:
        user = repo.get_user(s, username=username)
        if user.is_simulated:
            raise InvalidInputError(f"user {username!r} is simulated; it cannot sign in")
        detail = change(s, user)
        repo.audit(s, actor=actor, action=action, entity="user", entity_id=user.id, detail=detail)
        account = _account(user)
    for signature, (checked, _) in list(ws.checked_tokens.items()):
        if checked.id == account.id:
            ws.checked_tokens.pop(signature, None)
    logger.info("%s of user %d by %s", action, account.id, actor)
    return account


@dataclass(frozen=True)
class UserErasure:
    """What erasing a person's account changes (`erased` False: a dry run, nothing
    changed): the `pseudonym` now naming them, where it replaced their username
    (`audit_entries`, `jobs`), the project `memberships`, held task (`holds`) and
    `skips` removed, and the `answers` kept under the pseudonym."""

    username: str
    pseudonym: str
    erased: bool
    audit_entries: int
    jobs: int
    memberships: int
    holds: int
    skips: int
    answers: int


def erase_user(
    ws: Workspace, *, username: str, reason: str, actor: str, dry_run: bool = True
) -> UserErasure:
    """Erase a person who leaves (e.g. a lay volunteer): their account is disabled for
    good (no password, every token ended) and their username replaced everywhere by a
    stable pseudonym, ``erased-`` and a keyed digest of the account's id. Their answers
    stay, under the pseudonym, so consensus and models stay reproducible. Audited as
    ``user.erased`` under `actor` with `reason` (after the rename: the entry names only
    the pseudonym). With `dry_run` (the default) nothing changes. Only annotators are
    erased (InvalidInputError for a doctor or an admin, whose name on signed labels and
    in the audit log is part of the record), and no simulated account (no person)."""
    text = reason.strip()
    if not text:
        raise InvalidInputError("give the reason for the erasure (e.g. 'left the project')")
    with ws.db.session() as s:
        user = repo.get_user(s, username=username)
        if user.is_simulated:
            raise InvalidInputError(f"user {username!r} is simulated: no person to erase")
        if user.username.lower().startswith(ERASED_PREFIX):
            raise ConflictError(f"user {username!r} is erased already")
        if user.role != Role.ANNOTATOR:
            raise InvalidInputError(
                f"user {username!r} is a {user.role}: only lay annotators are erased, since "
                "a doctor's or admin's name on final labels, decisions and the audit log is "
                "part of the medical and security record; disable the account instead "
                "(medloop users disable)"
            )
        user_id, name = user.id, user.username
        pseudonym = erased_name(ws, user_id=user_id)
        user.is_disabled = True
        user.password_hash = None
        user.token_epoch += 1
        renamed = erasure.pseudonymise_user(s, user=user, pseudonym=pseudonym)
        if dry_run:
            s.rollback()
        else:
            repo.audit(
                s,
                actor=actor,
                action="user.erased",
                entity="user",
                entity_id=user_id,
                detail={"pseudonym": pseudonym, "reason": text, "answers": renamed.answers},
            )
    if not dry_run:
        for signature, (checked, _) in list(ws.checked_tokens.items()):
            if checked.id == user_id:
                ws.checked_tokens.pop(signature, None)
        logger.info("erased user %d by %s", user_id, actor)
    return UserErasure(
        username=name,
        pseudonym=pseudonym,
        erased=not dry_run,
        audit_entries=renamed.audit_entries,
        jobs=renamed.jobs,
        memberships=renamed.memberships,
        holds=renamed.holds,
        skips=renamed.skips,
        answers=renamed.answers,
    )


def erased_name(ws: Workspace, *, user_id: int) -> str:
    """The pseudonym of erased account `user_id`: the same every time under this home's
    key, and nobody without the key can tell whose it was."""
    key = ws.settings.resolved_secret_key
    digest = hmac.new(key, f"erased-user:{user_id}".encode(), hashlib.sha256).hexdigest()
    return ERASED_PREFIX + digest[:16]


@contextmanager
def _keeping_an_admin(session: Session, user: User) -> Iterator[None]:
    """Refuse the change made inside when it leaves no enabled admin and `user` was one:
    nobody could administer the workspace. Two admins disabled at once cannot both pass:
    PostgreSQL keeps the admins' rows locked from the first look, and on SQLite the
    second look follows the write, which one writer makes at a time."""
    was_admin = user.id in repo.enabled_admin_ids(session)
    yield
    session.flush()
    if was_admin and not repo.enabled_admin_ids(session):
        raise ConflictError(
            f"{user.username!r} is the last enabled admin; nobody could administer the workspace"
        )


# --- tokens ------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(key: bytes, payload: str) -> str:
    return _b64(hmac.new(key, payload.encode(), hashlib.sha256).digest())


def _fingerprint(key: bytes, password_hash: str | None) -> str:
    return _sign(key, f"pw:{password_hash or ''}")[:16]


def _signed(key: bytes, claims: dict[str, Any]) -> str:
    payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
    return f"{payload}.{_sign(key, str(claims['p']) + ':' + payload)}"


def issue_token(
    ws: Workspace, account: Account, *, purpose: str = "api", ttl: int = TOKEN_TTL
) -> str:
    """A signed token naming `account` for `purpose` ("api" or "session"). A session
    token also names its sign-in (kept by every renewal) and when it was last used: now."""
    key = ws.settings.resolved_secret_key
    now = int(time.time())
    with ws.db.session() as s:
        user = s.get(User, account.id)
        if user is None:
            raise NotFoundError(f"no user with id {account.id}")
        claims: dict[str, Any] = {
            "u": user.id,
            "p": purpose,
            "e": now + ttl,
            "f": _fingerprint(key, user.password_hash),
            "g": user.token_epoch,
        }
    if purpose == SESSION:
        claims |= {"s": secrets.token_urlsafe(16), "a": now}
    else:
        claims["n"] = secrets.token_urlsafe(6)  # two tokens are never alike (revoking one)
    return _signed(key, claims)


# Every request checks its token's signature and expiry; whether the user still exists,
# enabled, with the same password, role and token epoch, and whether the token was
# revoked, is read from the database at most every TOKEN_RECHECK_SECONDS per token (per
# sign-in for sessions, whose renewals share the answer; that read was a fifth of the
# server's CPU under load), so a removed or disabled user, a changed password or role, or
# a sign-out in another process takes effect within that time.
TOKEN_RECHECK_SECONDS = 10.0
MAX_CHECKED_TOKENS = 10_000


@dataclass(frozen=True)
class _Claims:
    signature: str
    user_id: int
    expires: int
    fingerprint: str
    epoch: int
    raw: dict[str, Any]
    #: A session's sign-in (every renewal keeps it); None for an API token.
    sign_in: str | None = None
    #: When a session was last used (seconds since the epoch); None for an API token.
    active: int | None = None

    @property
    def key(self) -> str:
        """What revocation and the recheck cache go by: a session's sign-in (a sign-out
        ends every renewal of it, and copies of them), an API token's signature."""
        return self.sign_in or self.signature


def _verified_claims(ws: Workspace, token: str, *, purpose: str) -> _Claims | None:
    """The claims of a well-signed, unexpired token for `purpose`; else None. Whether a
    session is idle is not checked here (`_idle`)."""
    key = ws.settings.resolved_secret_key
    payload, _, signature = token.partition(".")
    if not payload or not signature:
        return None
    if not hmac.compare_digest(signature, _sign(key, purpose + ":" + payload)):
        return None
    try:
        raw = json.loads(_unb64(payload))
        # tokens issued before migration 0013 carry no epoch: the first one is 0
        session = purpose == SESSION  # sessions from before idle expiry name no sign-in
        claims = _Claims(
            signature,
            int(raw["u"]),
            int(raw["e"]),
            str(raw["f"]),
            int(raw.get("g", 0)),
            raw,
            sign_in=str(raw["s"]) if session else None,
            active=int(raw["a"]) if session else None,
        )
    except (ValueError, KeyError, TypeError):
        return None
    if raw.get("p") != purpose or claims.expires < time.time():
        return None
    return claims


def idle_limit(ws: Workspace) -> float:
    """Seconds without use after which a session is refused (0: never)."""
    return ws.settings.idle_sign_out_minutes * 60


def _idle(ws: Workspace, claims: _Claims, now: float) -> bool:
    limit = idle_limit(ws)
    return claims.active is not None and limit > 0 and now - claims.active > limit


def _revocation_digest(ws: Workspace, key: str) -> str:
    return derive_secret(ws, "revoked", key)[:64]


def account_for_token(ws: Workspace, token: str, *, purpose: str = "api") -> Account | None:
    """The account a valid, unexpired, unrevoked token for `purpose` names; None for any
    bad token, and for a session unused for longer than `idle_limit`."""
    claims = _verified_claims(ws, token, purpose=purpose)
    now = time.time()
    if claims is None or _idle(ws, claims, now):
        return None
    checked = ws.checked_tokens.get(claims.key)
    if checked is not None and now - checked[1] < TOKEN_RECHECK_SECONDS:
        return checked[0]
    with ws.db.session() as s:
        user = repo.user_credentials(s, user_id=claims.user_id)
        revoked = logins.is_revoked(s, digest=_revocation_digest(ws, claims.key))
    if user is None or user.is_simulated or user.is_disabled or revoked:
        return None
    if claims.epoch != user.token_epoch:
        return None
    key = ws.settings.resolved_secret_key
    if not hmac.compare_digest(claims.fingerprint, _fingerprint(key, user.password_hash)):
        return None
    account = _account(user)
    if len(ws.checked_tokens) >= MAX_CHECKED_TOKENS:
        ws.checked_tokens.clear()
    ws.checked_tokens[claims.key] = (account, now)
    return account


def session_went_idle(ws: Workspace, token: str) -> bool:
    """Whether `token` is a well-signed, unexpired session token refused only for having
    gone unused for longer than `idle_limit` (to say why someone was signed out)."""
    claims = _verified_claims(ws, token, purpose=SESSION)
    return claims is not None and _idle(ws, claims, time.time())


@dataclass(frozen=True)
class RenewedSession:
    """A session token renewed by a use of it: `token`, and `max_age`, the seconds left
    until its sign-in's absolute expiry (`TOKEN_TTL` after signing in, never moved)."""

    token: str
    max_age: int


def renew_session(ws: Workspace, token: str) -> RenewedSession | None:
    """`token`, a session token `account_for_token` accepted, as last used now: the same
    sign-in, account and absolute expiry. None where that changes nothing: idle expiry
    off, or renewed already this second."""
    claims = _verified_claims(ws, token, purpose=SESSION)
    now = int(time.time())
    if claims is None or claims.active is None or idle_limit(ws) <= 0:
        return None
    if claims.active >= now or _idle(ws, claims, now):
        return None
    renewed = _signed(ws.settings.resolved_secret_key, claims.raw | {"a": now})
    return RenewedSession(token=renewed, max_age=claims.expires - now)


def sign_in_of(ws: Workspace, token: str) -> str | None:
    """The sign-in a well-signed session token belongs to (the same for every renewal of
    it: what the session's CSRF token derives from); None for any other token."""
    claims = _verified_claims(ws, token, purpose=SESSION)
    return None if claims is None else claims.sign_in


def revoke_token(ws: Workspace, token: str, *, purpose: str) -> bool:
    """End a token before its expiry (signing out; a session's every renewal with it):
    this process refuses it at once, every other server process within
    `TOKEN_RECHECK_SECONDS`. False when the token was not valid anyway."""
    claims = _verified_claims(ws, token, purpose=purpose)
    if claims is None:
        return False
    ws.checked_tokens.pop(claims.key, None)
    with ws.db.session() as s:
        logins.revoke(
            s,
            digest=_revocation_digest(ws, claims.key),
            expires_at=float(claims.expires),
            now=time.time(),
        )
    return True


def derive_secret(ws: Workspace, purpose: str, value: str) -> str:
    """A keyed digest of `value` for `purpose` (e.g. a CSRF token bound to a session)."""
    return _sign(ws.settings.resolved_secret_key, f"{purpose}:{value}")
