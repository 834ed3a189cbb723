"""The ``alert_sink`` agent: ``alerts.all``, ``alerts.events``, ``deadletter`` and ``events.unmatched`` → ClickHouse.

Rows for analysts, in larger inserts than the entity agent's (it waits up to ``SINK_WITHIN``).
The topics are the worker's own output, so a row that does not parse is logged loudly and
skipped, never allowed to crash the worker; the writer's inserts are idempotent.
"""

from __future__ import annotations

import logging
import time

from schemas.audit import chain_hash, chain_row
from schemas.events import Alert, AlertTransition, DeadLetter, MatchQueueItem
from sinks import rows as sink_rows
from streams.engine.office import office_row
from streams.runtime import topics as T
from streams.runtime.health import crash_only
from streams.runtime.metrics import SINK_SECONDS
from streams.runtime.worker import BATCH_MAX, Worker, raw_topic

log = logging.getLogger("riskwatch.worker")

SINK_WITHIN = 1.0


def chain_ok(tr: AlertTransition) -> bool:
    """Whether a chained transition's hash is the hash of its content (schemas/audit.py)."""
    at_ms = int(round(tr.at.timestamp() * 1000))
    row = chain_row(
        tr.alert_id, tr.seq, tr.entity_id, at_ms, tr.kind, tr.from_status, tr.to_status, tr.actor, tr.comment
    )
    return chain_hash(tr.prev_hash, row) == tr.hash


def register(w: Worker) -> None:
    tp = w.settings.topic

    @w.app.agent(
        raw_topic(w.app, tp(T.ALERTS_ALL), tp(T.ALERT_EVENTS), tp(T.DEADLETTER), tp(T.UNMATCHED), tp(T.OFFICE)),
        name="alert_sink",
    )
    async def alert_sink(stream):
        async for batch in stream.take_events(BATCH_MAX, within=SINK_WITHIN):
            await crash_only("alert_sink", sink_batch, batch)

    async def sink_batch(batch) -> None:
        w.watchdog.stage("alert_sink", "process")
        by_table: dict[str, list[tuple]] = {}
        for event in batch:
            msg = event.message
            try:
                if msg.topic == tp(T.ALERTS_ALL):
                    a = Alert.model_validate_json(event.value)
                    by_table.setdefault("alerts", []).append(sink_rows.alert_row(a))
                elif msg.topic == tp(T.ALERT_EVENTS):
                    tr = AlertTransition.model_validate_json(event.value)
                    if tr.hash and not chain_ok(tr):  # stored all the same: `riskwatch audit verify` reports it
                        log.error(
                            "alerts.events[%s]@%s: alert %s seq %s does not match its audit-chain hash (forged or "
                            "corrupted); run `riskwatch audit verify`",
                            msg.partition,
                            msg.offset,
                            tr.alert_id,
                            tr.seq,
                        )
                    by_table.setdefault("alert_history", []).append(sink_rows.transition_row(tr))
                elif msg.topic == tp(T.UNMATCHED):  # the matching queue (edge/matching.py) and office choices
                    q = MatchQueueItem.model_validate_json(event.value)
                    by_table.setdefault("match_queue", []).append(sink_rows.match_queue_row(q))
                    if q.status == "resolved" and q.alias_key:
                        by_table.setdefault("match_aliases", []).append(sink_rows.match_alias_row(q))
                elif msg.topic == tp(T.OFFICE):  # the office's 研判 and 会商 records (streams/engine/office.py)
                    table, row = office_row(event.value)
                    by_table.setdefault(table, []).append(row)
                else:
                    by_table.setdefault("dead_letters", []).append(
                        sink_rows.dead_letter_row(DeadLetter.model_validate_json(event.value))
                    )
            except Exception as e:  # noqa: BLE001 — our own output; log loudly, never crash
                log.error("cannot store %s[%s]@%s: %s", msg.topic, msg.partition, msg.offset, e)
                continue
        w.watchdog.stage("alert_sink", "clickhouse", patient=True)
        t1 = time.perf_counter()
        await w.writer.write_now(by_table)
        SINK_SECONDS.observe(time.perf_counter() - t1)
        w.watchdog.done("alert_sink")
