"""Browser sessions: argon2 passwords, the session table, the login lockout.

In memory on purpose: a session is a shift's login at one browser, and a daemon restart
asks the agent to log in again (the page says so) rather than keep a table of live secrets
on disk. A session id and its CSRF token are 256-bit random values; the table keeps only
the SHA-256 of the id, so a memory dump or a log line does not hand out sessions.

The lockout counts failed logins per *name* (not per address: agents of one centre share a
NAT): past ``web.lockout_after`` failures in a row the name is locked for
``web.lockout_s``, and a locked name is refused before its password is checked, so a
guesser learns nothing more. A successful login clears the count.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from cti.settings import WebSettings, WebUser

__all__ = [
    "LoginRefused",
    "Session",
    "SessionTable",
    "hash_password",
    "verify_password",
]

# argon2-cffi's defaults (RFC 9106's second recommended option, argon2id): ~50 ms a check
_HASHER: Final = PasswordHasher()
# a dummy hash checked for unknown names, so the time does not tell which names exist
_DUMMY_HASH: Final = _HASHER.hash(secrets.token_hex(16))
MAX_PASSWORD_CHARS: Final = 256
MAX_SESSIONS: Final = 10_000


def hash_password(password: str) -> str:
    """The argon2id hash of *password* for ``web.users[].password_hash``."""
    return _HASHER.hash(password)


def verify_password(stored_hash: str, password: str) -> bool:
    """True when *password* matches; a malformed hash is a mismatch, never an error."""
    try:
        return _HASHER.verify(stored_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


@dataclass(slots=True)
class Session:
    """One logged-in browser."""

    user: WebUser
    csrf: str
    created: float
    seen: float
    streams: int = 0


class LoginRefused(Exception):  # noqa: N818 - a refusal, not an error of ours
    """A login that did not succeed: `locked` tells the lockout from a wrong password."""

    def __init__(self, *, locked: bool, retry_after_s: float = 0.0) -> None:
        super().__init__("locked" if locked else "bad_credentials")
        self.locked = locked
        self.retry_after_s = retry_after_s


@dataclass(slots=True)
class _Failures:
    count: int = 0
    locked_until: float = 0.0


@dataclass
class SessionTable:
    """The live sessions and the failed-login counts (see the module docstring)."""

    settings: WebSettings
    clock: Callable[[], float] = time.monotonic
    _sessions: dict[bytes, Session] = field(default_factory=dict)
    _failures: dict[str, _Failures] = field(default_factory=dict)

    def use_settings(self, settings: WebSettings) -> list[str]:
        """A reloaded ``web`` section: sessions of users removed, disabled or changed in
        any way (role, seat, lines, password hash: a changed password logs out every
        browser of the old one) end now. Returns the names whose sessions ended."""
        self.settings = settings
        ended: list[str] = []
        for key, sess in list(self._sessions.items()):
            if not self.current(sess.user):
                del self._sessions[key]
                ended.append(sess.user.name)
        return sorted(set(ended))

    def current(self, user: WebUser) -> bool:
        """Whether *user* (as a session holds it) is still configured, unchanged, enabled."""
        return not user.disabled and self.settings.user(user.name) == user

    def login(self, name: str, password: str) -> tuple[str, Session]:
        """Check a login; the new session's id (for the cookie) and the session.

        Raises:
            LoginRefused: wrong name or password, or the name is locked.
        """
        now = self.clock()
        key = name.lower()[:64]
        fails = self._failures.get(key)
        if fails is not None and fails.locked_until > now:
            raise LoginRefused(locked=True, retry_after_s=fails.locked_until - now)
        user = self.settings.user(name) if len(name) <= 64 else None
        if user is not None and user.disabled:
            user = None  # like an unknown name: the same argon2 check, the same refusal
        ok = (
            verify_password(user.password_hash if user else _DUMMY_HASH, password)
            and user is not None
            and len(password) <= MAX_PASSWORD_CHARS
        )
        if not ok or user is None:
            self._fail(key, now)
            fails = self._failures.get(key)
            locked = fails is not None and fails.locked_until > now
            raise LoginRefused(locked=locked, retry_after_s=self.settings.lockout_s * locked)
        self._failures.pop(key, None)
        self._expire(now)
        if len(self._sessions) >= MAX_SESSIONS:
            oldest = min(self._sessions, key=lambda k: self._sessions[k].seen)
            del self._sessions[oldest]
        sid = secrets.token_urlsafe(32)
        sess = Session(user=user, csrf=secrets.token_urlsafe(32), created=now, seen=now)
        self._sessions[_digest(sid)] = sess
        return sid, sess

    def _fail(self, key: str, now: float) -> None:
        if len(self._failures) >= MAX_SESSIONS and key not in self._failures:
            # names never seen before cannot grow the table without bound
            self._failures = {k: f for k, f in self._failures.items() if f.locked_until > now}
        fails = self._failures.setdefault(key, _Failures())
        fails.count += 1
        if fails.count >= self.settings.lockout_after:
            fails.locked_until = now + self.settings.lockout_s
            fails.count = 0

    def get(self, sid: str | None) -> Session | None:
        """The live session of cookie value *sid* (its last use is now), or ``None``."""
        if not sid or len(sid) > 128:
            return None
        now = self.clock()
        key = _digest(sid)
        sess = self._sessions.get(key)
        if sess is None:
            return None
        s = self.settings
        if now - sess.created > s.session_ttl_s or (
            sess.streams == 0 and now - sess.seen > s.session_idle_s
        ):
            del self._sessions[key]
            return None
        sess.seen = now
        return sess

    def logout(self, sid: str | None) -> None:
        if sid:
            self._sessions.pop(_digest(sid), None)

    def csrf_ok(self, sess: Session, presented: str | None) -> bool:
        return presented is not None and hmac.compare_digest(
            presented.encode("utf-8", "surrogatepass"), sess.csrf.encode()
        )

    def __len__(self) -> int:
        return len(self._sessions)

    def _expire(self, now: float) -> None:
        s = self.settings
        for key, sess in list(self._sessions.items()):
            if now - sess.created > s.session_ttl_s or (
                sess.streams == 0 and now - sess.seen > s.session_idle_s
            ):
                del self._sessions[key]


def _digest(sid: str) -> bytes:
    return hashlib.sha256(sid.encode("utf-8", "surrogatepass")).digest()
