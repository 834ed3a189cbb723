"""Audit anchors: every ``audit_anchor_seconds`` (default hourly) and on shutdown, a Merkle root
over the new audit-chain heads.

Every alert's ``alert_history`` rows form a hash chain (``schemas/audit.py``); the head of each
chain (its last ``(seq, hash)``) is kept in the entity's state as *unanchored* until an anchor
covers it. When the wall clock enters a new period (periods aligned on local midnight), this
timer takes the unanchored heads of the entities this worker owns, groups them by
input partition and publishes **one anchor per partition per period**: the sorted leaves
``(alert_id, seq, hash)``, their RFC 9162 Merkle root, the partition and the time, to the
compacted topic ``audit.anchors`` (key ``<partition>:<anchored_at_ms>``) and ClickHouse
``audit_anchors``. Anchors are per partition because the chain heads are per-entity state and
partitions are the unit of scale-out: whichever worker owns a partition anchors it, and
``riskwatch audit verify`` checks each anchor on its own (root recomputed, every anchored head
present in ``alert_history`` with that hash), so a chain cut short after it was anchored is caught.

A clean shutdown (SIGTERM, SIGINT) anchors what is still unanchored before the producer's last
flush, so a demo stopped after ten minutes leaves anchors behind; a kill -9 leaves the heads in the
entity state, and the next worker anchors them at its first period boundary. Only the worker's
principal may write ``audit.anchors`` (``deploy/kafka/acls.yaml``); ``riskwatch audit verify``
reads it back (and the city's mirrored copy), so rewriting ClickHouse ``audit_anchors`` is not
enough to hide a rewritten chain.

Crash safety as everywhere: the anchor is sent first, then the cleared heads go to the commit
pipeline with the anchor's row. A crash in between re-anchors the same heads later (a head in two
anchors is harmless); nothing is left unanchored.
"""

from __future__ import annotations

import asyncio
import logging

from schemas.audit import ANCHOR_FORMAT, canonical, merkle_root
from sinks import rows as sink_rows
from streams.runtime.health import crash_only
from streams.runtime.worker import Worker, records

log = logging.getLogger("riskwatch.worker")


def build_anchor(partition: int, anchored_at_ms: int, leaves: list[tuple[str, int, str]], app_id: str = "") -> dict:
    """The anchor record of one partition (leaves sorted, root over them).

    >>> a = build_anchor(0, 1000, [("b", 2, "h2"), ("a", 1, "h1")])
    >>> a["leaves"], a["size"], len(a["root"])
    ([['a', 1, 'h1'], ['b', 2, 'h2']], 2, 64)
    """
    leaves = sorted((str(a), int(s), str(h)) for a, s, h in leaves)
    return {
        "format": ANCHOR_FORMAT,
        "partition": int(partition),
        "anchored_at_ms": int(anchored_at_ms),
        "app_id": app_id,
        "size": len(leaves),
        "leaves": [list(x) for x in leaves],
        "root": merkle_root(leaves),
    }


def period_of(t: float, period_s: float) -> int:
    """The anchor period a time falls in, periods aligned on Asia/Shanghai midnight.

    >>> period_of(16 * 3600.0, 86400.0) - period_of(15.99 * 3600, 86400.0)   # 00:00 local = 16:00 UTC
    1
    """
    return int((t + 8 * 3600) // period_s)


def register(w: Worker) -> None:
    settings = w.settings

    period_s = settings.audit_anchor_seconds
    last = [period_of(w.clock(), period_s)]  # the first anchor at the next boundary after start

    @w.app.timer(interval=min(period_s, 60.0), on_leader=False)
    async def audit_anchors():
        """Anchor when the wall clock enters a new period (local midnight for the default day): a
        worker restarted more often than once a period still anchors; heads wait in the state."""
        if not settings.audit_chain:
            return
        now = period_of(w.clock(), period_s)
        if now == last[0]:
            return
        last[0] = now
        async with w.state_lock:
            await crash_only("audit_anchors", anchor_once, None)

    async def on_shutdown(*_a, **_kw) -> None:  # Faust passes the app and the signal
        """Before the producer's last flush: anchor every head still waiting (a worker that is stopping
        may no longer know its assignment; a head anchored by two workers is harmless)."""
        if not settings.audit_chain or not w.unanchored_keys:
            return
        try:
            async with w.state_lock:
                await anchor_once(None, owned_only=False)
            await asyncio.wait_for(w.commit.drained(), 15.0)
        except Exception as e:  # noqa: BLE001 - the heads stay in the state; the next worker anchors them
            log.warning("audit anchors at shutdown: %s; the next start anchors the heads", e)

    w.app.on_before_shutdown.connect(on_shutdown)

    async def anchor_once(_, owned_only: bool = True) -> None:
        actives = w.actives()
        by_part: dict[int, list] = {}
        changed: dict[bytes, tuple] = {}
        for key in list(w.unanchored_keys):
            w.unanchored_keys.discard(key)
            if owned_only and not w.owned(key, actives):
                continue
            st = w.load(key)
            if not st.unanchored:
                continue
            p = w.partition_for_key(key)
            if p is None:
                continue
            by_part.setdefault(p, []).extend((aid, seq, h) for aid, (seq, h) in st.unanchored.items())
            st.unanchored = {}
            changed[key] = (p, st)
        if not by_part:
            return
        now_ms = int(w.clock() * 1000)
        sends, rows = [], []
        for p, leaves in sorted(by_part.items()):
            rec = build_anchor(p, now_ms, leaves, settings.app_id)
            sends.append((w.topics.audit_anchors, f"{p}:{now_ms}".encode(), canonical(rec)))
            rows.append(sink_rows.anchor_row(rec))
        w.watchdog.stage("audit_anchors", f"send {len(sends)} anchors")
        await w.bulk.send(records(sends))
        w.commit.add({"audit_anchors": rows}, changed, [], None)
        w.watchdog.done("audit_anchors")
        log.info("audit anchors: %d partitions, %d chain heads", len(sends), sum(len(v) for v in by_part.values()))
