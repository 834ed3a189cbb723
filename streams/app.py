"""The application object: a Faust app wiring topics, the entity table, the processor and sinks.

Agents (each reads a batch with ``take_events``; offsets are acknowledged only after the batch's
outputs are sent, its rows are in ClickHouse and its states in the changelog — at-least-once,
made idempotent downstream by event ids and alert revisions):

* ``entities`` — all input topics (co-partitioned by ``entity_id``). Per event: decode at the edge
  (``streams/ingest.py``; bad input → ``deadletter``), load the entity's state, run
  :class:`streams.processor.Processor`; per batch: send alert revisions to ``alerts.<dept>`` and
  ``alerts.all``, notices and dead letters at once (``streams/bulk.py``), then hand the rows, the
  changed states and the events to the commit pipeline (``streams/commit.py``), which stores and
  acknowledges them in the background while the next batches are processed.
* ``alert_sink`` — ``alerts.all``, ``alerts.events`` and ``deadletter`` → ClickHouse.
* ``peers`` — township rates, reached through a ``group_by`` repartition.
* timers: alert deadlines (urging, escalation, closing) and evicting entities silent for
  ``entity_ttl_days``.

The worker also serves ``GET/POST /query`` (read-only SQL; how analysts query the embedded chDB,
which only one process can open) and ``/metrics`` (Prometheus) on ``settings.web_port``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import traceback
import time
from collections import Counter
from datetime import datetime, timezone

import faust
import orjson
from faust.types import TP
from prometheus_client import Counter as PCounter, Histogram, generate_latest, CONTENT_TYPE_LATEST

from detectors.rules import load_rules
from riskwatch.domain.catalog import load_catalog
from riskwatch.settings import Settings
from detectors.rates import PeerRates
from riskwatch.domain.lifecycle import load_lifecycle
from schemas.events import Alert, AlertTransition, Complaint, DeadLetter, EntityEvent, VideoDetection
from sinks import rows as sink_rows
from sinks.query import QueryRefused
from sinks.writer import ClickHouseWriter
from streams import faust_fastpath, topics as T
from streams.ingest import Decoder
from streams.bulk import BulkProducer
from streams.commit import Commit
from streams.processor import Processor
from streams.silences import SilenceBoard, follow as follow_silences
from streams.watchdog import Watchdog
from streams.state import EntityState

log = logging.getLogger("riskwatch.worker")

EVENTS_IN = PCounter("riskwatch_events_total", "Input events by topic and result", ["topic", "result"])
ALERTS_OUT = PCounter("riskwatch_alert_revisions_total", "Alert revisions published", ["level", "status"])
BATCH_SECONDS = Histogram("riskwatch_batch_seconds", "Time to process one batch end to end")
EVICTED = PCounter("riskwatch_evicted_entities_total", "Entity states evicted after entity_ttl_days of silence")
SINK_SECONDS = Histogram("riskwatch_sink_write_seconds", "ClickHouse write latency per batch of the alert sink")
COMMIT_SECONDS = Histogram("riskwatch_commit_seconds", "Time to commit processed batches: ClickHouse rows, changelog, acknowledgements")
GC_PAUSE = Histogram("riskwatch_gc_pause_seconds", "Python garbage-collection pauses (they stall the event loop)",
                     ["generation"], buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
LOOP_LAG = Histogram("riskwatch_event_loop_lag_seconds",
                     "How late the worker's event loop woke a 0.25 s timer: how long a ready batch, alert or "
                     "/query waited for work holding the loop (a scan, a GC pause, a saturated core)",
                     buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
LOOP_LAG_PROBE = 0.25
COMMIT_EVENTS = PCounter("riskwatch_committed_events_total", "Input events committed (rows stored, state in the changelog, offsets acknowledged)")

IDLE_PARTITION_SECONDS = 5.0  # event clock: a partition silent this long (wall time) is idle
BATCH_MAX = 5000
BATCH_WITHIN = 0.05  # the entity agent: a batch waits at most this long to fill (alert latency)
SINK_WITHIN = 1.0  # the alert sink: ClickHouse rows for analysts, larger inserts
SCAN_CHUNK = 500  # entity states read per step of a full-table scan (~50 ms), then the loop runs others
MAX_PENDING = 25_000  # processed events waiting for their commit before the entity agent waits


def create_app(settings: Settings, writer: ClickHouseWriter | None = None, clock=time.time) -> faust.App:
    if settings.faust_fastpath:
        faust_fastpath.install()
    catalog = load_catalog(settings.catalog_path)
    rules = load_rules(settings.rules_path)
    decoder = Decoder(catalog, settings.max_message_bytes, settings.topic_prefix)
    processor = Processor(catalog, rules, clock=clock, lifecycle=load_lifecycle(settings.lifecycle_path, catalog),
                          web_url=settings.web_public_url)
    writer = writer or ClickHouseWriter(settings)
    tp = settings.topic
    (settings.state_dir / "faust").mkdir(parents=True, exist_ok=True)

    app = faust.App(
        settings.app_id,
        broker=f"kafka://{settings.kafka_bootstrap.replace(',', ';kafka://')}",
        broker_credentials=settings.faust_credentials(),
        store="memory://",  # state is rebuilt from the changelog topic on start / rebalance
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

    raw = dict(key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    inputs = app.topic(*(tp(t) for t in T.INPUT_TOPICS), internal=False, **raw)
    alerts_all = app.topic(tp(T.ALERTS_ALL), **raw)
    alert_events = app.topic(tp(T.ALERT_EVENTS), **raw)
    inspection_plans = app.topic(tp(T.INSPECTION_PLANS), **raw)
    dept_topics = {d: app.topic(tp(T.dept_topic(d)), **raw) for d in catalog.departments}
    notices = app.topic(tp(T.NOTICES), **raw)
    deadletter = app.topic(tp(T.DEADLETTER), **raw)

    peer_signals = app.topic(tp(T.PEER_SIGNALS), **raw)
    # group state (township, entity kind): reached through a repartition, never shared
    peers = app.Table("peers", partitions=settings.partitions, key_type=bytes, value_type=bytes)
    peers.key_serializer = peers.value_serializer = "raw"

    # Keyed like the input topics (entity_id bytes). An entity's state is written to the changelog
    # partition its events came from (whatever partitioner the producers used), so the worker that
    # owns an input partition also owns, and recovers, the state of its entities.
    entities = app.Table("entities", partitions=settings.partitions, key_type=bytes, value_type=bytes)
    entities.key_serializer = entities.value_serializer = "raw"  # pickled EntityState bytes
    partition_of: dict[bytes, int] = {}

    def _partition_for_key(key: bytes) -> int | None:
        p = partition_of.get(key)
        return p if p is not None else entities.data._key_partition.get(key)

    entities.partition_for_key = _partition_for_key  # batches hold many events: no "current event"

    cache = StateCache(entities, max_entries=settings.state_cache_entries)
    watchdog = Watchdog(settings.stall_exit_seconds)
    bulk = BulkProducer(app)  # a batch's outputs and entity-state changelog: one produce per partition
    peer_counts = PeerCounts(tp(T.PEER_SIGNALS))  # township/kind counts, sent once per commit and hour
    commit = Commit(writer, bulk, entities, dumps=cache.store, watchdog=watchdog, max_pending=MAX_PENDING,
                    collect=peer_counts.drain,
                    interval=settings.commit_interval_seconds,
                    observe=lambda secs, n: (COMMIT_SECONDS.observe(secs), COMMIT_EVENTS.inc(n)))

    def load(key: bytes) -> EntityState:
        """An entity's current state: its uncommitted change, else the cached/stored one."""
        pending, st = commit.live(key)
        if pending:
            return st if st is not None else EntityState()
        return cache.load(key)

    @app.task
    async def committer():
        await _crash_only("commit", lambda _: commit.run(), None)

    @app.task
    async def event_loop_lag():
        while True:
            t = time.monotonic()
            await asyncio.sleep(LOOP_LAG_PROBE)
            LOOP_LAG.observe(max(0.0, time.monotonic() - t - LOOP_LAG_PROBE))

    silences = SilenceBoard()
    commit_watchdog = Watchdog(settings.commit_stall_exit_seconds)

    input_prefix = settings.topic_prefix + "events."

    def input_tps() -> list:
        """This worker's input topic partitions, sorted."""
        return sorted((x for x in app.assignor.assigned_actives() if x.topic.startswith(input_prefix)),
                      key=lambda x: (x.topic, x.partition))

    def input_backlog() -> tuple[int, int]:
        """(messages of this worker's input partitions the broker has and no commit covers,
        sum of the committed offsets) — what the stall watchdog watches."""
        n = total = 0
        for x in input_tps():
            try:
                hw = app.consumer.highwater(x)
            except Exception:  # noqa: BLE001 - not fetched yet
                continue
            nxt = app.consumer._committed_offset.get(x) or 0  # Faust keeps the committed *next* offset
            total += nxt
            if hw is not None and hw > nxt:
                n += hw - nxt
        return n, total

    def consumer_diagnosis() -> str:
        """Faust's view of the input partitions: assigned, paused, buffered-full, offsets."""
        c = app.consumer
        try:
            rows = []
            for x in input_tps():
                try:
                    hw = c.highwater(x)
                except Exception:  # noqa: BLE001
                    hw = "?"
                rows.append(f"{x.topic}[{x.partition}] read={c._read_offset.get(x)} committed={c._committed_offset.get(x)} "
                            f"highwater={hw} paused={x in c._paused_partitions} "
                            f"buffer_full={x in getattr(c, '_buffered_partitions', ())}")
            return (f"flow_control active={app.flow_control.is_active()} generation={app.consumer_generation_id} "
                    f"paused={len(c._paused_partitions)} active={len(c._active_partitions or ())}\n  " + "\n  ".join(rows))
        except Exception as e:  # noqa: BLE001 - diagnosis must never fail the exit
            return f"(diagnosis failed: {e!r})"

    @app.timer(interval=5.0, on_leader=False)
    async def stall_watchdog():
        hit = watchdog.stuck()
        if watchdog.patient():
            commit_watchdog.no_progress(0, -1)  # waiting for ClickHouse on purpose: restart the commit clock
        elif hit is None:
            # input waiting while the commits do not move (batches or commits hung; or the broker away
            # for that long — hence a limit far above a broker restart's)
            hit = commit_watchdog.no_progress(*input_backlog())
        if hit is not None:
            agent, stage, secs = hit
            log.critical("agent %s has been stuck at '%s' for %.0f s: exiting so that the supervisor restarts the "
                         "worker and the batch is redelivered (nothing is lost; report this with the task dump below)",
                         agent, stage, secs)
            log.critical("consumer state: %s", consumer_diagnosis())
            dump_tasks(file=sys.stderr)
            logging.shutdown()
            os._exit(70)

    @app.task
    async def install_task_dump():
        import signal as _signal

        def _dump():
            log.warning("consumer state: %s", consumer_diagnosis())
            dump_tasks()

        asyncio.get_running_loop().add_signal_handler(_signal.SIGUSR2, _dump)

    @app.task
    async def silence_reader():
        """Every worker follows all of control.silences (maintenance windows apply to any entity)."""
        while True:
            try:
                await follow_silences(settings, tp(T.SILENCES), silences)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - keep following; the broker may be restarting
                log.warning("silences: reading %s failed (%s); retrying in 5 s", tp(T.SILENCES), e)
                await asyncio.sleep(5)
    # The batch agent and the timers (deadlines, eviction) change entity states; they take turns.
    state_lock = asyncio.Lock()
    alert_keys: set[bytes] = set()  # entities with alerts in their state: what the deadline timer visits
    part_time: dict[int, tuple[float, float]] = {}  # input partition -> (latest event time, wall time it came)

    def lifecycle_now() -> float:
        """The deadline clock: the wall clock, or (``event``) the watermark: the event time every
        partition this worker owns has reached (the slowest one), so an entity's deadline never
        passes before its own partition's events up to then were processed. A partition without
        new events for ``IDLE_PARTITION_SECONDS`` does not hold the watermark back (idleness)."""
        if settings.lifecycle_clock != "event":
            return clock()
        owned_parts = {x.partition for x in app.assignor.assigned_actives() if x.topic == tp_name0}
        seen = [(t, w) for p, (t, w) in part_time.items() if p in owned_parts]
        if not seen:
            return 0.0
        wall = time.monotonic()
        active = [t for t, w in seen if wall - w < IDLE_PARTITION_SECONDS]
        return min(active) if active else max(t for t, _ in seen)

    tp_name0 = tp(T.INPUT_TOPICS[0])

    def owned(key: bytes, actives: frozenset | None = None) -> bool:
        """Whether this worker currently owns the key's partition (a table keeps revoked keys in memory).
        A loop over many keys passes ``actives`` (the assignor builds the set anew on every call)."""
        p = _partition_for_key(key)
        return p is not None and TP(tp_name0, p) in (app.assignor.assigned_actives() if actives is None else actives)

    def alert_sends(out, key: bytes, sends: list) -> None:
        for a in out.alerts:
            body = a.model_dump_json().encode()
            sends.append((alerts_all, key, body))
            for d in a.recipients:
                sends.append((dept_topics[d], key, body))
            ALERTS_OUT.labels(a.level.value, a.notification or a.status.value).inc()
        for tr in out.transitions:
            sends.append((alert_events, key, orjson.dumps(tr)))

    def plan_sends(out, key: bytes, sends: list, rows: dict) -> None:
        for plan in out.plans:
            sends.append((inspection_plans, key, plan.model_dump_json().encode()))
            rows.setdefault("inspection_plans", []).append(sink_rows.plan_row(plan))

    @app.agent(inputs, name="entities")
    async def entity_agent(stream):
        async for batch in stream.take_events(BATCH_MAX, within=BATCH_WITHIN):
            async with state_lock:
                await _crash_only("entities", _entity_batch, (batch, stream))
            await commit.wait_room()

    async def _entity_batch(batch_stream):
            batch, stream = batch_stream
            t0 = time.perf_counter()
            watchdog.stage("entities", "process")
            processor.silences = silences.active()
            states: dict[bytes, EntityState] = {}
            batch_time: dict[int, float] = {}  # input partition -> latest event time in this batch
            event_rows: dict[str, list] = {}
            sends: list[tuple] = []
            counts: Counter = Counter()
            for event in batch:
                msg = event.message
                ev = decoder.decode(msg.topic, msg.partition, msg.offset, msg.key, event.value)
                if isinstance(ev, DeadLetter):
                    sends.append((deadletter, msg.key, _dl_bytes(ev)))
                    counts[(msg.topic, "dead")] += 1
                    continue
                key = ev.entity_id.encode()
                st = states.get(key)
                if st is None:
                    st = states[key] = load(key)
                    partition_of[key] = msg.partition
                out = processor.process(ev, st, (msg.topic, msg.partition, msg.offset))
                if out.redelivered:
                    counts[(msg.topic, "redelivered")] += 1
                    continue
                if out.rejected:
                    dl = Decoder.dead(msg.topic, msg.partition, msg.offset, msg.key, event.value, out.rejected)
                    sends.append((deadletter, msg.key, _dl_bytes(dl)))
                    counts[(msg.topic, "dead")] += 1
                    continue
                counts[(msg.topic, "ok")] += 1
                t_ev = ev.occurred_at.timestamp()
                if t_ev > batch_time.get(msg.partition, 0.0):
                    batch_time[msg.partition] = t_ev
                table, row = sink_rows.event_row(ev)
                event_rows.setdefault(table, []).append(row)
                if isinstance(ev, EntityEvent):  # the registry's current state (名录库), one row per entity after FINAL
                    event_rows.setdefault("registry", []).append(sink_rows.registry_row(ev))
                alert_sends(out, key, sends)
                plan_sends(out, key, sends, event_rows)
                for n in out.notices:
                    sends.append((notices, key, orjson.dumps(n.as_dict())))
                peer = _peer_signal(ev, st) if settings.township_surges else None
                if peer is not None:
                    peer_counts.add(*peer)
                for r in out.risk:
                    event_rows.setdefault("risk_scores", []).append(sink_rows.risk_score_row(
                        r["entity_id"], r["at"], r["score"], r["level"], r["item_id"], r["top"]))
            wall = time.monotonic()
            for p, t_ev in batch_time.items():
                part_time[p] = (max(t_ev, part_time.get(p, (0.0, 0.0))[0]), wall)
            # Outputs now (alert latency); rows, state and offsets by the commit pipeline (streams/commit.py)
            watchdog.stage("entities", f"send {len(sends)} outputs")
            await bulk.send(_records(sends))
            commit.add(event_rows, {key: (partition_of[key], st) for key, st in states.items()}, batch, stream)
            for key, st in states.items():
                (alert_keys.add if st.alerts else alert_keys.discard)(key)
            watchdog.done("entities")
            for (topic, result), n in counts.items():
                EVENTS_IN.labels(topic, result).inc(n)
            BATCH_SECONDS.observe(time.perf_counter() - t0)

    @app.agent(app.topic(tp(T.ALERTS_ALL), tp(T.ALERT_EVENTS), tp(T.DEADLETTER), **raw), name="alert_sink")
    async def alert_sink(stream):
        async for batch in stream.take_events(BATCH_MAX, within=SINK_WITHIN):
            await _crash_only("alert_sink", _sink_batch, batch)

    async def _sink_batch(batch):
            watchdog.stage("alert_sink", "process")
            by_table: dict[str, list] = {}
            for event in batch:
                msg = event.message
                try:
                    if msg.topic == tp(T.ALERTS_ALL):
                        a = Alert.model_validate_json(event.value)
                        by_table.setdefault("alerts", []).append(sink_rows.alert_row(a))
                    elif msg.topic == tp(T.ALERT_EVENTS):
                        tr = AlertTransition.model_validate_json(event.value)
                        by_table.setdefault("alert_history", []).append(sink_rows.transition_row(tr))
                    else:
                        by_table.setdefault("dead_letters", []).append(
                            sink_rows.dead_letter_row(DeadLetter.model_validate_json(event.value)))
                except Exception as e:  # noqa: BLE001 — our own output; log loudly, never crash
                    log.error("cannot store %s[%s]@%s: %s", msg.topic, msg.partition, msg.offset, e)
                    continue
            watchdog.stage("alert_sink", "clickhouse", patient=True)
            t1 = time.perf_counter()
            await writer.write_now(by_table)
            SINK_SECONDS.observe(time.perf_counter() - t1)
            watchdog.done("alert_sink")

    async def peer_agent(stream):
        """Township and entity-kind rates: ``group_by`` re-keys each signal by its group, so one
        worker owns each group's state; a township surge (many entities of one town at once)
        becomes a notice to the market regulator and the task-force office."""
        async for raw_sig in stream.group_by(lambda v: orjson.loads(v)["group"].encode(), name="group"):
            sig = orjson.loads(raw_sig)
            g = sig["group"].encode()
            pr = PeerRates.loads(peers.get(g))
            pr.learn_one(sig["group"], sig["t"], n=sig["n"], entities=sig["entities"])
            last = getattr(pr, "notified_at", 0.0)
            if sig["n"] and sig["group"].startswith("town:") and sig["t"] - last > 86400:
                s = pr.score_one(sig["group"], sig["t"])
                if s >= settings.township_surge_threshold:
                    pr.notified_at = sig["t"]
                    town = sig["group"][5:]
                    await notices.send(key=g, value=orjson.dumps({
                        "kind": "township_surge", "entity_id": "", "township": town, "score": round(s, 4),
                        "departments": [catalog.items[1].lead, catalog.taskforce_office],
                        "text": f"{town}近期投诉和视频违规明显增多(异常度{s:.2f}),请关注辖区内主体。",
                        "at": datetime.fromtimestamp(sig["t"], tz=timezone.utc).isoformat()}))
            peers[g] = pr.dumps()

    if settings.township_surges:
        app.agent(peer_signals, name="peers")(peer_agent)

    owned_then: list[frozenset] = [frozenset()]  # the input partitions at the last deadline check

    @app.timer(interval=settings.lifecycle_tick_seconds, on_leader=False)
    async def alert_deadlines():
        """Pending alerts fire, overdue ones are urged (督促) and escalated, resolved ones close."""
        now = lifecycle_now()
        if not now:
            return
        actives = frozenset(app.assignor.assigned_actives())
        if actives != owned_then[0]:  # a start or a rebalance: states came from the changelog
            owned_then[0] = actives
            await _crash_only("alert_deadlines", _find_alert_keys, actives)
        async with state_lock:
            await _crash_only("alert_deadlines", _deadlines, now)

    async def _find_alert_keys(actives: frozenset) -> None:
        """Which owned entities have alerts, a chunk at a time (unpickling a state costs ~0.1 ms:
        all 100k at once held the event loop for ~10 s). Between chunks the entity agent may change
        states; it keeps ``alert_keys`` up to date for the entities it processes."""
        keys = list(entities.keys())
        for i in range(0, len(keys), SCAN_CHUNK):
            alert_keys.update(k for k in keys[i:i + SCAN_CHUNK]
                              if owned(k, actives) and entities.get(k) is not None and load(k).alerts)
            await asyncio.sleep(0)

    async def _deadlines(now: float) -> None:
            sends: list[tuple] = []
            rows: dict[str, list] = {}
            changed: dict[bytes, EntityState] = {}
            processor.silences = silences.active()
            owned_now = frozenset(app.assignor.assigned_actives())
            for key in list(alert_keys):
                if not owned(key, owned_now):
                    alert_keys.discard(key)
                    continue
                st = load(key)
                out = processor.tick(key.decode(), st, now)
                if out.alerts or out.transitions:
                    alert_sends(out, key, sends)
                    plan_sends(out, key, sends, rows)
                    changed[key] = st
                if not st.alerts:
                    alert_keys.discard(key)
            # outputs first, state last (as in a batch): a crash in between repeats the notices
            # with the same revisions, which consumers drop, rather than losing them
            watchdog.stage("alert_deadlines", f"send {len(sends)} outputs")
            await bulk.send(_records(sends))
            commit.add(rows, {key: (_partition_for_key(key), st) for key, st in changed.items()}, [], None)
            watchdog.done("alert_deadlines")

    @app.timer(interval=settings.eviction_interval_seconds, on_leader=False)
    async def evict_silent_entities():
        """Tombstone entities silent for ``entity_ttl_days``, a chunk of keys per hold of the state
        lock (checking all 100k at once held the event loop for ~10 s)."""
        ttl = settings.entity_ttl_days * 86400
        now = clock()
        keys = list(entities.keys())
        n = 0
        for i in range(0, len(keys), SCAN_CHUNK):
            async with state_lock:
                actives = frozenset(app.assignor.assigned_actives())
                gone = {key: (_partition_for_key(key), None) for key in keys[i:i + SCAN_CHUNK]
                        if owned(key, actives) and not commit.live(key)[0] and entities.get(key) is not None
                        and now - cache.load(key).last_seen > ttl}
                if gone:
                    commit.add({}, gone, [], None)
                    alert_keys.difference_update(gone)
            n += len(gone)
            await asyncio.sleep(0)
        EVICTED.inc(n)
        if n:
            log.info("evicted %d entities silent for more than %.0f days", n, settings.entity_ttl_days)

    @app.page("/query")
    class QueryView(faust.web.View):
        """Read-only SQL for analysts: GET ?sql=... or POST the statement as the body."""

        async def _run(self, sql: str):
            try:
                cols, rows = await writer.aquery(sql)
            except QueryRefused as e:
                return self.json({"error": f"refused: {e}"}, status=403)
            except Exception as e:  # noqa: BLE001 — report the engine's message to the analyst
                return self.json({"error": f"{type(e).__name__}: {e}"}, status=400)
            return self.bytes(orjson.dumps({"columns": cols, "rows": rows}, default=str),
                              content_type="application/json")

        async def get(self, request):
            return await self._run(request.query.get("sql", ""))

        async def post(self, request):
            return await self._run((await request.read()).decode("utf-8", "replace"))

    @app.page("/metrics")
    async def metrics_view(web, request):
        return web.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    app.riskwatch = {"catalog": catalog, "writer": writer, "entities": entities}  # for tests / CLI
    return app


