"""The worker's RocksDB state store (real broker, real chDB, real RocksDB files).

A worker killed with -9 and restarted on the same state dir finds its states on disk and reads
only the changelog after the offset it persisted (Faust's "Reading Starts At" table), not the whole
changelog; the local store always equals the changelog's latest value per key; replayed events
write no duplicate rows or alerts.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import rocksdict

from riskwatch.settings import Settings
from riskwatch.tools.runner import read_all, wait_for
from streams.engine.state import EntityState
from tests import factories as F

OFFSET_KEY = b"__faust\0offset__"  # faust.stores.rocksdb.Store.offset_key


def _changelog(s: Settings, upto: dict[int, int]) -> tuple[dict[bytes, bytes], dict[int, int], int]:
    """The entities changelog up to ``upto`` (partition -> offset): latest value per key (tombstones
    dropped); and the whole changelog's last offset per partition and record count."""
    latest: dict[bytes, bytes | None] = {}
    last: dict[int, int] = {}
    recs = sorted(read_all(s, f"{s.app_id}-entities-changelog"), key=lambda r: (r.partition, r.offset))
    for r in recs:
        if r.offset <= upto.get(r.partition, -1):
            latest[r.key] = r.value
        last[r.partition] = r.offset
    return {k: v for k, v in latest.items() if v is not None}, last, len(recs)


def _local(s: Settings) -> tuple[dict[bytes, bytes], dict[int, int]]:
    """The RocksDB files of a stopped worker: its states and persisted changelog offset per partition."""
    states: dict[bytes, bytes] = {}
    offsets: dict[int, int] = {}
    for path in sorted(Path(s.state_dir).glob("faust/*/tables/entities-*.db")):
        part = int(path.name.removesuffix(".db").rsplit("-", 1)[1])
        db = rocksdict.Rdict(
            str(path), options=rocksdict.Options(raw_mode=True), access_type=rocksdict.AccessType.read_only()
        )
        try:
            for k, v in db.items():
                if k == OFFSET_KEY:
                    offsets[part] = int(v)
                else:
                    assert isinstance(k, bytes)  # raw mode: keys and values are bytes
                    states[k] = v
        finally:
            db.close()
    return states, offsets


def _recovery_starts(log: Path, table: str) -> dict[int, int]:
    """Per changelog partition, where Faust's first recovery after the start began reading."""
    starts: dict[int, int] = {}
    text = log.read_text(errors="replace")
    for section in text.split("Reading Starts At - Active")[1:]:
        topic = None
        for line in section.splitlines()[3:]:
            m = re.match(r"\|\s*(\S+)\s*\|\s*(\d+)\s*\|\s*(-?\d+)\s*\|", line)
            if not m:
                break
            topic = topic if m[1] == "〃" else m[1]
            if topic is not None and topic.endswith(f"-{table}-changelog"):
                starts.setdefault(int(m[2]), int(m[3]))
    return starts


@pytest.mark.timeout(600)
def _cache_lookups(w) -> dict[str, float]:
    """riskwatch_state_cache_lookups_total by result, from the worker's /metrics."""
    import urllib.request

    with urllib.request.urlopen(f"http://{w.settings.web_host}:{w.settings.web_port}/metrics", timeout=10) as r:
        text = r.read().decode()
    return {
        m[1]: float(m[2])
        for m in re.finditer(r'^riskwatch_state_cache_lookups_total\{result="(\w+)"\} (\S+)$', text, flags=re.M)
    }


def test_kill9_and_restart_on_the_same_state_dir_reads_only_the_changelog_tail(pipeline, monkeypatch):
    monkeypatch.setenv("RISKWATCH_WORKER_LOGLEVEL", "info")  # Faust's recovery tables in the worker log
    p = pipeline
    assert p.settings.state_store == "rocksdb"
    w = p.start_worker()
    ents = [f"E-rk{i}" for i in range(16)]
    for e in ents:
        p.send("events.registry", F.registered(e))
    p.flush()
    p.wait_consumed()
    sent = []

    def readings(rounds: range, who: list[str]) -> None:
        for k in rounds:
            for e in who:
                ev = F.sensor(e, 35.0 if k % 10 == 5 else 20.0, channel="storage_temp")  # a limit breach now and then
                sent.append(ev["event_id"])
                p.send("events.sensor", ev)
            p.flush()
            if k % 3 == 2:  # several commits (each round consumed before the next): many records per entity
                p.wait_consumed()

    readings(range(10), ents)
    p.wait_consumed()
    w.kill9()

    # a kill -9 may fall between a commit's changelog and its local write: the local store is then
    # behind, never ahead: exactly the changelog up to the offset it persisted
    before, persisted = _local(p.settings)
    latest, last, n_records = _changelog(p.settings, persisted)
    assert before == latest, "the local store is the changelog's state up to the persisted offsets"
    assert set(persisted) == set(last) and all(persisted[q] <= last[q] for q in last), (persisted, last)
    assert len({k for k in before if k.decode() in ents}) == len(ents)
    assert n_records > 2 * len(ents)

    w = p.start_worker()  # same state dir
    # the new member joins once the group dropped the killed one (session timeout), then recovers
    starts = wait_for(
        lambda: (x := _recovery_starts(w.log_path, "entities")) and set(x) >= set(persisted) and x,
        90,
        f"Faust's recovery of the entities table; see {w.log_path}",
    )
    assert starts == persisted, f"recovery starts at the persisted offsets {persisted}, not at the beginning: {starts}"
    read = sum(last[q] - starts[q] + 1 for q in last)  # Faust re-reads the persisted record itself
    assert read < n_records / 2, (read, n_records)

    # the recovered states carry on; a kill in the middle of the next readings duplicates nothing
    half = ents[: len(ents) // 2]
    readings(range(10, 16), half)
    w.kill9()
    w = p.start_worker()
    readings(range(16, 30), half)
    p.wait_consumed(timeout=180)
    # after the restart each entity's first event unpickles its state; the later ones reuse the live
    # object (a change not committed yet, or the cache)
    lookups = _cache_lookups(w)
    assert len(half) <= lookups["miss"] < len(half) * 14 / 2, lookups
    r = w.query(
        f"SELECT count() AS n, uniqExact(event_id) AS u FROM riskwatch.events_sensor FINAL "
        f"WHERE entity_id IN {tuple(ents)}"
    )[0]
    assert r["n"] == r["u"] == len(sent)
    # breaches at k = 5, 15, 25 for the half that went on, k = 5 for the others: one alert each, one row
    per_entity = wait_for(
        lambda: (
            (
                x := w.query(
                    "SELECT entity_id, uniqExact(alert_id) AS n, count() AS rows FROM riskwatch.alerts FINAL GROUP "
                    "BY entity_id"
                )
            )
            and len(x) == len(ents)
            and x
        ),
        60,
        "the alerts of every entity",
    )
    want = {e: 3 if e in half else 1 for e in ents}
    assert {x["entity_id"]: x["n"] for x in per_entity} == want
    assert all(x["rows"] == x["n"] for x in per_entity), per_entity
    w.kill9()
    after, persisted = _local(p.settings)
    latest, _, _ = _changelog(p.settings, persisted)
    assert after == latest
    for e in set(ents) - set(half):  # no event since: the same event-id ring and detectors as before the kills
        a, b = EntityState.loads(after[e.encode()]), EntityState.loads(before[e.encode()])
        assert (a.recent, a.recent_at, a.offsets, a._blobs) == (b.recent, b.recent_at, b.offsets, b._blobs), e
