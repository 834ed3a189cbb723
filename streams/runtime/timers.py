"""The worker's timers: alert deadlines (pending alerts fire, overdue ones are urged (督促) and
escalated, resolved ones close) and the eviction of entities silent for ``entity_ttl_days``.

Both change entity states, so they take the state lock in turns with the entity agent, and
both visit many keys a chunk at a time (``SCAN_CHUNK``), yielding the event loop in between.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

import orjson

from streams.engine.state import EntityState
from streams.runtime.health import crash_only
from streams.runtime.metrics import ALERTS_OUT, EVICTED
from streams.runtime.worker import Worker, records

log = logging.getLogger("riskwatch.worker")

SCAN_CHUNK = 500  # entity states read per step of a full-table scan (~50 ms), then the loop runs others


def register(w: Worker) -> None:
    app, settings = w.app, w.settings
    owned_then: list[frozenset] = [frozenset()]  # the input partitions at the last deadline check

    @app.timer(interval=settings.lifecycle_tick_seconds, on_leader=False)
    async def alert_deadlines():
        now = w.lifecycle_now()
        if not now:
            return
        actives = w.actives()
        if actives != owned_then[0]:  # a start or a rebalance: states came from the changelog
            owned_then[0] = actives
            await crash_only("alert_deadlines", find_alert_keys, actives)
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
            await asyncio.sleep(0)

    async def deadlines(now: float) -> None:
        sends: list[tuple] = []
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
                w.batch.alert_sends(out, key, sends, alerts_out)
                w.batch.plan_sends(out, key, sends, rows)
                sends.extend((w.topics.notices, key, orjson.dumps(n.as_dict())) for n in out.notices)
                changed[key] = st
                if st.unanchored:
                    w.unanchored_keys.add(key)
            if not st.alerts and not st.orders:
                w.alert_keys.discard(key)
        # outputs first, state last (as in a batch): a crash in between repeats the notices
        # with the same revisions, which consumers drop, rather than losing them
        w.watchdog.stage("alert_deadlines", f"send {len(sends)} outputs")
        await w.bulk.send(records(sends))
        w.commit.add(rows, {key: (w.partition_for_key(key), st) for key, st in changed.items()}, [], None)
        w.watchdog.done("alert_deadlines")
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
                    and not st.devices  # registered devices keep their entity: silence is their fault to flag
                }
                if gone:
                    w.commit.add({}, gone, [], None)
                    w.alert_keys.difference_update(gone)
            n += len(gone)
            await asyncio.sleep(0)
        EVICTED.inc(n)
        if n:
            log.info("evicted %d entities silent for more than %.0f days", n, settings.entity_ttl_days)
