"""Server-side sessions: the cookie carries only a random id, the state file holds who it is.

The signed cookie (Starlette's SessionMiddleware, itsdangerous) holds ``{"sid": <random>}`` once
logged in; before login only the login form's CSRF token. The row (keyed by the id's SHA-256, so
the file alone gives no usable cookie) holds the user, the account's generation, when it was
created and last used, and the session's CSRF token. A session ends when:

* the user logs out (the row is deleted; the old cookie is worthless at once);
* ``riskwatch users disable`` / ``reset-password`` runs (every row of the account is deleted);
* it was unused for ``workbench_idle_minutes`` (default 30) or is older than ``workbench_session_hours``.

>>> s = SessionStore(None, idle=1800, lifetime=8 * 3600)
>>> sid = s.create("amr", 1, now=0.0)
>>> s.get(sid, now=60.0).username, s.get(sid, now=60.0 + 1801)
('amr', None)
>>> sid = s.create("amr", 1, now=0.0); s.revoke_user("amr"), s.get(sid, now=1.0)
(1, None)
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from web.sqlite import connect

TOUCH_EVERY = 30.0  # seconds: last_seen is written at most this often per session


@dataclass(slots=True, frozen=True)
class Session:
    sid: str
    username: str
    generation: int
    created: float
    last_seen: float
    csrf: str


def _key(sid: str) -> str:
    return hashlib.sha256(sid.encode()).hexdigest()


class SessionStore:
    def __init__(self, path: Path | None, *, idle: float, lifetime: float):
        self.idle, self.lifetime = idle, lifetime
        self._db = connect(path)
        self._lock = threading.Lock()
        self._db.execute("""CREATE TABLE IF NOT EXISTS sessions (key TEXT PRIMARY KEY, username TEXT NOT NULL,
            generation INTEGER NOT NULL, created REAL NOT NULL, last_seen REAL NOT NULL, csrf TEXT NOT NULL)""")
        self._db.execute("CREATE INDEX IF NOT EXISTS sessions_user ON sessions(username)")

    def create(self, username: str, generation: int, now: float | None = None) -> str:
        """A new session for a user who just logged in; returns the id the cookie carries."""
        now = time.time() if now is None else now
        sid = secrets.token_urlsafe(32)
        with self._lock:
            self._db.execute(
                "DELETE FROM sessions WHERE last_seen < ? OR created < ?", (now - self.idle, now - self.lifetime)
            )
            self._db.execute(
                "INSERT INTO sessions VALUES (?, ?, ?, ?, ?, ?)",
                (_key(sid), username, generation, now, now, secrets.token_urlsafe(32)),
            )
        return sid

    def get(self, sid: str, now: float | None = None) -> Session | None:
        """The live session of this id (its last use recorded), or None (unknown, revoked, idle, too old)."""
        now = time.time() if now is None else now
        if not isinstance(sid, str) or not sid:
            return None
        with self._lock:
            row = self._db.execute(
                "SELECT username, generation, created, last_seen, csrf FROM sessions WHERE key = ?", (_key(sid),)
            ).fetchone()
            if row is None:
                return None
            if now - row[3] > self.idle or now - row[2] > self.lifetime:
                self._db.execute("DELETE FROM sessions WHERE key = ?", (_key(sid),))
                return None
            if now - row[3] > TOUCH_EVERY:
                self._db.execute("UPDATE sessions SET last_seen = ? WHERE key = ?", (now, _key(sid)))
        return Session(sid, row[0], row[1], row[2], row[3], row[4])

    def revoke(self, sid: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM sessions WHERE key = ?", (_key(sid),))

    def revoke_user(self, username: str) -> int:
        """End every session of an account (``users disable``); returns how many there were."""
        with self._lock:
            return self._db.execute("DELETE FROM sessions WHERE username = ?", (username,)).rowcount

    def count(self, username: str) -> int:
        with self._lock:
            return self._db.execute("SELECT count(*) FROM sessions WHERE username = ?", (username,)).fetchone()[0]
