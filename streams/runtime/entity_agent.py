"""The ``entities`` agent: every input topic (co-partitioned by ``entity_id``), a batch at a time.

Per event: decode at the edge (``streams/engine/ingest.py``; bad input → ``deadletter``), load the
entity's state, run :class:`streams.engine.dispatch.Processor`. Per batch: send the alert revisions,
transitions, plans, notices and dead letters at once (``streams/runtime/bulk.py``), then hand the rows,
the changed states and the events to the commit pipeline (``streams/runtime/commit.py``), which stores
them and acknowledges the offsets in the background while the next batches are processed.
"""

from __future__ import annotations

import time
from collections import Counter

import orjson

from schemas.events import Complaint, DeadLetter, EntityEvent, VideoDetection
from sinks import rows as sink_rows
from streams.runtime.health import crash_only
from streams.engine.ingest import Batch, Decoder
from streams.runtime.metrics import BATCH_SECONDS, EVENTS_IN
from streams.engine.state import RECENT_IDS, EntityState
from streams.runtime.worker import BATCH_MAX, Worker, records

BATCH_WITHIN = 0.05  # a batch waits at most this long to fill (alert latency)


def register(w: Worker) -> None:
    settings, topics = w.settings, w.topics

    @w.app.agent(topics.inputs, name="entities")
    async def entity_agent(stream):
        async for batch in stream.take_events(BATCH_MAX, within=BATCH_WITHIN):
            async with w.state_lock:
                await crash_only("entities", process_batch, (batch, stream))
            await w.commit.wait_room()

    async def process_batch(batch_stream) -> None:
        batch, stream = batch_stream
        t0 = time.perf_counter()
        w.watchdog.stage("entities", "process")
        w.processor.silences = w.silences.active()
        states: dict[bytes, EntityState] = {}
        batch_time: dict[int, float] = {}  # input partition -> latest event time in this batch
        event_rows: dict[str, list] = {}
        sends: list[tuple] = []
        counts: Counter = Counter()

        def handle(ev, msg, value, keep: int, index: int | None = None) -> None:
            key = ev.entity_id.encode()
            st = states.get(key)
            if st is None:
                w.partition_of[key] = msg.partition  # before the load: a state store miss reads this partition
                st = states[key] = w.load(key)
            out = w.processor.process(ev, st, (msg.topic, msg.partition, msg.offset), keep)
            if out.redelivered:
                counts[(msg.topic, "redelivered")] += 1
                return
            if out.rejected:
                reason = out.rejected if index is None else f"readings[{index}]: {out.rejected}"
                dl = Decoder.dead(msg.topic, msg.partition, msg.offset, msg.key, value, reason, index=index)
                sends.append((topics.deadletter, msg.key, dl.model_dump_json().encode()))
                counts[(msg.topic, "dead")] += 1
                return
            counts[(msg.topic, "ok")] += 1
            if out.at > batch_time.get(msg.partition, 0.0):
                batch_time[msg.partition] = out.at
            table, row = sink_rows.event_row(ev)
            event_rows.setdefault(table, []).append(row)
            if isinstance(ev, EntityEvent):  # the registry's current state (名录库), one row per entity after FINAL
                event_rows.setdefault("registry", []).append(sink_rows.registry_row(ev))
            w.alert_sends(out, key, sends)
            w.plan_sends(out, key, sends, event_rows)
            for n in out.notices:
                sends.append((topics.notices, key, orjson.dumps(n.as_dict())))
            peer = peer_signal(ev, st) if settings.township_surges else None
            if peer is not None:
                w.peer_counts.add(*peer)
            for r in out.risk:
                event_rows.setdefault("risk_scores", []).append(sink_rows.risk_score_row(
                    r.entity_id, r.at, r.score, r.level, r.item_id, r.top))

        for event in batch:
            msg = event.message
            ev = w.decoder.decode(msg.topic, msg.partition, msg.offset, msg.key, event.value)
            if isinstance(ev, DeadLetter):
                sends.append((topics.deadletter, msg.key, ev.model_dump_json().encode()))
                counts[(msg.topic, "dead")] += 1
            elif isinstance(ev, Batch):  # a gateway's batch: each reading on its own, bad ones to the DLQ
                for dl in ev.dead:
                    sends.append((topics.deadletter, msg.key, dl.model_dump_json().encode()))
                counts[(msg.topic, "dead")] += len(ev.dead)
                keep = RECENT_IDS + len(ev.events)  # the ring keeps this whole batch (replay skips it reading by reading)
                for i, reading in zip(ev.positions, ev.events):
                    handle(reading, msg, event.value, keep, i)
            else:
                handle(ev, msg, event.value, RECENT_IDS)
        wall = time.monotonic()
        for p, t_ev in batch_time.items():
            w.part_time[p] = (max(t_ev, w.part_time.get(p, (0.0, 0.0))[0]), wall)
        # Outputs now (alert latency); rows, state and offsets by the commit pipeline (streams/runtime/commit.py)
        w.watchdog.stage("entities", f"send {len(sends)} outputs")
        await w.bulk.send(records(sends))
        w.commit.add(event_rows, {key: (w.partition_of[key], st) for key, st in states.items()}, batch, stream,
                     count=sum(counts.values()))
        if any(t in w.urgent_topics for t, _ in counts):
            w.commit.soon()  # a person waits for this row in the workbench
        for key, st in states.items():
            w.note_state(key, st)
        w.watchdog.done("entities")
        for (topic, result), n in counts.items():
            EVENTS_IN.labels(topic, result).inc(n)
        BATCH_SECONDS.observe(time.perf_counter() - t0)


def peer_signal(ev, st: EntityState) -> tuple[str, float, float, int] | None:
    """What the group agent needs of an event: complaints and video detections counted per
    township, registrations/closures changing the group's size → (group, time, n, entities)."""
    if isinstance(ev, (Complaint, VideoDetection)) and st.township:
        n, entities = 1.0, 0
    elif isinstance(ev, EntityEvent) and ev.action != "updated":
        n, entities = 0.0, (1 if ev.action == "registered" else -1)
    else:
        return None
    return f"town:{st.township or getattr(ev, 'township', '')}", ev.occurred_at.timestamp(), n, entities
