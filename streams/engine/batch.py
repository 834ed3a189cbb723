"""A batch of input messages → what the runtime must send and store: the engine's batch step.

:class:`EntityBatch` decodes each message (``ingest.py``; bad input → a dead letter keeping the
original bytes and the reason; a gateway batch's bad readings, refused by the decoder or the
processor → one dead letter for the message, its payload once with every bad index and its
reason), loads the entity's state once per batch, runs the
:class:`~streams.engine.dispatch.Processor` and collects a :class:`BatchOutput`: the records to send
(alert revisions to ``alerts.all`` and each recipient department, transitions, plans, notices, dead
letters), the ClickHouse rows, the changed states, per-topic counts and the latest event time per
partition. A redelivered message (same topic, partition and offset as recorded in the state) is
skipped and counted. It never touches Kafka: the Faust runtime (``streams/runtime/entity_agent.py``)
hands it the batch and sends, commits and counts what it returns; a test drives it with plain calls
(``tests/test_engine.py``).

Destinations are opaque (type ``D``): the runtime passes its Faust topics, a test passes strings.
Rows are built by the functions of ``sinks/rows.py`` (any object with them, :class:`RowBuilders`).

>>> from riskwatch.domain.county import load_county
>>> from sinks import rows
>>> from streams.engine.dispatch import Processor
>>> from streams.engine.ingest import Decoder
>>> county = load_county()
>>> dest = Destinations("alerts.all", "alerts.events", "inspection.plans",
...                     {d: f"alerts.{d}" for d in county.catalog.departments}, "notices", "deadletter")
>>> states: dict[bytes, EntityState] = {}
>>> eb = EntityBatch(Processor.from_county(county), Decoder(county.catalog), dest, rows,
...                  load=lambda key: states.setdefault(key, EntityState()), partition_of={})
>>> out = eb.run([Record(Message("events.sensor", 0, 7, b"E1"), b'{"event_id": 1}')])
>>> out.counts, [(t, k) for t, k, _ in out.sends]
(Counter({('events.sensor', 'dead'): 1}), [('deadletter', b'E1')])
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import orjson

from schemas.events import (
    Complaint,
    Contribution,
    DeadLetter,
    EntityEvent,
    Event,
    InspectionPlan,
    InspectionTask,
    VideoDetection,
)
from streams.engine.dispatch import Processor
from streams.engine.health import clock_skewed, source_of
from streams.engine.ingest import Batch, Decoder
from streams.engine.outcome import EvidenceRow, OrderRow, Outcome
from streams.engine.peer_counts import PeerCounts
from streams.engine.state import RECENT_IDS, EntityState

D = TypeVar("D")  # where a record goes: the runtime's topic handle (a Faust topic); opaque here
Row = tuple[Any, ...]


class MessageLike(Protocol):
    """What the batch needs of a Kafka message (Faust's ``Message`` has these)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...


class RecordLike(Protocol):
    """One delivered message with its raw value (Faust's ``EventT`` of a raw topic)."""

    @property
    def message(self) -> MessageLike: ...
    @property
    def value(self) -> bytes: ...


@dataclass(slots=True)
class Message:
    """A plain :class:`MessageLike` (tests, tools)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None


@dataclass(slots=True)
class Record:
    """A plain :class:`RecordLike` (tests, tools)."""

    message: Message
    value: bytes


class RowBuilders(Protocol):
    """The ClickHouse row builders the batch uses (the module ``sinks.rows`` is one)."""

    def event_row(self, e: Event) -> tuple[str, Row]: ...
    def registry_row(self, e: EntityEvent) -> Row: ...
    def risk_score_row(
        self, entity_id: str, at: Any, score: float, level: str, item_id: int | None, top: list[Contribution]
    ) -> Row: ...
    def plan_row(self, p: InspectionPlan) -> Row: ...
    def task_row(self, e: InspectionTask) -> Row: ...
    def evidence_row(self, d: EvidenceRow) -> Row: ...
    def order_row(self, d: OrderRow) -> Row: ...


@dataclass(slots=True)
class Destinations(Generic[D]):
    """The output topics of the entity batch."""

    alerts_all: D
    alert_events: D
    inspection_plans: D
    departments: dict[str, D]  # department code -> its alerts topic
    notices: D
    deadletter: D


@dataclass(slots=True)
class BatchOutput(Generic[D]):
    """What one batch produced (the runtime sends, then commits; nothing here is sent yet)."""

    sends: list[tuple[D, bytes | None, bytes]] = field(default_factory=list)  # (destination, key, value)
    rows: dict[str, list[Row]] = field(default_factory=dict)  # ClickHouse table -> rows
    states: dict[bytes, EntityState] = field(default_factory=dict)  # entity key -> its (changed) state
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)  # (topic, ok|dead|redelivered) -> n
    batch_time: dict[int, float] = field(default_factory=dict)  # input partition -> latest event time
    alerts_out: Counter[tuple[str, str]] = field(default_factory=Counter)  # (level, notification|status) -> n
    sources: Counter[tuple[str, str]] = field(default_factory=Counter)  # (source, ok|dead|skewed) -> n (health.py)


class EntityBatch(Generic[D]):
    """The batch step of the ``entities`` agent, without Faust. One per worker."""

    def __init__(
        self,
        processor: Processor,
        decoder: Decoder,
        dest: Destinations[D],
        rows: RowBuilders,
        load: Callable[[bytes], EntityState],
        partition_of: dict[bytes, int],
        peers: PeerCounts | None = None,
    ) -> None:
        self.processor = processor
        self.decoder = decoder
        self.dest = dest
        self.rows = rows
        self.load = load  # (entity key) -> its current state (uncommitted change, cache, store)
        self.partition_of = partition_of  # entity key -> input partition (set before a load: a store miss reads it)
        self.peers = peers  # township counts for the peer agent; None: township surges off

    def run(self, records: Iterable[RecordLike]) -> BatchOutput[D]:
        out: BatchOutput[D] = BatchOutput()
        sends, counts, deadletter = out.sends, out.counts, self.dest.deadletter
        decode, handle = self.decoder.decode, self._handle
        for record in records:
            msg = record.message
            ev = decode(msg.topic, msg.partition, msg.offset, msg.key, record.value)
            if isinstance(ev, DeadLetter):
                sends.append((deadletter, msg.key, ev.model_dump_json().encode()))
                counts[(msg.topic, "dead")] += 1
                out.sources[(ev.source or source_of(record.value), "dead")] += 1
            elif isinstance(ev, Batch):  # a gateway's batch: each reading on its own, bad ones to ONE dead letter
                bad = list(ev.bad)
                # the ring keeps this whole batch (a replay skips it reading by reading)
                keep = RECENT_IDS + len(ev.events)
                for i, reading in zip(ev.positions, ev.events, strict=True):
                    why = handle(out, reading, msg, keep)
                    if why:
                        bad.append((i, f"readings[{i}] (event_id {reading.event_id!r}): {why}"))
                if bad:  # the payload once, with every bad index and its reason (decoder's and processor's)
                    dl = Decoder.dead_batch(msg.topic, msg.partition, msg.offset, msg.key, record.value, bad, ev.total)
                    sends.append((deadletter, msg.key, dl.model_dump_json().encode()))
                    counts[(msg.topic, "dead")] += len(bad)  # counted per refused reading, as the "ok" ones
                    out.sources[(source_of(record.value), "dead")] += len(bad)
            else:
                why = handle(out, ev, msg, RECENT_IDS)
                if why:
                    dl = Decoder.dead(msg.topic, msg.partition, msg.offset, msg.key, record.value, why)
                    sends.append((deadletter, msg.key, dl.model_dump_json().encode()))
                    counts[(msg.topic, "dead")] += 1
                    out.sources[(ev.source, "dead")] += 1
        return out

    def _handle(self, out: BatchOutput[D], ev: Event, msg: MessageLike, keep: int) -> str | None:
        """One event through the processor into ``out``; a refusal's reason (the caller dead-letters it)."""
        key = ev.entity_id.encode()
        states = out.states
        st = states.get(key)
        if st is None:
            self.partition_of[key] = msg.partition  # before the load: a state store miss reads this partition
            st = states[key] = self.load(key)
        record_ts = getattr(msg, "timestamp", None)
        res = self.processor.process(ev, st, (msg.topic, msg.partition, msg.offset), keep)
        if res.redelivered:
            out.counts[(msg.topic, "redelivered")] += 1
            return None
        if res.rejected:
            return res.rejected
        out.counts[(msg.topic, "ok")] += 1
        out.sources[(ev.source, "ok")] += 1
        if clock_skewed(res.at, record_ts):  # against the broker's record timestamp
            out.sources[(ev.source, "skewed")] += 1
        if res.at > out.batch_time.get(msg.partition, 0.0):
            out.batch_time[msg.partition] = res.at
        rows, r = out.rows, self.rows
        table, row = r.event_row(ev)
        rows.setdefault(table, []).append(row)
        if isinstance(ev, EntityEvent):  # the registry's current state (名录库), one row per entity after FINAL
            rows.setdefault("registry", []).append(r.registry_row(ev))
        self._outputs(res, key, out)
        if self.peers is not None:
            peer = peer_signal(ev, st)
            if peer is not None:
                self.peers.add(*peer)
        for rk in res.risk:
            rows.setdefault("risk_scores", []).append(
                r.risk_score_row(rk.entity_id, rk.at, rk.score, rk.level, rk.item_id, rk.top)
            )
        return None

    def _outputs(self, res: Outcome, key: bytes, out: BatchOutput[D]) -> None:
        """An outcome's alert revisions, transitions, plans and notices, appended to the batch."""
        self.alert_sends(res, key, out.sends, out.alerts_out)
        self.plan_sends(res, key, out.sends, out.rows)
        for n in res.notices:
            out.sends.append((self.dest.notices, key, orjson.dumps(n.as_dict())))

    def alert_sends(
        self, res: Outcome, key: bytes, sends: list[tuple[D, bytes | None, bytes]], alerts_out: Counter[tuple[str, str]]
    ) -> None:
        """An outcome's alert revisions (to ``alerts.all`` and each recipient's topic) and
        transitions (``alerts.events``), appended to a batch's sends."""
        dest = self.dest
        for a in res.alerts:
            body = a.model_dump_json().encode()
            sends.append((dest.alerts_all, key, body))
            for d in a.recipients:
                sends.append((dest.departments[d], key, body))
            alerts_out[(a.level.value, a.notification or a.status.value)] += 1
        for tr in res.transitions:
            sends.append((dest.alert_events, key, orjson.dumps(tr)))

    def plan_sends(
        self, res: Outcome, key: bytes, sends: list[tuple[D, bytes | None, bytes]], rows: dict[str, list[Row]]
    ) -> None:
        """Joint inspection plans: to ``inspection.plans`` and their ClickHouse rows; alerts' on-site
        checks: their ``events_task`` rows (a moved one: a new version of its row); sealed
        evidence bundles: their ``evidence`` rows (stored with the batch, before its offsets)."""
        r = self.rows
        for plan in res.plans:
            sends.append((self.dest.inspection_plans, key, plan.model_dump_json().encode()))
            rows.setdefault("inspection_plans", []).append(r.plan_row(plan))
        for t in res.tasks:
            rows.setdefault("events_task", []).append(r.task_row(t))
        for b in res.evidence:
            rows.setdefault("evidence", []).append(r.evidence_row(b))
        for o in res.orders:  # rectification orders: a new version of the row per step
            rows.setdefault("rectification_orders", []).append(r.order_row(o))


def peer_signal(ev: Event, st: EntityState) -> tuple[str, float, float, int] | None:
    """What the group agent needs of an event: complaints and video detections counted per
    township, registrations/closures changing the group's size → (group, time, n, entities)."""
    if isinstance(ev, (Complaint, VideoDetection)) and st.township:
        n, entities = 1.0, 0
    elif isinstance(ev, EntityEvent) and ev.action != "updated":
        n, entities = 0.0, (1 if ev.action == "registered" else -1)
    else:
        return None
    return f"town:{st.township or getattr(ev, 'township', '')}", ev.occurred_at.timestamp(), n, entities
