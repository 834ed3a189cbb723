"""Sample data for checking dashboards and analyst queries offline (tests, demos).

``load_sample(url, database)`` migrates a ClickHouse (``chdb://<dir>`` works), creates the
dashboard views, and inserts about one simulated day of county events (riskwatch.tools.simulator)
through ``sinks.rows`` + ``ClickHouseWriter.write_sync``, refused messages as dead letters, plus
synthetic alerts (every level × status, with revisions), alert history, disposal feedback and
rising/falling risk scores over several days. Deterministic for a given ``now``.
"""

from __future__ import annotations

import base64
import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from riskwatch.domain.catalog import load_catalog
from riskwatch.tools.simulator import SimConfig, generate
from schemas.events import (
    EVENT_MODELS,
    Alert,
    Contribution,
    DisposalFeedback,
    EntityEvent,
    InspectionResult,
    Violation,
)
from schemas.vocabulary import AlertStatus, Level
from sinks import migrations, migrations_mv
from sinks.clickhouse import make_client
from sinks.rows import alert_history_row, alert_row, dead_letter_row, event_rows, registry_row, risk_score_row
from sinks.writer import ClickHouseWriter

LOCAL_TZ = ZoneInfo("Asia/Shanghai")
STATUS_PATH = {  # the transitions an alert went through to reach its status
    "pending": ["pending"],
    "firing": ["firing"],
    "acknowledged": ["firing", "acknowledged"],
    "disposing": ["firing", "acknowledged", "disposing"],
    "resolved": ["firing", "acknowledged", "disposing", "resolved"],
    "closed": ["firing", "acknowledged", "resolved", "closed"],
}


