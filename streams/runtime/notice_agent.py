"""The ``notice_desk`` agent and the ``notice_deadlines`` timer: notices reach a person.

Reads the ``notices`` topic (双告知, 待研判, township surges: ``streams.engine.outcome.Notice``) and
every department's ``events.notice.<dept>`` (its 认领 / 有异议 / 督导单 answers; the office's 督导单),
keeps each notice's life cycle per recipient in ClickHouse (``notices``, read with FINAL, and the
hash-chained ``notice_history``), and publishes each notification (delivery, 督促, escalation) to
``notices.delivery``, which ``riskwatch notify`` posts to Alertmanager. The rules are the engine's
(``streams/engine/notices.py``); this module only moves records.

ClickHouse is the ledger: rows are written (awaited) before the batch's offsets are committed, so a
restart re-reads the state it needs; a redelivered notice or answer makes the same rows again
(ReplacingMergeTree keeps one). The deadline timer runs on the leader only (one urging per notice).
An answer that may not be accepted (another department's notice, an action the notice does not take,
a 督导单 not from the office) is a dead letter naming why.
"""

from __future__ import annotations

import base64
import logging
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import ValidationError

from schemas.events import LOCAL_TZ, DeadLetter
from sinks import rows as sink_rows
from streams.engine import notices as N
from streams.runtime import topics as T
from streams.runtime.health import crash_only
from streams.runtime.worker import BATCH_MAX, Worker, raw_topic

log = logging.getLogger("riskwatch.worker")

WITHIN = 0.5
URGE_TICK_SECONDS = 60.0
URGE_MAX = 500  # notices urged per tick


# open notices whose deadline (or next urging) has passed; ``now`` is local time (the columns' zone)
DUE_SQL = (
    "SELECT * FROM {db}.notices FINAL WHERE status IN ('delivered', 'urged', 'escalated') "
    "AND next_urge_at IS NOT NULL AND next_urge_at <= %(now)s ORDER BY next_urge_at LIMIT %(n)s"
)


def due_params(now: datetime) -> dict[str, Any]:
    return {"now": now.astimezone(LOCAL_TZ).replace(tzinfo=None), "n": URGE_MAX}


def answer_topics(w: Worker) -> dict[str, str]:
    """Topic (prefixed) → the department it belongs to."""
    return {w.settings.topic(T.notice_topic(d)): d for d in w.county.catalog.departments}


