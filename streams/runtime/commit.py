"""The commit pipeline: processed batches become durable in the background, in order.

A batch's alerts and other outputs are published as soon as it is processed (that is the alert
latency). What makes the batch *done* — its rows in ClickHouse, its entities' states in the
changelog, and only then its offsets acknowledged — runs here, one commit at a time, while the
agent goes on with the next batches. Each commit takes everything processed since the previous
one began, and commits start at most every ``interval`` seconds (unless events pile up): one
ClickHouse insert per table and one changelog record per changed entity however many batches a
commit covers (Kafka Streams' record cache and commit interval). A ClickHouse insert has a fixed
cost of 10–30 ms whatever its size, so small commits would spend the CPU on that.

Why it is safe:

* **Snapshot.** A commit takes the rows, events and dirty states without awaiting in between;
  the agent runs on the same event loop, so the snapshot holds exactly the effects of the events
  it acknowledges — never of a later one whose rows are not stored yet. The states are then
  serialized ``chunk`` at a time, letting the loop run in between (2,000 states take ~100 ms:
  that long, no alert could go out). The agent reaches a state only through ``live(key)``, which
  serializes it first if this commit has not yet (copy on write), so later changes stay out.
* **Order.** Rows first, then the changelog (whose per-entity event-id ring marks the events as
  done), then the local store (``written``: RocksDB, with the changelog offsets it now holds),
  then the acknowledgements: a crash anywhere redelivers from the last committed offset, against
  the last committed state; ClickHouse rows repeated by it collapse under ``FINAL``. The local
  store is written only after the broker acknowledged the changelog, so it is always a prefix of
  the changelog: a restart reads the changelog after its persisted offset and catches up. A
  state ahead of the acknowledged input offsets only marks events whose rows were stored and
  whose alerts were sent: their redelivery is skipped by the ring. A timer's outputs wait in
  their state's outbox and are sent after the changelog (``streams/runtime/outbox.py``): a timer
  has no event whose replay would decide them again.
* **Holding acknowledgements.** The agent takes one reference on each event's message
  (``Message.incref``) before Faust's batch loop drops its own; the commit releases it. Faust's
  rebalance waits until the consumer has no unacknowledged message left (``stream_wait_empty``),
  so every processed batch is committed before partitions move.
* **Back-pressure.** The agent waits while more than ``max_pending`` events are uncommitted
  (a slow or unavailable ClickHouse stops consumption; nothing is dropped).
* **Bounded memory.** A commit starts before its interval once more than ``max_dirty`` entities
  changed since the last one: with many entities each changed state is a live object that the
  commit frees (a worker with 100k entities would otherwise hold ~15k of them, ~150 MB).

>>> import asyncio
>>> from types import SimpleNamespace as NS
>>> class Writer:
...     def __init__(self): self.rows = []
...     async def write_now(self, rows): self.rows.append(rows)
>>> class Bulk:
...     def __init__(self): self.sent = []
...     async def send(self, records): self.sent.extend(records)
>>> class Table:
...     def __init__(self): self.data = {}
...     changelog_topic = NS(get_topic_name=lambda: "app-entities-changelog")
>>> class Stream:
...     def __init__(self): self.acked = []
...     async def ack(self, event): event.message.refcount -= 1; self.acked.append(event)
>>> async def demo():
...     c = Commit(Writer(), Bulk(), Table(), dumps=lambda key, st: repr(st).encode())
...     task = asyncio.ensure_future(c.run())
...     ev = NS(message=NS(refcount=1, incref=lambda: None))
...     s = Stream()
...     c.add({"events_sensor": [(1,), (2,)]}, {b"E1": (0, {"n": 2})}, [ev], s)
...     await c.drained()
...     task.cancel()
...     return c.writer.rows, c.bulk.sent, c.table.data, len(s.acked), c.commits
>>> asyncio.run(demo())
([{'events_sensor': [(1,), (2,)]}], [('app-entities-changelog', 0, b'E1', b"{'n': 2}")], {b'E1': b"{'n': 2}"}, 1, 1)
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Callable
from typing import Any

from streams.runtime.bulk import YIELD_EVERY, table_records


class Commit:
    """Coalesce processed batches and commit them in the background (see the module docstring).

    ``dumps(key, state)`` serializes a state (the worker's live-object cache keeps the pair);
    ``state=None`` in ``add`` deletes the key (eviction). ``collect()``, called in the snapshot,
    returns more records to send with the changelog (outputs the worker sums per commit).
    ``written(items, offsets)`` puts the commit's ``{key: (partition, bytes or None)}`` into the
    local store once the changelog acknowledged them (``offsets``: changelog partition -> highest
    offset); ``forget(key)`` is told of deletions. Default: the table's ``data`` mapping.
    """

    def __init__(
        self,
        writer,
        bulk,
        table,
        dumps: Callable[[bytes, Any], bytes],
        *,
        watchdog=None,
        max_pending: int = 25_000,
        max_dirty: int = 0,
        interval: float = 0.0,
        collect: Callable[[], list] | None = None,
        observe: Callable[[float, int], None] | None = None,
        chunk: int = 256,
        written: Callable[[dict, dict], None] | None = None,
        forget: Callable[[bytes], None] | None = None,
        outbox=None,
    ) -> None:
        self.writer, self.bulk, self.table, self.dumps = writer, bulk, table, dumps
        self.written = written or self._write_data
        self.forget = forget
        self.watchdog, self.max_pending, self.interval, self.observe = watchdog, max_pending, interval, observe
        self.max_dirty = max_dirty  # changed states that start a commit before the interval (0: no bound)
        self.collect = collect  # more records to send with the changelog (outputs summed per commit)
        self.outbox = outbox  # timers' outputs, sent once their states are durable (streams/runtime/outbox.py)
        self.rows: dict[str, list] = {}
        self.dirty: dict[bytes, tuple[int | None, Any]] = {}
        self.chunk = chunk
        self._unserialized: dict[bytes, tuple[int | None, Any]] = {}  # the snapshot's states not serialized yet
        self._records: list = []  # the commit in flight's changelog records
        self._changed: dict[bytes, tuple[int | None, Any]] = {}  # ... and its states as bytes, for the local store
        self.held: list[tuple[Any, list]] = []
        self.pending = 0  # events processed and not yet committed (including the commit in flight)
        self.commits = 0
        self._queued = 0
        self._wake = asyncio.Event()
        self._urgent = asyncio.Event()  # commit now, without waiting for the interval
        self._progress = asyncio.Event()
        self._last = 0.0

    # --- the agent's side ----------------------------------------------------------------------
    def live(self, key: bytes) -> tuple[bool, Any]:
        """``(True, state)`` if the key has a change not yet in a commit (``state`` None: deleted).

        Call it before changing a state: if the commit in flight has not serialized the key's state
        yet, it does so now, so the change cannot leak into that commit's snapshot."""
        hit = self.dirty.get(key)
        if hit is not None:
            return (True, hit[1])
        if self._unserialized:
            snap = self._unserialized.pop(key, None)
            if snap is not None:
                self._serialize({key: snap})
        return (False, None)

    def _serialize(self, states: dict[bytes, tuple[int | None, Any]]) -> None:
        changed = {key: (p, None if st is None else self.dumps(key, st)) for key, (p, st) in states.items()}
        if self.forget is not None:
            for key, (_, raw) in changed.items():
                if raw is None:
                    self.forget(key)
        self._records.extend(table_records(self.table, changed))
        self._changed.update(changed)

    def _write_data(self, items: dict, offsets: dict) -> None:
        data = self.table.data
        for key, (_, value) in items.items():
            if value is None:
                data.pop(key, None)
            else:
                data[key] = value

    def add(
        self,
        rows: dict[str, list],
        dirty: dict[bytes, tuple[int | None, Any]],
        events: list,
        stream,
        count: int | None = None,
    ) -> None:
        """Queue a processed batch: its ClickHouse rows, changed states, and events to acknowledge.
        ``count``: how many events the messages carried (a gateway batch is many readings; the
        back-pressure and the commit size count readings, not messages); default one per message."""
        for table, r in rows.items():
            if r:
                self.rows.setdefault(table, []).extend(r)
        self.dirty.update(dirty)
        if self.max_dirty and len(self.dirty) > self.max_dirty:
            self._urgent.set()
        if events:
            for e in events:
                e.message.incref()  # released by the commit; Faust's own ack no longer completes it
            self.held.append((stream, events))
            n = len(events) if count is None else count
            self.pending += n
            self._queued += n
            if self._queued > self.max_pending // 2:
                self._urgent.set()
        self._wake.set()

    def soon(self) -> None:
        """Commit without waiting for the interval (a person's action waits for its row in the
        workbench; the bulk of the input, readings, keeps the interval)."""
        self._urgent.set()
        self._wake.set()

    def _recovered(self) -> bool:
        return self.outbox is not None and bool(self.outbox.recovered)

    async def wait_room(self) -> None:
        """Back-pressure: return once no more than ``max_pending`` events wait for a commit."""
        while self.pending > self.max_pending:
            self._progress.clear()
            await self._progress.wait()

    async def drained(self) -> None:
        """Return once everything added so far is committed (tests, shutdown)."""
        while self.rows or self.dirty or self.held or self._queued or self.pending or self._recovered():
            self._urgent.set()
            self._progress.clear()
            await self._progress.wait()

    # --- the background task ---------------------------------------------------------------------
    async def run(self) -> None:
        while True:
            await self._wake.wait()
            early = self.interval - (time.monotonic() - self._last)
            if early > 0 and not self._urgent.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._urgent.wait(), early)  # the commit interval, not a sync sleep
            self._wake.clear()
            self._urgent.clear()
            self._last = time.monotonic()
            if self.rows or self.dirty or self.held or self._recovered():
                await self.commit_once()

    async def commit_once(self) -> None:
        t0 = time.perf_counter()
        # the snapshot: no await until rows, events and states are taken
        rows, dirty, held, n = self.rows, self.dirty, self.held, self._queued
        self.rows, self.dirty, self.held, self._queued = {}, {}, [], 0
        self._records = self.collect() if self.collect is not None else []
        marks = self.outbox.marks(dirty) if self.outbox is not None else {}
        self._unserialized = dirty
        # then the states, a chunk at a time; live() serializes a state the agent reaches first
        while self._unserialized:
            keys = list(itertools.islice(self._unserialized, self.chunk))
            self._serialize({key: self._unserialized.pop(key) for key in keys})
            if self._unserialized:
                await asyncio.sleep(0)
        records, self._records = self._records, []
        changed, self._changed = self._changed, {}
        wd = self.watchdog
        if rows:
            wd and wd.stage("commit", f"clickhouse ({n} events)", patient=True)
            await self.writer.write_now(rows)
        wd and wd.stage("commit", f"changelog ({len(records)} states)")
        sent = await self.bulk.send(records) or {}
        if changed:
            wd and wd.stage("commit", f"local store ({len(changed)} states)")
            topic = self.table.changelog_topic.get_topic_name()
            self.written(changed, {p: off for (t, p), off in sent.items() if t == topic})
        if marks:  # the outbox records these states hold are durable now: send them
            wd and wd.stage("commit", f"outbox ({len(marks)} states)")
            await self.outbox.flush(marks)
        wd and wd.stage("commit", "acknowledge")
        acked = 0
        for stream, events in held:
            for e in events:
                await stream.ack(e)  # never suspends: without a yield, 50,000 acks hold the loop ~100 ms
                acked += 1
                if acked % YIELD_EVERY == 0:
                    await asyncio.sleep(0)  # let the agent publish alerts (latency) between slices
        wd and wd.done("commit")
        self.pending -= n
        self.commits += 1
        if self.observe:
            self.observe(time.perf_counter() - t0, n)
        self._progress.set()
