"""Source keys: who may post to the gateway, which kinds, in which time zone, at what rate.

A key is 32 random bytes (``rwk_`` + URL-safe base64), shown once by ``riskwatch sources add`` and
stored only as its SHA-256 (a random 256-bit key needs no slow hash: there is nothing to guess).
Sources and the nonces of signed requests live in one SQLite file under ``gateway_dir`` (mode
0600, WAL, the project's helper ``web.sqlite.connect``), so ``sources disable`` in another process
takes effect within :data:`CACHE_SECONDS`, and a restarted gateway still refuses a replayed nonce.

>>> store = SourceStore(None)
>>> src, key = store.add("vendor-a", kinds=("sensor",), tz="Asia/Shanghai")
>>> store.verify(key).name, store.verify("rwk_wrong")
('vendor-a', None)
>>> store.remember_nonce("vendor-a", "n1", ttl=300), store.remember_nonce("vendor-a", "n1", ttl=300)
(True, False)
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

from web.sqlite import connect

KINDS = ("sensor", "video", "complaint", "registry", "device")
DB_FILE = "sources.sqlite"
CACHE_SECONDS = 2.0  # a disabled or rotated key stops working within this long in a running gateway

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sources (
    name TEXT PRIMARY KEY, key_sha256 TEXT NOT NULL UNIQUE, kinds TEXT NOT NULL, tz TEXT NOT NULL DEFAULT '',
    mapping TEXT NOT NULL DEFAULT '', rate REAL NOT NULL, require_signature INTEGER NOT NULL DEFAULT 0,
    disabled INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL, rotated_at REAL);
CREATE TABLE IF NOT EXISTS nonces (source TEXT NOT NULL, nonce TEXT NOT NULL, expires REAL NOT NULL,
    PRIMARY KEY (source, nonce));
"""


class SourceError(ValueError):
    """A bad `sources` command (unknown kind, time zone, duplicate name ...)."""


@dataclass(frozen=True, slots=True)
class Source:
    name: str
    kinds: tuple[str, ...]
    tz: str  # IANA zone for times without an offset; "" = such times are refused
    mapping: str  # stem of riskwatch/data/sources/<stem>.yaml; "" = riskwatch's own JSON
    rate: float  # events per second (a burst of 2 s is allowed)
    require_signature: bool
    disabled: bool


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return "rwk_" + secrets.token_urlsafe(32)


class SourceStore:
    def __init__(self, path: Path | None):
        self.path = path
        self.db = connect(path)
        self.db.executescript(_SCHEMA)
        self._cache: dict[str, tuple[float, Source | None]] = {}
        self._purged = 0.0

    @classmethod
    def at(cls, gateway_dir: Path | str) -> SourceStore:
        return cls(Path(gateway_dir) / DB_FILE)

    @staticmethod
    def _row(r: tuple) -> Source:
        return Source(r[0], tuple(r[1].split(",")), r[2], r[3], r[4], bool(r[5]), bool(r[6]))

    _COLS = "name, kinds, tz, mapping, rate, require_signature, disabled"

    def add(
        self,
        name: str,
        kinds: tuple[str, ...],
        tz: str = "",
        mapping: str = "",
        rate: float = 2000.0,
        require_signature: bool = False,
    ) -> tuple[Source, str]:
        """Register a source; returns it and its key (the only time the key is seen)."""
        name = name.strip()
        if not name or len(name) > 64 or not all(c.isalnum() or c in "-_." for c in name):
            raise SourceError(f"name {name!r}: 1-64 letters, digits, '-', '_' or '.'")
        bad = [k for k in kinds if k not in KINDS]
        if not kinds or bad:
            raise SourceError(f"unknown kind(s) {', '.join(bad) or '(none)'}; known: {', '.join(KINDS)}")
        if tz:
            try:
                ZoneInfo(tz)
            except Exception:  # noqa: BLE001 - ZoneInfoNotFoundError, ValueError for odd strings
                raise SourceError(f"unknown time zone {tz!r} (IANA name, e.g. Asia/Shanghai)") from None
        if mapping:
            from edge.gateway.mapping import load_mapping

            m = load_mapping(mapping)  # a mapping error names the source file and the field
            if m.spec.kind not in kinds:
                raise SourceError(f"mapping {mapping} maps {m.spec.kind} events; add {m.spec.kind} to --kinds")
        if rate <= 0:
            raise SourceError("rate must be > 0 events per second")
        if self.get(name) is not None:
            raise SourceError(f"source {name!r} exists; `riskwatch sources rotate {name}` gives it a new key")
        key = new_key()
        self.db.execute(
            "INSERT INTO sources VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, NULL)",
            (name, hash_key(key), ",".join(kinds), tz, mapping, rate, int(require_signature), time.time()),
        )
        src = self.get(name)
        assert src is not None
        return src, key

    def get(self, name: str) -> Source | None:
        r = self.db.execute(f"SELECT {self._COLS} FROM sources WHERE name = ?", (name,)).fetchone()
        return self._row(r) if r else None

    def all(self) -> list[Source]:
        return [self._row(r) for r in self.db.execute(f"SELECT {self._COLS} FROM sources ORDER BY name")]

    def set_disabled(self, name: str, disabled: bool) -> None:
        if self.db.execute("UPDATE sources SET disabled = ? WHERE name = ?", (int(disabled), name)).rowcount != 1:
            raise SourceError(f"no source {name!r}; `riskwatch sources list` shows them")
        self._cache.clear()

    def set_signature(self, name: str, required: bool) -> None:
        n = self.db.execute("UPDATE sources SET require_signature = ? WHERE name = ?", (int(required), name)).rowcount
        if n != 1:
            raise SourceError(f"no source {name!r}; `riskwatch sources list` shows them")
        self._cache.clear()

    def rotate(self, name: str) -> str:
        """A new key for the source; the old one stops working (within :data:`CACHE_SECONDS`)."""
        key = new_key()
        n = self.db.execute(
            "UPDATE sources SET key_sha256 = ?, rotated_at = ? WHERE name = ?", (hash_key(key), time.time(), name)
        ).rowcount
        if n != 1:
            raise SourceError(f"no source {name!r}; `riskwatch sources list` shows them")
        self._cache.clear()
        return key

    def verify(self, key: str) -> Source | None:
        """The source of a presented key (disabled ones too: the caller says why), or None."""
        h = hash_key(key)
        now = time.monotonic()
        hit = self._cache.get(h)
        if hit is not None and now - hit[0] < CACHE_SECONDS:
            return hit[1]
        r = self.db.execute(f"SELECT {self._COLS} FROM sources WHERE key_sha256 = ?", (h,)).fetchone()
        src = self._row(r) if r else None
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[h] = (now, src)
        return src

    def remember_nonce(self, source: str, nonce: str, ttl: float) -> bool:
        """True the first time a source uses a nonce within ``ttl`` seconds; False for a replay."""
        now = time.time()
        if now - self._purged > 60:
            self.db.execute("DELETE FROM nonces WHERE expires < ?", (now,))
            self._purged = now
        self.db.execute("DELETE FROM nonces WHERE source = ? AND nonce = ? AND expires < ?", (source, nonce, now))
        cur = self.db.execute("INSERT OR IGNORE INTO nonces VALUES (?, ?, ?)", (source, nonce, now + ttl))
        return cur.rowcount == 1