def register(w: Worker) -> None:
    tp = w.settings.topic
    rules = N.NoticeRules.load()
    senders = answer_topics(w)
    office = w.county.catalog.taskforce_office
    db = w.writer.database
    delivery_topic = raw_topic(w.app, tp(T.NOTICE_DELIVERY))

    async def current(notice_id: str, dept: str) -> N.NoticeRow | None:
        cols, rows = await w.writer.aquery(
            f"SELECT * FROM {db}.notices FINAL WHERE notice_id = %(n)s AND department = %(d)s",
            {"n": notice_id, "d": dept},
        )
        return N.row_of(dict(zip(cols, rows[0], strict=True))) if rows else None

    @w.app.agent(raw_topic(w.app, tp(T.NOTICES), *senders), name="notice_desk")
    async def notice_desk(stream):
        async for batch in stream.take_events(BATCH_MAX, within=WITHIN):
            await crash_only("notice_desk", desk_batch, batch)

    async def desk_batch(batch) -> None:
        w.watchdog.stage("notice_desk", "process")
        out = Out()
        seen: dict[tuple[str, str], N.NoticeRow] = {}  # this batch's changes (a notice and its answer together)
        for event in batch:
            msg = event.message
            try:
                if msg.topic == tp(T.NOTICES):
                    for row, h in N.deliver(orjson.loads(event.value), rules):
                        seen[(row.notice_id, row.department)] = row
                        out.add(row, h, notify=True)
                    continue
                sender = senders[msg.topic]
                try:
                    ev = N.NoticeAnswer.model_validate_json(event.value)
                except ValidationError as e:
                    out.dead(msg, event.value, f"not a notice answer: {e}".splitlines()[0][:500])
                    continue
                if ev.action == N.NoticeAction.send:
                    why = N.refuse(None, sender, ev, office)
                    if why:
                        out.dead(msg, event.value, why)
                        continue
                    for row, h in N.deliver(N.supervision_notice(ev, sender, rules), rules):
                        seen[(row.notice_id, row.department)] = row
                        out.add(row, h, notify=True)
                    continue
                key = (ev.notice_id, sender)
                cur = seen.get(key) or await current(*key)
                why = N.refuse(cur, sender, ev, office)
                if why or cur is None:
                    out.dead(msg, event.value, why or "unknown notice")
                    continue
                if not cur.open:  # the same answer again (a redelivery): already recorded
                    continue
                row, h = N.apply(cur, sender, ev)
                seen[key] = row
                out.add(row, h, notify=False)
            except Exception as e:  # noqa: BLE001 — never crash the worker on one record
                log.error("notice_desk: %s[%s]@%s not processed: %s", msg.topic, msg.partition, msg.offset, e)
        await out.flush(w, delivery_topic)
        w.watchdog.done("notice_desk")

    @w.app.timer(interval=URGE_TICK_SECONDS, on_leader=True)
    async def notice_deadlines():
        await crash_only("notice_deadlines", urge_due, None)

    async def urge_due(_: Any) -> None:
        now = datetime.fromtimestamp(w.clock(), tz=UTC).astimezone(LOCAL_TZ)
        cols, rows = await w.writer.aquery(DUE_SQL.format(db=db), due_params(now))
        out = Out()
        for r in rows:
            urged = N.urge(N.row_of(dict(zip(cols, r, strict=True))), now, rules)
            if urged is not None:
                out.add(*urged, notify=True)
                if urged[1].kind == "escalated" and urged[0].department != office:
                    esc = N.delivery(*urged)
                    out.sends.append((office, N.Delivery(**{**_fields(esc), "department": office}).dumps()))
        await out.flush(w, delivery_topic)


def _fields(d: N.Delivery) -> dict[str, Any]:
    return {k: getattr(d, k) for k in N.Delivery.__slots__}


class Out:
    """A batch's rows, notifications and dead letters."""

    __slots__ = ("rows", "sends", "dead_letters")

    def __init__(self) -> None:
        self.rows: dict[str, list[tuple]] = {"notices": [], "notice_history": []}
        self.sends: list[tuple[str, bytes]] = []
        self.dead_letters: list[tuple[bytes | None, bytes]] = []

    def add(self, row: N.NoticeRow, h: N.HistoryRow, notify: bool) -> None:
        self.rows["notices"].append(sink_rows.notice_row(row))
        self.rows["notice_history"].append(sink_rows.notice_history_row(h))
        if notify:
            self.sends.append((row.department, N.delivery(row, h).dumps()))

    def dead(self, msg: Any, value: bytes, why: str) -> None:
        log.warning("notice answer refused: %s[%s]@%s: %s", msg.topic, msg.partition, msg.offset, why)
        key = msg.key.decode("utf-8", "replace") if msg.key else None
        d = DeadLetter(
            topic=msg.topic,
            partition=msg.partition,
            offset=msg.offset,
            key=key,
            payload_b64=base64.b64encode(value).decode(),
            error=why,
            received_at=datetime.now(UTC),
        )
        self.dead_letters.append((msg.key, d.model_dump_json().encode()))

    async def flush(self, w: Worker, delivery_topic: Any) -> None:
        if any(self.rows.values()):
            await w.writer.write_now({t: r for t, r in self.rows.items() if r})
        for dept, value in self.sends:  # after the rows: a notification links to a stored notice
            await delivery_topic.send(key=dept.encode(), value=value)
        for key, value in self.dead_letters:
            await w.topics.deadletter.send(key=key, value=value)
