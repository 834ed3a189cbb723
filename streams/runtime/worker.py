"""What the agents and timers of one worker share: the Faust app, its topics and tables, the
processor, the state cache and the commit pipeline (the app object, apart from the user API).

:func:`streams.runtime.app.create_app` builds one :class:`Worker`; each agent module
(``entity_agent``, ``sink_agent``, ``peer_agent``, ``timers``, ``health``, ``pages``) registers
its agents, timers or pages on it. State is reached only through :meth:`Worker.load` (an entity's
uncommitted change, else the cached or stored state) and changed only under ``state_lock``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import faust
from faust.types import TP

from riskwatch.domain.county import County
from riskwatch.settings import Settings
from sinks import rows as sink_rows
from sinks.writer import ClickHouseWriter
from streams.engine.batch import Destinations, EntityBatch
from streams.engine.dispatch import Processor
from streams.engine.ingest import Decoder
from streams.engine.peer_counts import PeerCounts
from streams.engine.silences import SilenceBoard
from streams.engine.state import EntityState
from streams.runtime import topics as T
from streams.runtime.bulk import BulkProducer
from streams.runtime.commit import Commit
from streams.runtime.metrics import COMMIT_EVENTS, COMMIT_SECONDS, STATE_CACHE
from streams.runtime.outbox import Outbox
from streams.runtime.store import StateCache
from streams.runtime.watchdog import Watchdog

BATCH_MAX = 5000
MAX_PENDING = (
    100_000  # processed readings waiting for their commit before the entity agent waits (replay bound after a crash)
)
MAX_DIRTY = 10_000  # changed entity states (~10 KB each, live until committed) that start a commit before the interval
IDLE_PARTITION_SECONDS = 5.0  # event clock: a partition silent this long (wall time) is idle


def faust_app(settings: Settings) -> faust.App:
    """The Faust application: consumer group, broker, web port, producer and failure timings."""
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{settings.kafka_bootstrap.replace(',', ';kafka://')}",
        broker_credentials=settings.faust_credentials(),
        # rocksdb: states on disk under datadir, a restart reads only the changelog after the offset
        # it persisted; memory: everything in RAM, the whole changelog re-read on every start
        store="rocksdb://" if settings.state_store == "rocksdb" else "memory://",
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication,
        topic_allow_declare=True,
        web_enabled=True,
        web_host=settings.web_host,
        web_port=settings.web_port,
        web_bind=settings.web_host,
        producer_acks=-1,
        producer_linger_ms=5,
        broker_commit_every=BATCH_MAX,
        broker_commit_interval=settings.offset_commit_interval_seconds,
        consumer_auto_offset_reset="earliest",
        # A worker that dies is noticed in ~10 s (not Kafka's default 45 s): its partitions and
        # their state move to the survivors quickly.
        broker_session_timeout=10.0,
        broker_heartbeat_interval=3.0,
        table_standby_replicas=0,
        datadir=str(settings.state_dir / "faust"),
        logging_config=None,
    )
    app.conf.producer_max_request_size = max(1_048_576, settings.max_message_bytes * 4)
    app.conf.producer_max_batch_size = 262_144  # one record batch carries ~150 entity states to the changelog
    return app


def raw_topic(app: faust.App, *names: str) -> faust.TopicT:
    """A topic of raw bytes, keys and values (contracts are checked by the decoder, not by Faust)."""
    return app.topic(*names, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")


# RocksDB, per table partition (Faust opens one DB per changelog partition; its defaults are a
# 2 GB block cache and 3 x 64 MB memtables each, i.e. up to ~2.2 GB per partition, and a bloom
# filter of 3 bits per key). States are read from RocksDB only on a miss of the worker's
# live-object cache (streams/runtime/store.py), one point lookup per entity, so: a small block cache (the
# OS page cache holds the SST files anyway), 2 memtables of 8 MB (~4,000 states of ~2 KB; a
# memtable fills up before it is flushed, so this is resident memory: 16-32 MB per partition at
# 16 MB bought only ~2 µs per get) and 10 bits per key (~1 % false positives instead of ~20 %: a
# lookup of a new entity over 4 partitions 11 instead of 26 µs). At most 4 x (2 x 8 + 4) MB = 80 MB.
ROCKSDB_OPTIONS: dict[str, int] = dict(
    write_buffer_size=8 << 20, max_write_buffer_number=2, block_cache_size=4 << 20, bloom_filter_size=10
)


@dataclass
class Topics:
    """The worker's Faust topics (raw bytes in and out; contracts are checked by the decoder)."""

    inputs: faust.TopicT
    alerts_all: faust.TopicT
    alert_events: faust.TopicT
    inspection_plans: faust.TopicT
    departments: dict[str, faust.TopicT]
    notices: faust.TopicT
    deadletter: faust.TopicT
    peer_signals: faust.TopicT
    audit_anchors: faust.TopicT

    @classmethod
    def declare(cls, app: faust.App, settings: Settings, county: County) -> Topics:
        tp = settings.topic
        return cls(
            inputs=raw_topic(app, *(tp(t) for t in T.input_topics(county.catalog))),
            alerts_all=raw_topic(app, tp(T.ALERTS_ALL)),
            alert_events=raw_topic(app, tp(T.ALERT_EVENTS)),
            inspection_plans=raw_topic(app, tp(T.INSPECTION_PLANS)),
            departments={d: raw_topic(app, tp(T.dept_topic(d))) for d in county.catalog.departments},
            notices=raw_topic(app, tp(T.NOTICES)),
            deadletter=raw_topic(app, tp(T.DEADLETTER)),
            peer_signals=raw_topic(app, tp(T.PEER_SIGNALS)),
            audit_anchors=raw_topic(app, tp(T.AUDIT_ANCHORS)),
        )

    def outputs(self) -> list[faust.TopicT]:
        """Every topic the entity batch and the timers write."""
        d = self.destinations()
        return [d.alerts_all, d.alert_events, d.inspection_plans, d.notices, d.deadletter, *d.departments.values()]

    def destinations(self) -> Destinations[faust.TopicT]:
        """The entity batch's output topics (``streams/engine/batch.py``)."""
        return Destinations(
            self.alerts_all, self.alert_events, self.inspection_plans, self.departments, self.notices, self.deadletter
        )