class StateCache:
    """Live :class:`EntityState` objects in front of the changelog-backed table of their bytes.

    Unpickling an entity's state for every event costs more than processing it, so the worker
    keeps the objects it last stored. A cached object is used only while the table still holds
    the very bytes object it was stored as: after a rebalance or a changelog recovery the table
    holds other bytes and the state is reloaded from them, so the table stays the truth.
    """

    def __init__(self, table, max_entries: int):
        self.table = table
        self.max_entries = max_entries
        self._objs: dict[bytes, tuple[EntityState, bytes]] = {}

    def load(self, key: bytes) -> EntityState:
        raw = self.table.get(key)
        hit = self._objs.get(key)
        if hit is not None and raw is not None and hit[1] is raw:
            return hit[0]
        return EntityState.loads(raw)

    def store(self, key: bytes, st: EntityState) -> bytes:
        raw = st.dumps()
        if len(self._objs) >= self.max_entries and key not in self._objs:
            self._objs.pop(next(iter(self._objs)))  # oldest first: dicts keep insertion order
        self._objs[key] = (st, raw)
        return raw


async def _crash_only(agent: str, fn, batch) -> None:
    """Run one batch; on an unexpected error exit the process at once.

    Faust acknowledges a ``take_events`` batch even when its body raises, and restarts the agent:
    the batch would be lost. Exiting before the next offset commit keeps at-least-once: the
    supervisor (compose ``restart: unless-stopped``) restarts the worker and the batch is
    redelivered; per-entity state and idempotent sinks make the replay harmless."""
    try:
        await fn(batch)
    except asyncio.CancelledError:
        raise
    except BaseException:  # noqa: BLE001
        log.critical("agent %s failed on a batch of %d events; exiting so that it is redelivered:\n%s",
                     agent, len(batch) if isinstance(batch, list) else 1, traceback.format_exc())
        logging.shutdown()
        os._exit(70)


