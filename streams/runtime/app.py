"""The application object: one Faust app per worker, its agents, timers and pages.

Offsets are acknowledged only after a batch's outputs are sent, its rows are in ClickHouse and
its states in the changelog — at-least-once, made idempotent downstream by event ids and alert
revisions. Read the parts in this order:

* ``streams/runtime/worker.py`` — what they share: topics, the entity table, processor, commit pipeline;
* ``streams/runtime/entity_agent.py`` — input events → processor → alerts, rows, state;
* ``streams/runtime/sink_agent.py`` — ``alerts.all``, ``alerts.events``, ``deadletter`` → ClickHouse;
* ``streams/runtime/peer_agent.py`` — township rates through a ``group_by`` repartition;
* ``streams/runtime/timers.py`` — alert deadlines (urging, escalation, closing) and eviction;
* ``streams/runtime/anchors.py`` — audit anchors: Merkle roots over the alert chains' heads per partition;
* ``streams/runtime/health.py`` — crash-only batches, stall watchdog, loop lag, GC, task dump;
* ``streams/runtime/pages.py`` — ``/query`` (read-only SQL) and ``/metrics`` on ``settings.web_port``.
"""

from __future__ import annotations

import asyncio
import logging
import time

import faust

from riskwatch.domain.county import County, county_from_settings
from riskwatch.settings import Settings
from sinks.writer import ClickHouseWriter
from streams.runtime import (
    anchors,
    entity_agent,
    faust_fastpath,
    health,
    notice_agent,
    pages,
    peer_agent,
    sink_agent,
    timers,
)
from streams.runtime import topics as T
from streams.runtime.silences import follow as follow_silences
from streams.runtime.worker import Worker

log = logging.getLogger("riskwatch.worker")


def create_app(
    settings: Settings, writer: ClickHouseWriter | None = None, clock=time.time, county: County | None = None
) -> faust.App:
    if settings.faust_fastpath:
        faust_fastpath.install()
    county = county or county_from_settings(settings)
    w = Worker.build(settings, county, writer or ClickHouseWriter(settings), clock=clock)
    for part in (entity_agent, sink_agent, peer_agent, timers, anchors, health, pages, notice_agent):
        part.register(w)

    @w.app.task
    async def committer():
        await health.crash_only("commit", lambda _: w.commit.run(), None)

    @w.app.task
    async def silence_reader():
        """Every worker follows all of control.silences (maintenance windows apply to any entity)."""
        topic = settings.topic(T.SILENCES)
        while True:
            try:
                await follow_silences(settings, topic, w.silences)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - keep following; the broker may be restarting
                log.warning("silences: reading %s failed (%s); retrying in 5 s", topic, e)
                await asyncio.sleep(5)

    return w.app


def run_worker(settings: Settings, loglevel: str = "warning") -> None:
    """Create topics, then run the worker until interrupted (SIGINT/SIGTERM)."""
    county = county_from_settings(settings)
    created = T.ensure_topics(settings, county.catalog)
    if created:
        print(f"created {len(created)} topics with {settings.partitions} partitions")
    writer = ClickHouseWriter(settings)
    writer.open()  # connect + idempotent migrations before consuming anything
    app = create_app(settings, writer=writer, county=county)
    health.time_gc()
    faust_fastpath.quiet_worker(app, loglevel=loglevel).execute_from_commandline()
