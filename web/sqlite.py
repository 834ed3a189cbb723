"""The workbench's own small state (sessions, login failures, who submitted which event, which alert an
attachment belongs to) in one SQLite file under ``workbench_dir`` (mode 0600, never in git).

Why a file and not memory: ``riskwatch users disable`` is a separate process and must end the
account's sessions at once, and a restart must not forget a login throttle. One workbench process
is the deployment; should there be several on one host they share the file (WAL mode, short
transactions). Each statement is a sub-millisecond local read or write, so the routes call it on
the event loop; ``synchronous=NORMAL`` under WAL keeps commits free of fsync.

>>> import tempfile, pathlib
>>> db = connect(pathlib.Path(tempfile.mkdtemp()) / "state.sqlite")
>>> db.execute("SELECT 1").fetchone()
(1,)
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

STATE_FILE = "state.sqlite"


def connect(path: Path | None) -> sqlite3.Connection:
    """A connection to the state file (``None``: in memory, for tests and doctests)."""
    if path is None:
        return sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    db = sqlite3.connect(path, timeout=5.0, check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    return db


def state_path(workbench_dir: Path | str) -> Path:
    return Path(workbench_dir) / STATE_FILE