@dataclass
class Worker:
    """One worker's shared parts. Built by :func:`Worker.build`; read by the agent modules."""

    settings: Settings
    county: County
    app: faust.App
    topics: Topics
    entities: faust.types.TableT  # entity_id bytes -> EntityState.dumps() bytes (data only; changelog-backed)
    peers: faust.types.TableT  # group -> PeerRates bytes (reached through a repartition)
    processor: Processor
    batch: EntityBatch  # the engine's batch step, with this worker's topics, rows, state loader
    writer: ClickHouseWriter
    cache: StateCache
    bulk: BulkProducer
    commit: Commit
    watchdog: Watchdog
    commit_watchdog: Watchdog
    clock: Callable[[], float] = time.time
    silences: SilenceBoard = field(default_factory=SilenceBoard)
    # the batch agent and the timers (deadlines, eviction) change entity states; they take turns
    state_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    alert_keys: set[bytes] = field(default_factory=set)  # entities with alerts: what the deadline timer visits
    unanchored_keys: set[bytes] = field(default_factory=set)  # entities with audit-chain heads not yet anchored
    health_keys: set[bytes] = field(default_factory=set)  # entities with devices: what the offline scan visits
    part_time: dict[int, tuple[float, float]] = field(
        default_factory=dict
    )  # partition -> (latest event time, wall time)
    partition_of: dict[bytes, int] = field(default_factory=dict)  # entity key -> input partition it came from
    peer_counts: PeerCounts | None = None
    # input topics of people's actions (workbench forms): a batch with one is committed at once
    urgent_topics: frozenset = frozenset()
    outbox: Outbox | None = None  # timers' outputs, sent after their states' commit (set by build)

    @classmethod
    def build(cls, settings: Settings, county: County, writer: ClickHouseWriter, clock=time.time) -> Worker:
        (settings.state_dir / "faust").mkdir(parents=True, exist_ok=True)
        app = faust_app(settings)
        topics = Topics.declare(app, settings, county)
        # group state (township, entity kind): reached through a repartition, never shared
        # (a table of key_type/value_type bytes stores them raw: Faust picks the "raw" serializer for bytes)
        options = dict(ROCKSDB_OPTIONS) if settings.state_store == "rocksdb" else None
        peers = app.Table("peers", partitions=settings.partitions, key_type=bytes, value_type=bytes, options=options)
        # Keyed like the input topics (entity_id bytes). An entity's state is written to the changelog
        # partition its events came from (whatever partitioner the producers used), so the worker that
        # owns an input partition also owns, and recovers, the state of its entities.
        entities = app.Table(  # EntityState.dumps(): b"RW" v1 + msgpack
            "entities", partitions=settings.partitions, key_type=bytes, value_type=bytes, options=options
        )
        cache = StateCache(
            entities, max_entries=settings.state_cache_entries, actives=lambda: app.assignor.assigned_actives()
        )
        # the live objects are the truth only for what this worker stored since its partitions were
        # assigned: a rebalance or a changelog recovery drops them, the (recovered) table wins
        STATE_CACHE.cache = cache  # its hits and misses on /metrics
        app.on_partitions_revoked.connect(cache.aclear)
        app.on_partitions_assigned.connect(cache.aclear)
        entities.on_recover(cache.aclear)
        watchdog = Watchdog(settings.stall_exit_seconds)
        bulk = BulkProducer(app)  # a batch's outputs and entity-state changelog: one produce per partition
        peer_counts = PeerCounts(settings.topic(T.PEER_SIGNALS))  # township/kind counts, once per commit and hour
        commit = Commit(
            writer,
            bulk,
            entities,
            dumps=cache.store,
            written=cache.written,
            forget=cache.forget,
            watchdog=watchdog,
            max_pending=MAX_PENDING,
            max_dirty=MAX_DIRTY,
            collect=peer_counts.drain,
            interval=settings.commit_interval_seconds,
            observe=observe_commit,
        )
        processor = Processor.from_county(
            county, clock=clock, web_url=settings.workbench_url, evidence=settings.audit_chain
        )
        partition_of: dict[bytes, int] = {}
        batch = EntityBatch(
            processor,
            Decoder(county.catalog, settings.max_message_bytes, settings.topic_prefix),
            topics.destinations(),
            sink_rows,
            load=lambda key: w.load(key),
            partition_of=partition_of,
            peers=peer_counts if settings.township_surges else None,
        )
        w = cls(
            settings=settings,
            county=county,
            app=app,
            topics=topics,
            entities=entities,
            peers=peers,
            processor=processor,
            batch=batch,
            writer=writer,
            cache=cache,
            bulk=bulk,
            commit=commit,
            watchdog=watchdog,
            commit_watchdog=Watchdog(settings.commit_stall_exit_seconds),
            clock=clock,
            peer_counts=peer_counts,
            urgent_topics=frozenset(settings.topic(t) for t in T.human_topics(county.catalog)),
            partition_of=partition_of,
        )
        # batches hold many events, so there is no "current event" to take the partition from; Faust has
        # no hook for this, the table's method is replaced on the instance
        entities.partition_for_key = w.partition_for_key  # type: ignore[method-assign]
        cache.partition_for_key = w.partition_of.get  # a miss reads that partition's DB (else scans the others)
        w.outbox = commit.outbox = Outbox(
            w.load,
            w.owned,
            w.partition_for_key,
            lambda recs: bulk.send(recs),
            lambda dirty: commit.add({}, dirty, [], None),
            commit.soon,
            allowed=frozenset(t.get_topic_name() for t in topics.outputs()),
        )
        return w

    # --- state ----------------------------------------------------------------------------------
    def partition_for_key(self, key: bytes) -> int | None:
        """The entity's partition: where its events came from, else where the store holds it."""
        p = self.partition_of.get(key)
        if p is not None:
            return p
        store: Any = self.entities.data  # Faust's store; its key index and DBs are private (untyped) parts
        kp = getattr(store, "_key_partition", None)
        if kp is not None:  # memory store
            return kp.get(key)
        p = store._key_index.get(key)  # RocksDB: Faust's (bounded) key index, else each open partition
        if p is None:
            for part, db in list(store._dbs.items()):
                if db.key_may_exist(key) and db.get(key) is not None:
                    p = part
                    break
        if p is not None:
            self.partition_of[key] = p
        return p

    def load(self, key: bytes) -> EntityState:
        """An entity's current state: its uncommitted change, else the cached/stored one."""
        pending, st = self.commit.live(key)
        if pending:
            return st if st is not None else EntityState()
        return self.cache.load(key)

    # --- partitions -----------------------------------------------------------------------------
    @property
    def first_input(self) -> str:
        return self.settings.topic(T.SHARED_INPUTS[0])

    def actives(self) -> frozenset:
        return frozenset(self.app.assignor.assigned_actives())

    def owned(self, key: bytes, actives: frozenset | None = None) -> bool:
        """Whether this worker currently owns the key's partition (a table keeps revoked keys in memory).
        A loop over many keys passes ``actives`` (the assignor builds the set anew on every call)."""
        p = self.partition_for_key(key)
        return p is not None and TP(self.first_input, p) in (self.actives() if actives is None else actives)

    def input_tps(self) -> list:
        """This worker's input topic partitions, sorted."""
        prefix = self.settings.topic_prefix + "events."
        return sorted(
            (x for x in self.app.assignor.assigned_actives() if x.topic.startswith(prefix)),
            key=lambda x: (x.topic, x.partition),
        )

    def lifecycle_now(self) -> float:
        """The deadline clock: the wall clock, or (``event``) the watermark: the event time every
        partition this worker owns has reached (the slowest one), so an entity's deadline never
        passes before its own partition's events up to then were processed. A partition without
        new events for ``IDLE_PARTITION_SECONDS`` does not hold the watermark back (idleness)."""
        if self.settings.lifecycle_clock != "event":
            return self.clock()
        owned_parts = {x.partition for x in self.app.assignor.assigned_actives() if x.topic == self.first_input}
        seen = [(t, w) for p, (t, w) in self.part_time.items() if p in owned_parts]
        if not seen:
            return 0.0
        wall = time.monotonic()
        active = [t for t, w in seen if wall - w < IDLE_PARTITION_SECONDS]
        return min(active) if active else max(t for t, _ in seen)

    # --- outputs --------------------------------------------------------------------------------
    def note_state(self, key: bytes, st: EntityState) -> None:
        """Keep the timers' key sets current for a changed state (alerts; unanchored chain heads)."""
        (self.alert_keys.add if st.alerts or st.orders else self.alert_keys.discard)(key)
        if st.unanchored:
            self.unanchored_keys.add(key)
        if st.health:
            self.health_keys.add(key)


def observe_commit(seconds: float, events: int) -> None:
    """A finished commit on /metrics: how long it took and how many input events it committed."""
    COMMIT_SECONDS.observe(seconds)
    COMMIT_EVENTS.inc(events)


def records(sends: list[tuple]) -> list[tuple]:
    """(Faust topic, key, value) → bulk records, partitioned by key as ``topic.send`` would."""
    return [(t.get_topic_name(), None, k, v) for t, k, v in sends]
