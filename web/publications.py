"""What the office publishes to the public: service-manual versions and typical cases (典型案例), kept in
the workbench's state file (``web/sqlite.py``) beside its sessions, with an append-only hashed log.

Why SQLite and not ClickHouse: these are a few dozen rows a year written by the workbench itself, read
by its public pages, and nothing in the stream or the analytics needs them; the state file is already
where the workbench keeps what it alone owns. Why not the alert audit chain (``alert_history``): that
chain is per alert and written by the worker; a manual edit belongs to no alert. Instead every
publication appends one row to ``publish_log`` whose ``hash = SHA-256(prev_hash ‖ JCS(row))``
(:func:`log_hash`: the construction of the alert chain, :func:`schemas.audit.chain_hash`, over this log's
fields), so an edited or deleted
version breaks :meth:`Publications.verify`. Rows are never updated or deleted.

>>> p = Publications(None)
>>> elements = {"legal_basis": {"text": "《食品安全法》", "confirm": ""}}
>>> v = p.save_manual(1, elements, "2026-12-05", "taskforce/w", "初版")
>>> v.version, p.manual_versions(1)[0].effective
(1, '2026-12-05')
>>> c = p.publish_case("A1", 1, "冷链超温处置", "企业整改到位。", "2026-12-05", "taskforce/w")
>>> [x.title for x in p.cases()], p.verify()
(['冷链超温处置'], 2)
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import rfc8785

from web.sqlite import connect


@dataclass(slots=True, frozen=True)
class ManualVersion:
    item_id: int
    version: int
    effective: str  # YYYY-MM-DD: the publication (effective) date the office chose
    elements: dict[str, Any]  # field -> {"text", "confirm"}
    actor: str
    note: str
    saved_at: float


@dataclass(slots=True, frozen=True)
class TypicalCase:
    case_id: int
    alert_id: str
    item_id: int | None
    title: str
    text: str  # masked when published
    published: str  # YYYY-MM-DD
    actor: str
    saved_at: float


def log_hash(prev_hash: str, row: dict[str, Any]) -> str:
    """``SHA-256(prev_hash ‖ JCS(row))``, lower-case hex."""
    return hashlib.sha256(prev_hash.encode("ascii") + rfc8785.dumps(row)).hexdigest()


class Publications:
    def __init__(self, path: Path | None):
        self._db = connect(path)
        self._lock = threading.Lock()
        self._db.execute("""CREATE TABLE IF NOT EXISTS manual_versions (item_id INTEGER NOT NULL,
            version INTEGER NOT NULL, effective TEXT NOT NULL, elements TEXT NOT NULL, actor TEXT NOT NULL,
            note TEXT NOT NULL, saved_at REAL NOT NULL, PRIMARY KEY (item_id, version))""")
        self._db.execute("""CREATE TABLE IF NOT EXISTS typical_cases (case_id INTEGER PRIMARY KEY AUTOINCREMENT,
            alert_id TEXT NOT NULL, item_id INTEGER, title TEXT NOT NULL, text TEXT NOT NULL, published TEXT NOT NULL,
            actor TEXT NOT NULL, saved_at REAL NOT NULL)""")
        self._db.execute("""CREATE TABLE IF NOT EXISTS publish_log (seq INTEGER PRIMARY KEY, at_ms INTEGER NOT NULL,
            actor TEXT NOT NULL, kind TEXT NOT NULL, subject TEXT NOT NULL, content_sha256 TEXT NOT NULL,
            prev_hash TEXT NOT NULL, hash TEXT NOT NULL)""")

    # --- the hashed log --------------------------------------------------------------------------
    @staticmethod
    def _row(seq: int, at_ms: int, actor: str, kind: str, subject: str, sha: str) -> dict[str, Any]:
        return {"seq": seq, "at_ms": at_ms, "actor": actor, "kind": kind, "subject": subject, "content_sha256": sha}

    def _log(self, at: float, actor: str, kind: str, subject: str, content: Any) -> None:
        """Inside the caller's transaction: one chained row naming who published what."""
        last = self._db.execute("SELECT seq, hash FROM publish_log ORDER BY seq DESC LIMIT 1").fetchone()
        seq, prev = (last[0] + 1, last[1]) if last else (1, "")
        sha = hashlib.sha256(rfc8785.dumps(content)).hexdigest()
        row = self._row(seq, int(at * 1000), actor, kind, subject, sha)
        self._db.execute(
            "INSERT INTO publish_log VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (seq, row["at_ms"], actor, kind, subject, sha, prev, log_hash(prev, row)),
        )

    def verify(self) -> int:
        """Re-hash the log and every published content; return the number of rows, raise ValueError on a break."""
        with self._lock:
            log = self._db.execute("SELECT * FROM publish_log ORDER BY seq").fetchall()
            contents = {
                f"manual:{r[0]}:v{r[1]}": {"effective": r[2], "elements": orjson.loads(r[3]), "note": r[5]}
                for r in self._db.execute("SELECT * FROM manual_versions")
            }
            contents |= {
                f"case:{r[0]}": {"alert_id": r[1], "title": r[3], "text": r[4], "published": r[5]}
                for r in self._db.execute("SELECT * FROM typical_cases")
            }
        prev = ""
        for seq, at_ms, actor, kind, subject, sha, prev_hash, h in log:
            row = self._row(seq, at_ms, actor, kind, subject, sha)
            if prev_hash != prev or log_hash(prev, row) != h:
                raise ValueError(f"publish_log row {seq} does not chain")
            if subject not in contents or hashlib.sha256(rfc8785.dumps(contents.pop(subject))).hexdigest() != sha:
                raise ValueError(f"publish_log row {seq}: {subject} was changed or removed")
            prev = h
        if contents:
            raise ValueError(f"published without a log row: {', '.join(sorted(contents))}")
        return len(log)

    # --- manual versions ---------------------------------------------------------------------------
    def save_manual(
        self, item_id: int, elements: dict[str, Any], effective: str, actor: str, note: str, at: float | None = None
    ) -> ManualVersion:
        at = time.time() if at is None else at
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                n = self._db.execute(
                    "SELECT coalesce(max(version), 0) + 1 FROM manual_versions WHERE item_id = ?", (item_id,)
                ).fetchone()[0]
                self._db.execute(
                    "INSERT INTO manual_versions VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (item_id, n, effective, orjson.dumps(elements).decode(), actor, note, at),
                )
                content = {"effective": effective, "elements": elements, "note": note}
                self._log(at, actor, "manual", f"manual:{item_id}:v{n}", content)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return ManualVersion(item_id, n, effective, elements, actor, note, at)

    def manual_versions(self, item_id: int) -> list[ManualVersion]:
        """Every saved version of the item's manual, newest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM manual_versions WHERE item_id = ? ORDER BY version DESC", (item_id,)
            ).fetchall()
        return [ManualVersion(r[0], r[1], r[2], orjson.loads(r[3]), r[4], r[5], r[6]) for r in rows]

    # --- typical cases -----------------------------------------------------------------------------
    def publish_case(
        self,
        alert_id: str,
        item_id: int | None,
        title: str,
        text: str,
        published: str,
        actor: str,
        at: float | None = None,
    ) -> TypicalCase:
        at = time.time() if at is None else at
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                cur = self._db.execute(
                    "INSERT INTO typical_cases (alert_id, item_id, title, text, published, actor, saved_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (alert_id, item_id, title, text, published, actor, at),
                )
                cid = int(cur.lastrowid or 0)
                content = {"alert_id": alert_id, "title": title, "text": text, "published": published}
                self._log(at, actor, "case", f"case:{cid}", content)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return TypicalCase(cid, alert_id, item_id, title, text, published, actor, at)

    def cases(self) -> list[TypicalCase]:
        """Published typical cases, newest publication date first."""
        with self._lock:
            rows = self._db.execute("SELECT * FROM typical_cases ORDER BY published DESC, case_id DESC").fetchall()
        return [TypicalCase(*r) for r in rows]
