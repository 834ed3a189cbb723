"""The ``entities`` agent: every input topic (co-partitioned by ``entity_id``), a batch at a time.

The engine's batch step (:class:`streams.engine.batch.EntityBatch`) decodes, processes and collects
the batch's outputs; this module only wires it to Faust: take a batch, run it under the state lock,
send its alert revisions, transitions, plans, notices and dead letters at once (``streams/runtime/bulk.py``),
then hand the rows, the changed states and the events to the commit pipeline
(``streams/runtime/commit.py``), which stores them and acknowledges the offsets in the background
while the next batches are processed.
"""

from __future__ import annotations

import time
from typing import Any

from streams.engine import office
from streams.engine.batch import BatchOutput
from streams.runtime.health import crash_only
from streams.runtime.metrics import ALERTS_OUT, BATCH_SECONDS, EVENTS_IN, observe_sources
from streams.runtime.worker import BATCH_MAX, Worker, records

BATCH_WITHIN = 0.05  # a batch waits at most this long to fill (alert latency)


def register(w: Worker) -> None:
    @w.app.agent(w.topics.inputs, name="entities")
    async def entity_agent(stream):
        async for batch in stream.take_events(BATCH_MAX, within=BATCH_WITHIN):
            async with w.state_lock:
                await crash_only("entities", process_batch, (w, batch, stream))
            await w.commit.wait_room()


async def process_batch(args: tuple[Worker, list, Any]) -> None:
    w, batch, stream = args
    t0 = time.perf_counter()
    w.watchdog.stage("entities", "process")
    w.processor.silences = w.silences.active()
    office.watch(w.processor, w.batch.decoder, w.county.catalog, w.settings.catalog_path)  # 定性: kinds at once
    out = w.batch.run(batch)
    wall = time.monotonic()
    for p, t_ev in out.batch_time.items():
        w.part_time[p] = (max(t_ev, w.part_time.get(p, (0.0, 0.0))[0]), wall)
    # Outputs now (alert latency); rows, state and offsets by the commit pipeline (streams/runtime/commit.py)
    assert w.outbox is not None
    sends = w.outbox.behind(out.sends, out.states)  # an entity's outputs queue behind its timer's (their order)
    w.watchdog.stage("entities", f"send {len(sends)} outputs")
    await w.bulk.send(records(sends))
    w.commit.add(
        out.rows,
        {key: (w.partition_of[key], st) for key, st in out.states.items()},
        batch,
        stream,
        count=sum(out.counts.values()),
    )
    if any(t in w.urgent_topics for t, _ in out.counts):
        w.commit.soon()  # a person waits for this row in the workbench
    for key, st in out.states.items():
        w.note_state(key, st)
    w.watchdog.done("entities")
    count(out)
    BATCH_SECONDS.observe(time.perf_counter() - t0)


def count(out: BatchOutput) -> None:
    """The batch's counts on /metrics."""
    for (topic, result), n in out.counts.items():
        EVENTS_IN.labels(topic, result).inc(n)
    for (level, kind), n in out.alerts_out.items():
        ALERTS_OUT.labels(level, kind).inc(n)
    observe_sources(out.sources)