def _peer_signal(ev, st: EntityState) -> tuple[str, float, float, int] | None:
    """What the group agent needs of an event: complaints and video detections counted per
    township, registrations/closures changing the group's size → (group, time, n, entities)."""
    if isinstance(ev, (Complaint, VideoDetection)) and st.township:
        n, entities = 1.0, 0
    elif isinstance(ev, EntityEvent) and ev.action != "updated":
        n, entities = 0.0, (1 if ev.action == "registered" else -1)
    else:
        return None
    return f"town:{st.township or getattr(ev, 'township', '')}", ev.occurred_at.timestamp(), n, entities


class PeerCounts:
    """Peer signals summed per (group, hour of event time) until the next commit sends them.

    The group agent keeps day-scale decayed rates, so one signal per group and hour carries the
    same information as one per event; sent by the commit (before the events' offsets are
    released), they are as durable as one per event, at a fraction of the messages (a registry
    import registers thousands of entities a second, each once a signal through a repartition).

    >>> pc = PeerCounts("peer.signals")
    >>> pc.add("town:城关镇", 7200.0, 0.0, 1); pc.add("town:城关镇", 7300.0, 1.0, 0); pc.add("town:城关镇", 10900.0, 1.0, 0)
    >>> [(t, k, orjson.loads(v)) for t, _, k, v in pc.drain()]  # doctest: +NORMALIZE_WHITESPACE
    [('peer.signals', b'town:\xe5\x9f\x8e\xe5\x85\xb3\xe9\x95\x87', {'group': 'town:城关镇', 't': 7300.0, 'n': 1.0, 'entities': 1}),
     ('peer.signals', b'town:\xe5\x9f\x8e\xe5\x85\xb3\xe9\x95\x87', {'group': 'town:城关镇', 't': 10900.0, 'n': 1.0, 'entities': 0})]
    >>> pc.drain()
    []
    """

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self._acc: dict[tuple[str, int], list] = {}

    def add(self, group: str, t: float, n: float, entities: int) -> None:
        acc = self._acc.get((group, int(t // 3600)))
        if acc is None:
            self._acc[(group, int(t // 3600))] = [n, entities, t]
        else:
            acc[0] += n
            acc[1] += entities
            if t > acc[2]:
                acc[2] = t

    def drain(self) -> list[tuple]:
        out = [(self.topic, None, g.encode(), orjson.dumps({"group": g, "t": t, "n": n, "entities": e}))
               for (g, _), (n, e, t) in sorted(self._acc.items(), key=lambda kv: kv[1][2])]
        self._acc = {}
        return out


def _records(sends: list[tuple]) -> list[tuple]:
    """(Faust topic, key, value) → bulk records, partitioned by key as ``topic.send`` would."""
    return [(t.get_topic_name(), None, k, v) for t, k, v in sends]


def _dl_bytes(dl: DeadLetter) -> bytes:
    return dl.model_dump_json().encode()


GC_THRESHOLDS = (50_000, 50, 1_000)


def _time_gc() -> None:
    """Tune the cyclic garbage collector for a long-lived state, and export its pauses as
    ``riskwatch_gc_pause_seconds`` (idempotent).

    With CPython's defaults (700, 10, 10) the worker ran a full collection every ~2 s under load,
    225 ms each on 10k entities: ~12 % of the time, and the alert latency's tail. Entity states are
    long-lived and are freed by reference counting when replaced (they hold no cycles), so
    collections are made rarer: a full one after 50 × 1,000 younger ones (and CPython's own rule
    that long-lived objects grew by 25 %)."""
    import gc

    gc.set_threshold(*GC_THRESHOLDS)
    if any(getattr(cb, "_riskwatch", False) for cb in gc.callbacks):
        return
    started = [0.0]

    def cb(phase, info):
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            GC_PAUSE.labels(str(info["generation"])).observe(time.perf_counter() - started[0])

    cb._riskwatch = True
    gc.callbacks.append(cb)


def run_worker(settings: Settings, loglevel: str = "warning") -> None:
    """Create topics, then run the worker until interrupted (SIGINT/SIGTERM)."""
    catalog = load_catalog(settings.catalog_path)
    created = T.ensure_topics(settings, catalog)
    if created:
        print(f"created {len(created)} topics with {settings.partitions} partitions")
    writer = ClickHouseWriter(settings)
    writer.open()  # connect + idempotent migrations before consuming anything
    app = create_app(settings, writer=writer)
    _time_gc()
    faust_fastpath.quiet_worker(app, loglevel=loglevel).execute_from_commandline()


def dump_tasks(file=None) -> None:
    """Log where every asyncio task is suspended, following awaits into coroutines and async
    generators (which mode's SIGUSR1 dump truncates). Installed on SIGUSR2 in the worker."""
    import sys

    out = []
    for task in asyncio.all_tasks():
        out.append(f"TASK {task.get_name()}")
        obj, depth = task.get_coro(), 0
        while obj is not None and depth < 60:
            frame = getattr(obj, "cr_frame", None) or getattr(obj, "ag_frame", None) or getattr(obj, "gi_frame", None)
            if frame is not None:
                out.append(f"  {frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}")
            nxt = getattr(obj, "cr_await", None) or getattr(obj, "ag_await", None) or getattr(obj, "gi_yieldfrom", None)
            if nxt is None and type(obj).__name__ in ("async_generator_asend", "async_generator_athrow", "coroutine_wrapper"):
                import gc

                nxt = next((r for r in gc.get_referents(obj) if hasattr(r, "ag_frame") or hasattr(r, "cr_frame")), None)
            if nxt is None and hasattr(obj, "_coro"):  # a Task or Future wrapper
                nxt = obj._coro
            if nxt is None and frame is None:
                out.append(f"  awaiting {obj!r}"[:300])
            obj, depth = nxt, depth + 1
    print("\n".join(out), file=file or sys.stderr, flush=True)
