"""Login throttling per (account, IP) and per IP, with a growing delay; never a lock for everyone.

Each failed login counts against two keys: the account from this address, and the address. Once
a key has ``free`` failures (5 for an account from one IP, 20 for an IP over all accounts), every
further attempt on it must wait ``base × 2^(failures − free)`` seconds after the last failure
(30 s, 60 s, 2 min, … up to ``cap``, 15 min). A success clears the account's count from that IP.
Failures from other addresses never delay a user's own address: guessing a name from elsewhere
cannot lock its owner out. Counts are forgotten ``window`` seconds after the last failure.

The office (专班办公室) clears an account with ``riskwatch users unlock NAME``. Counts live in the
workbench state file (``web/sqlite.py``): a restart does not reset them and the CLI can clear them.

>>> now = [0.0]
>>> t = LoginThrottle(None, clock=lambda: now[0])
>>> for _ in range(5): t.failure("amr", "10.0.0.9")
>>> t.wait("amr", "10.0.0.9"), t.wait("amr", "10.0.0.1")   # the owner's own address is not delayed
(30.0, 0.0)
>>> t.failure("amr", "10.0.0.9"); t.wait("amr", "10.0.0.9")
60.0
>>> t.unlock("amr"), t.wait("amr", "10.0.0.9")
(1, 0.0)
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from web.sqlite import connect


class LoginThrottle:
    def __init__(
        self,
        path: Path | None = None,
        *,
        free: int = 5,
        ip_free: int = 20,
        base: float = 30.0,
        cap: float = 900.0,
        window: float = 3600.0,
        clock=time.time,
    ):
        self.free, self.ip_free, self.base, self.cap, self.window, self.clock = free, ip_free, base, cap, window, clock
        self._db = connect(path)
        self._lock = threading.Lock()
        self._db.execute("""CREATE TABLE IF NOT EXISTS login_failures (key TEXT PRIMARY KEY, username TEXT NOT NULL,
            fails INTEGER NOT NULL, last REAL NOT NULL)""")

    @staticmethod
    def _keys(username: str, ip: str) -> tuple[str, str]:
        return f"acct\t{username}\t{ip}", f"ip\t{ip}"

    def _delay(self, fails: int, free: int) -> float:
        return 0.0 if fails < free else min(self.cap, self.base * 2 ** (fails - free))

    def wait(self, username: str, ip: str) -> float:
        """Seconds before this account may try again from this address (0: now)."""
        now = self.clock()
        acct, addr = self._keys(username, ip)
        with self._lock:
            rows = dict(
                (k, (f, t))
                for k, f, t in self._db.execute(
                    "SELECT key, fails, last FROM login_failures WHERE key IN (?, ?) AND last > ?",
                    (acct, addr, now - self.window),
                )
            )
        left = 0.0
        for key, free in ((acct, self.free), (addr, self.ip_free)):
            if key in rows:
                fails, last = rows[key]
                left = max(left, last + self._delay(fails, free) - now)
        return max(0.0, left)

    def failure(self, username: str, ip: str) -> None:
        now = self.clock()
        with self._lock:
            self._db.execute("DELETE FROM login_failures WHERE last < ?", (now - self.window,))
            for key in self._keys(username, ip):
                self._db.execute(
                    """INSERT INTO login_failures VALUES (?, ?, 1, ?)
                    ON CONFLICT(key) DO UPDATE SET fails = fails + 1, last = excluded.last""",
                    (key, username if key.startswith("acct") else "", now),
                )

    def failures(self, username: str, ip: str) -> int:
        with self._lock:
            row = self._db.execute(
                "SELECT fails FROM login_failures WHERE key = ? AND last > ?",
                (self._keys(username, ip)[0], self.clock() - self.window),
            ).fetchone()
        return row[0] if row else 0

    def success(self, username: str, ip: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM login_failures WHERE key = ?", (self._keys(username, ip)[0],))

    def unlock(self, username: str) -> int:
        """Clear an account's failures from every address (the office's unlock); returns how many keys."""
        with self._lock:
            return self._db.execute(
                "DELETE FROM login_failures WHERE username = ? AND key LIKE 'acct%'", (username,)
            ).rowcount

    def unlock_ip(self, ip: str) -> int:
        with self._lock:
            return self._db.execute("DELETE FROM login_failures WHERE key = ?", (f"ip\t{ip}",)).rowcount
