"""The outbox: what a timer decides leaves the worker only once the state that decided it is committed.

An event's outputs are sent at once (alert latency) and its state committed after: a crash in
between replays the same events against the same state, which decides the same outputs again
(same alert ids, same revisions, same bytes), and consumers take a repeated revision as the one
they have. A timer has no event to replay. The deadline timer (a pending alert fires, an overdue one
is urged) and the device offline scan decide at the moment they run; a replay after a crash runs
them at other moments. Sent before their state was committed, their outputs could then be decided
differently, or not at all: the hour under faults found two offline alarms sent, never raised again
by the replayed scan, whose alert id a later gap of the same device reused for another incident
(two different revisions under one ``(alert_id, seq)``, two notifications).

So a timer's outputs go into the state (``EntityState.outbox``) instead, in the changelog with it
(the transactional outbox): the commit that makes the state durable (``streams/runtime/commit.py``)
sends the outbox afterwards (:meth:`Outbox.flush`) and drops what it sent from the state (stored by
the next commit). A crash before the state's commit loses the decision and its outputs together (the
replay decides anew); a crash after it finds them in the recovered state (:meth:`Outbox.recover`)
and sends them then: identical bytes, so a repeat is a redelivery, never a second version. While an
entity's outbox waits, that entity's later outputs queue behind it (:meth:`Outbox.behind`): its
revisions reach the topics in their order.

>>> from types import SimpleNamespace as NS
>>> from streams.engine.state import EntityState
>>> st = EntityState()
>>> hold(st, [(NS(get_topic_name=lambda: "alerts.all"), b"E1", b"{...}")])
1
>>> st.outbox
[('alerts.all', b'E1', b'{...}')]
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from streams.engine.state import EntityState

log = logging.getLogger("riskwatch.worker")


def hold(st: EntityState, sends: list[tuple[Any, bytes | None, bytes]]) -> int:
    """Put ``(Faust topic, key, value)`` sends into the state's outbox; how many."""
    st.outbox.extend((t.get_topic_name(), k, v) for t, k, v in sends)
    return len(sends)


class Outbox:
    """The worker's side of the outbox: which committed states hold records, and sending them.

    ``load(key)`` is the worker's state loader (copy-on-write against a commit in flight),
    ``owned(key)`` whether this worker still owns the key's partition, ``partition(key)`` its
    changelog partition, ``send(records)`` the bulk producer, ``add(dirty)`` queues changed states
    for the next commit, ``soon()`` asks for that commit now; ``allowed``: the topics a record may name."""

    def __init__(
        self,
        load: Callable[[bytes], EntityState],
        owned: Callable[[bytes], bool],
        partition: Callable[[bytes], int | None],
        send: Callable[[list], Any],
        add: Callable[[dict], None],
        soon: Callable[[], None],
        allowed: frozenset[str] | None = None,
    ) -> None:
        self.load, self.owned, self.partition, self.send, self.add, self.soon = load, owned, partition, send, add, soon
        # the worker's output topics: a record naming another (a forged changelog record) is never sent
        self.allowed = allowed
        self.refused = 0
        self.recovered: set[bytes] = set()  # states read from the changelog with records still in their outbox
        self.sent = 0  # records sent (tests, /metrics)

    def behind(self, sends: list[tuple[Any, bytes | None, bytes]], states: dict[bytes, EntityState]) -> list:
        """A batch's sends, less those of entities whose outbox still waits: those join their outbox
        (behind the timer's records), so one entity's outputs keep their order."""
        if not any(st.outbox for st in states.values()):
            return sends
        now: list = []
        for s in sends:
            st = states.get(s[1]) if s[1] is not None else None
            if st is not None and st.outbox:
                hold(st, [s])
            else:
                now.append(s)
        return now

    def recover(self, key: bytes) -> None:
        """A state recovered with records in its outbox (a crash after its commit, before the send):
        the next commit sends them."""
        self.recovered.add(key)
        self.soon()

    def marks(self, dirty: dict[bytes, tuple[int | None, Any]]) -> dict[bytes, int]:
        """In a commit's snapshot: how many outbox records of each state this commit makes durable
        (states in it, and recovered ones, already durable). No await: the snapshot is atomic."""
        m = {key: len(st.outbox) for key, (_, st) in dirty.items() if st is not None and st.outbox}
        for key in self.recovered:
            if key not in m:
                n = len(self.load(key).outbox)
                if n:
                    m[key] = n
        self.recovered.clear()
        return m

    async def flush(self, marks: dict[bytes, int]) -> None:
        """After the commit's changelog was acknowledged: send the marked records, in order, and drop
        them from their states (queued for the next commit, which starts only after this send)."""
        records: list = []
        cleared: dict[bytes, tuple[int | None, EntityState]] = {}
        for key, n in marks.items():
            if not self.owned(key):  # moved to another worker, which recovers the outbox from the changelog
                continue
            st = self.load(key)
            k = min(n, len(st.outbox))
            if not k:
                continue
            for topic, rk, value in st.outbox[:k]:
                if self.allowed is None or topic in self.allowed:
                    records.append((topic, None, rk, value))
                else:
                    self.refused += 1
                    log.error("outbox of %r names %r, not one of the worker's output topics: not sent", key, topic)
            del st.outbox[:k]
            cleared[key] = (self.partition(key), st)
        if not cleared:
            return
        self.add(cleared)
        await self.send(records)
        self.sent += len(records)
