"""The worker's timers: alert deadlines (pending alerts fire, overdue ones are urged (督促) and
escalated, resolved ones close), the device offline scan on event time and the eviction of entities
silent for ``entity_ttl_days``.

The offline scan (``streams/engine/health.py``) judges a device's silence against its PARTITION'S
event-time progress, never the wall clock: the latest ``occurred_at`` the entity agent processed on
that partition since this worker took it (``Worker.part_time``), capped at the latest reading of the
partition's devices (so other topics of the partition running ahead during a catch-up do not count).
A partition without processed events since the worker took it is not scanned. So a stopped worker,
a broker restart or a worker killed and catching up moves no device past its deadline: only
readings processed after the device's last one do.

Neither sends what it decides: its outputs wait in the entity's outbox until the state that decided
them is committed (``streams/runtime/outbox.py``); a replay after a crash runs the timers at other
moments, so what they sent before their commit could be decided differently, or not at all.

Both change entity states, so they take the state lock in turns with the entity agent, and
both visit many keys a chunk at a time (``SCAN_CHUNK``), yielding the event loop in between.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

import orjson

from streams.engine import health
from streams.engine.state import EntityState
from streams.runtime.health import crash_only
from streams.runtime.metrics import ALERTS_OUT, EVICTED
from streams.runtime.outbox import hold
from streams.runtime.worker import Worker

log = logging.getLogger("riskwatch.worker")

SCAN_CHUNK = 500  # entity states read per step of a full-table scan (~50 ms), then the loop runs others


def quorum_time(latest: list[float], quorum: int = 3) -> float:
    """How far a partition's devices have got: the time by which ``quorum`` entities (fewer on a partition of
    few: half of them, at least one) have all reported. One entity ahead of the rest — a gateway whose clock
    runs days fast, a test incident sent at the wall clock's now into a replayed past — must not make every
    other device of the partition look silent (the demo's live incident raised ~145 offline alarms so).

    >>> quorum_time([100.0, 5000.0, 90.0, 95.0, 99.0, 98.0]), quorum_time([10.0, 20.0]), quorum_time([7.0])
    (99.0, 20.0, 7.0)
    """
    k = max(1, min(quorum, len(latest) // 2))
    return sorted(latest, reverse=True)[k - 1]


def register(w: Worker) -> None:
    app, settings = w.app, w.settings
    owned_then: list[frozenset] = [frozenset()]  # the input partitions at the last deadline check
    outbox = w.outbox
    assert outbox is not None  # Worker.build makes it

    async def rescan(*args, **kwargs) -> None:
        """Any assignment, even of the partitions this worker held before: look at the states anew at
        the next tick (a revoke and an assign between two ticks leave the owned set as it was)."""
        owned_then[0] = frozenset()

    app.on_partitions_assigned.connect(rescan)

    @app.timer(interval=settings.lifecycle_tick_seconds, on_leader=False)
    async def alert_deadlines():
        actives = w.actives()
        if actives != owned_then[0]:  # a start or a rebalance: states came from the changelog
            owned_then[0] = actives
            await crash_only("alert_deadlines", find_alert_keys, actives)
        now = w.lifecycle_now()
        if not now:
            return
        async with w.state_lock:
            await crash_only("alert_deadlines", deadlines, now)

    async def find_alert_keys(actives: frozenset) -> None:
        """Which owned entities have alerts, a chunk at a time (unpickling a state costs ~0.1 ms:
        all 100k at once held the event loop for ~10 s). Between chunks the entity agent may change
        states; it keeps ``alert_keys`` up to date for the entities it processes."""
        keys = list(w.entities.keys())
        for i in range(0, len(keys), SCAN_CHUNK):
            for k in keys[i : i + SCAN_CHUNK]:
                if w.owned(k, actives) and w.entities.get(k) is not None:
                    st = w.load(k)
                    if st.alerts or st.orders:  # rectification orders have deadlines too
                        w.alert_keys.add(k)
                    if st.unanchored:
                        w.unanchored_keys.add(k)
                    if st.health:
                        w.health_keys.add(k)
                    if st.outbox and not w.commit.live(k)[0]:  # committed, perhaps never sent: send it
                        outbox.recover(k)
            await asyncio.sleep(0)

    async def deadlines(now: float) -> None:
        held = 0
        rows: dict[str, list] = {}
        changed: dict[bytes, EntityState] = {}
        alerts_out: Counter = Counter()
        w.processor.silences = w.silences.active()
        owned_now = w.actives()
        for key in list(w.alert_keys):
            if not w.owned(key, owned_now):
                w.alert_keys.discard(key)
                continue
            st = w.load(key)
            out = w.processor.tick(key.decode(), st, now)
            if out.alerts or out.transitions or out.evidence or out.orders:
                sends: list[tuple] = []
                w.batch.alert_sends(out, key, sends, alerts_out)
                w.batch.plan_sends(out, key, sends, rows)
                sends.extend((w.topics.notices, key, orjson.dumps(n.as_dict())) for n in out.notices)
                held += hold(st, sends)  # sent once this state is committed (streams/runtime/outbox.py)
                changed[key] = st
                if st.unanchored:
                    w.unanchored_keys.add(key)
            if not st.alerts and not st.orders:
                w.alert_keys.discard(key)
        w.commit.add(rows, {key: (w.partition_for_key(key), st) for key, st in changed.items()}, [], None)
        if held:  # its outputs wait for this commit: now, not within the interval (5 s)
            w.commit.soon()
        for (level, kind), n in alerts_out.items():
            ALERTS_OUT.labels(level, kind).inc(n)

    @app.timer(interval=settings.lifecycle_tick_seconds, on_leader=False)
    async def device_offline():
        await crash_only("device_offline", offline_scan, None)

    async def offline_scan(_: None) -> None:
        """Every owned entity with devices against its partition's event-time progress, a chunk of
        keys per hold of the state lock: first each partition's latest device reading, then the scan."""
        keys = list(w.health_keys)
        where: dict[bytes, int] = {}
        seen: dict[int, dict[str, list[float]]] = {}  # partition -> source -> each entity's latest device reading
        for i in range(0, len(keys), SCAN_CHUNK):
            async with w.state_lock:
                actives = w.actives()
                for key in keys[i : i + SCAN_CHUNK]:
                    p = w.partition_for_key(key)
                    st = w.load(key) if p is not None and w.owned(key, actives) else None
                    if p is None or st is None or not st.health:
                        w.health_keys.discard(key)
                        continue
                    where[key] = p
                    last = max(st.health.values(), key=lambda rec: rec.last_t)
                    seen.setdefault(p, {}).setdefault(last.source, []).append(last.last_t)
            await asyncio.sleep(0)
        latest = {p: health.progress_of(ts) for p, ts in seen.items()}  # one fast gateway clock moves nothing
        # a partition with nothing processed since this worker took it has no progress to judge by
        progress = {p: min(w.part_time[p][0], t) for p, t in latest.items() if p in w.part_time}
        todo = [k for k in keys if where.get(k) in progress]
        for i in range(0, len(todo), SCAN_CHUNK):
            async with w.state_lock:
                await scan_chunk(todo[i : i + SCAN_CHUNK], where, progress)
            await asyncio.sleep(0)

    async def scan_chunk(keys: list[bytes], where: dict[bytes, int], progress: dict[int, float]) -> None:
        held = 0
        rows: dict[str, list] = {}
        changed: dict[bytes, EntityState] = {}
        alerts_out: Counter = Counter()
        w.processor.silences = w.silences.active()
        cx, desk, r = w.processor.cx, w.processor.desk, w.batch.rows
        actives = w.actives()
        for key in keys:
            if not w.owned(key, actives):
                continue
            st = w.load(key)
            before = sum(rec.silent_n for rec in st.health.values())
            out = health.scan(cx, desk, key.decode(), st, progress[where[key]])
            if out.alerts or out.risk or sum(rec.silent_n for rec in st.health.values()) != before:
                sends: list[tuple] = []
                w.batch.alert_sends(out, key, sends, alerts_out)
                w.batch.plan_sends(out, key, sends, rows)
                held += hold(st, sends)  # sent once this state is committed (streams/runtime/outbox.py)
                for rk in out.risk:
                    rows.setdefault("risk_scores", []).append(
                        r.risk_score_row(rk.entity_id, rk.at, rk.score, rk.level, rk.item_id, rk.top)
                    )
                changed[key] = st
                w.note_state(key, st)
        if not changed:
            return
        w.commit.add(rows, {key: (w.partition_for_key(key), st) for key, st in changed.items()}, [], None)
        # its outputs wait for this commit: now, not within the interval (5 s); only for outputs:
        # committing for every learnt silence step put the 3-minute soak 30k behind
        if held:
            w.commit.soon()
        for (level, kind), n in alerts_out.items():
            ALERTS_OUT.labels(level, kind).inc(n)

    @app.timer(interval=settings.eviction_interval_seconds, on_leader=False)
    async def evict_silent_entities():
        """Tombstone entities silent for ``entity_ttl_days`` (never one with registered devices), a
        chunk of keys per hold of the state lock (checking all 100k at once held the event loop for ~10 s)."""
        ttl = settings.entity_ttl_days * 86400
        now = w.clock()
        keys = list(w.entities.keys())
        n = 0
        for i in range(0, len(keys), SCAN_CHUNK):
            async with w.state_lock:
                actives = w.actives()
                gone = {
                    key: (w.partition_for_key(key), None)
                    for key in keys[i : i + SCAN_CHUNK]
                    if w.owned(key, actives)
                    and not w.commit.live(key)[0]
                    and w.entities.get(key) is not None
                    and now - (st := w.cache.load(key)).last_seen > ttl
                    and not health.has_devices(st)  # devices keep their entity: silence is their fault to flag
                    and not st.outbox
                }
                if gone:
                    w.commit.add({}, gone, [], None)
                    w.alert_keys.difference_update(gone)
            n += len(gone)
            await asyncio.sleep(0)
        EVICTED.inc(n)
        if n:
            log.info("evicted %d entities silent for more than %.0f days", n, settings.entity_ttl_days)