def sample_rows(now: datetime, days: float = 1.0, scale: float = 0.1, seed: int = 7) -> dict[str, list[tuple]]:
    """Rows per table: simulated events + dead letters + synthetic alerts, history, feedback, scores."""
    from schemas.events import DeadLetter

    cat = load_catalog()
    cfg = SimConfig(seed=seed, days=days, scale=scale, sample_minutes=15, now=now, start=now - timedelta(days=days))
    events, dead, registry = [], [], {}
    offsets: dict[str, int] = {}
    last_t = cfg.start
    for topic, key, value in generate(cfg):
        off = offsets[topic] = offsets.get(topic, -1) + 1
        try:
            e = EVENT_MODELS[topic].model_validate_json(value, context={"catalog": cat})
        except ValidationError as err:
            dead.append(
                dead_letter_row(
                    DeadLetter(
                        topic=topic,
                        partition=0,
                        offset=off,
                        key=key.decode("utf-8", "replace"),
                        payload_b64=base64.b64encode(value).decode(),
                        error=str(err).splitlines()[0][:300],
                        received_at=last_t,
                    )
                )
            )
            continue
        last_t = e.occurred_at
        events.append(e)
        if isinstance(e, EntityEvent):
            registry[e.entity_id] = e
    rows = event_rows(events)
    rows["registry"] = [registry_row(e) for e in registry.values()]
    rows["dead_letters"] = dead

    rng = random.Random(seed)
    entities = sorted(registry.values(), key=lambda e: e.entity_id)
    alerts, history, feedback, scores = [], [], [], []
    n = 0
    for level in Level:
        for status in AlertStatus:
            for k in range(3):
                ent = entities[(n * 7 + k) % len(entities)]
                n += 1
                items = cat.items_for_kind(ent.kind)
                item = items[0] if items else None
                depts = list(cat.receivers(item.id)) if item else [cat.taskforce_office]
                age_h = rng.choice([2, 12, 30, 80, 200, 400])  # some within, some past the deadline
                first = now - timedelta(hours=age_h)
                path = STATUS_PATH[status.value]
                aid = f"A{n:04d}"
                score = {"blue": 30, "yellow": 55, "orange": 75, "red": 92}[level.value] + rng.uniform(-5, 5)
                prev = None
                for rev, st in enumerate(path, start=1):
                    t = first + (now - first) * (rev - 1) / len(path)
                    a = Alert(
                        alert_id=aid,
                        revision=rev,
                        fingerprint=f"{ent.entity_id}|{item.id if item else ''}|rule{n % 3}",
                        entity_id=ent.entity_id,
                        entity_name=ent.name,
                        entity_kind=ent.kind,
                        township=ent.township,
                        item_id=item.id if item else None,
                        item_name=item.name if item else "",
                        rule=f"rule{n % 3}",
                        level=level,
                        level_zh=level.zh,
                        status=st,
                        score=score,
                        title=f"{ent.name}{level.zh}预警",
                        message="示例预警(测试数据)",
                        explanation=[Contribution(signal="sensor.cold_chain_temp", value=0.6, detail="冷链温度偏高")],
                        lead_department=depts[0],
                        departments=depts,
                        first_seen=first,
                        last_seen=t,
                        updated_at=t,
                        source_event_id=f"ev-{aid}-{rev}",
                    )
                    alerts.append(alert_row(a))
                    history.append(alert_history_row(aid, t, prev, st, depts[0] if rev > 1 else "riskwatch"))
                    if st in ("acknowledged", "disposing", "resolved"):
                        fb = {"acknowledged": "acknowledged", "disposing": "in_progress", "resolved": "disposed"}[st]
                        feedback.append(
                            DisposalFeedback(
                                event_id=f"fb-{aid}-{rev}",
                                entity_id=ent.entity_id,
                                occurred_at=t,
                                source="workbench",
                                alert_id=aid,
                                department=depts[0],
                                status=fb,
                                comment="已安排检查",
                                result="已整改" if fb == "disposed" else "",
                            )
                        )
                    prev = st
    for i, ent in enumerate(entities[:40]):
        trend = 8.0 if i % 3 == 0 else (-5.0 if i % 3 == 1 else 0.0)
        for d in range(5):
            s = max(0.0, min(100.0, 40 + trend * d + rng.uniform(-2, 2)))
            lvl = "red" if s >= 85 else "orange" if s >= 70 else "yellow" if s >= 50 else "blue" if s >= 30 else ""
            items = cat.items_for_kind(ent.kind)
            scores.append(
                risk_score_row(
                    ent.entity_id,
                    now - timedelta(days=4 - d, hours=1),
                    s,
                    lvl,
                    items[0].id if items else None,
                    [Contribution(signal="complaint.rate", value=s / 100)],
                )
            )
    inspections = []  # the simulator's inspections are rare at small scale: a few per item, one failing
    for item in cat.items_list:
        cands = [e for e in entities if e.kind in item.objects] or entities
        for j, outcome in enumerate(("pass", "pass_with_conditions", "fail")):
            ent = cands[j % len(cands)]
            viol = (
                []
                if outcome == "pass"
                else [Violation(code="V01", severity="critical" if outcome == "fail" else "minor", description="示例")]
            )
            inspections.append(
                InspectionResult(
                    event_id=f"insp-{item.id}-{j}",
                    entity_id=ent.entity_id,
                    source="sample",
                    occurred_at=now - timedelta(hours=6 + 20 * j),
                    inspection_id=f"I{item.id}{j}",
                    item_id=item.id,
                    departments=[item.lead],
                    outcome=outcome,
                    violations=viol,
                )
            )
    rows["alerts"] = alerts
    rows["alert_history"] = history
    rows["risk_scores"] = scores
    for table, r in event_rows([*feedback, *inspections]).items():
        rows.setdefault(table, []).extend(r)
    return rows


def load_sample(url: str, database: str = "default", now: datetime | None = None, **kw) -> dict[str, int]:
    """Migrate ``url`` (+ dashboard views) and insert the sample; return rows per table."""
    now = (now or datetime.now(UTC)).astimezone(LOCAL_TZ).replace(microsecond=0)
    client = make_client(url)
    migrations.migrate(client, database)
    migrations_mv.migrate_views(client, database)
    rows = sample_rows(now, **kw)
    counts = {}
    writer = ClickHouseWriter(
        url=url,
        database=database,
        batch_rows=50_000,
        batch_seconds=1.0,
        retry_max_seconds=1.0,
        client_factory=lambda: client,
        migrate=False,
    )
    try:
        for table in ("registry", *sorted(t for t in rows if t != "registry")):  # registry first: views join it
            counts[table] = writer.write_sync(table, rows[table], timeout=120) if rows[table] else 0
    finally:
        writer.close(timeout=30)
    return counts
