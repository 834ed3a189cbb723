"""What the workbench did for whom, kept in its state file: the events each user submitted (the
alert page's ``?wait=<event>`` looks only at the user's own events, never at other departments'
dead letters) and the alert each attachment was uploaded to (``/attachments/<sha>`` is authorised
by that alert, not by whatever history row mentions the hash).

>>> r = Records(None)
>>> r.submitted("amr-1", "A1", "web-1", at=1.0); r.attached("ab" * 32, "A1", "amr-1", at=1.0)
>>> r.submission("amr-1", "A1", "web-1"), r.submission("police-1", "A1", "web-1"), r.alerts_of("ab" * 32)
(1.0, None, ['A1'])
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from web.sqlite import connect


class Records:
    def __init__(self, path: Path | None):
        self._db = connect(path)
        self._lock = threading.Lock()
        self._db.execute("""CREATE TABLE IF NOT EXISTS submitted (event_id TEXT PRIMARY KEY, username TEXT NOT NULL,
            alert_id TEXT NOT NULL, at REAL NOT NULL)""")
        self._db.execute("""CREATE TABLE IF NOT EXISTS attachments (sha256 TEXT NOT NULL, alert_id TEXT NOT NULL,
            username TEXT NOT NULL, at REAL NOT NULL, PRIMARY KEY (sha256, alert_id))""")

    def submitted(self, username: str, alert_id: str, event_id: str, at: float | None = None) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO submitted VALUES (?, ?, ?, ?)",
                (event_id, username, alert_id, time.time() if at is None else at),
            )

    def submission(self, username: str, alert_id: str, event_id: str) -> float | None:
        """When this user submitted this event on this alert (None: not theirs)."""
        with self._lock:
            row = self._db.execute(
                "SELECT at FROM submitted WHERE event_id = ? AND username = ? AND alert_id = ?",
                (event_id, username, alert_id),
            ).fetchone()
        return row[0] if row else None

    def attached(self, sha256: str, alert_id: str, username: str, at: float | None = None) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO attachments VALUES (?, ?, ?, ?)",
                (sha256, alert_id, username, time.time() if at is None else at),
            )

    def alerts_of(self, sha256: str) -> list[str]:
        """The alerts this attachment was uploaded to."""
        with self._lock:
            return [
                r[0]
                for r in self._db.execute("SELECT alert_id FROM attachments WHERE sha256 = ? ORDER BY at", (sha256,))
            ]
