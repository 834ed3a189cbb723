"""Valid input events as dicts (JSON-ready), and stored alerts as models, for tests."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

_ids = itertools.count()
BASE = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)


def _base(entity_id: str, at: datetime | None = None, **kw) -> dict:
    return {
        "event_id": f"ev-{next(_ids)}-{entity_id}",
        "entity_id": entity_id,
        "occurred_at": (at or BASE).isoformat(),
        "source": "test",
        **kw,
    }


def registered(
    entity_id: str, kind: str = "food_producer", name: str = "舞泉镇鑫源食品有限公司", township: str = "舞泉镇", **kw
) -> dict:
    return _base(
        entity_id,
        action="registered",
        name=name,
        kind=kind,
        township=township,
        address="舞泉镇人民路1号",
        licence="SC10441102100123",
        lat=33.44,
        lon=113.61,
        **kw,
    )


def sensor(
    entity_id: str, value: float, channel: str = "cold_chain_temp", at: datetime | None = None, device: str = "d1"
) -> dict:
    from riskwatch.domain.units import display

    return _base(entity_id, at, device_id=device, channel=channel, value=value, unit=display(channel))


def device(
    entity_id: str, device: str = "d1", channel: str = "boiler_pressure", at: datetime | None = None, **kw
) -> dict:
    """A device registration (events.device); ``kw``: its unit, ratings ... (DeviceEvent fields)."""
    return _base(entity_id, at, action="registered", device_id=device, channels=[channel], **kw)


def video(entity_id: str, cls: str = "rodent", confidence: float = 0.93, at: datetime | None = None) -> dict:
    return _base(entity_id, at, camera_id="cam1", cls=cls, confidence=confidence, evidence_ref="oss://clips/1.mp4")


def complaint(entity_id: str, category: str = "food_poisoning", at: datetime | None = None) -> dict:
    return _base(
        entity_id,
        at,
        channel="12315",
        category=category,
        text="吃了以后腹泻,电话13812345678",
        township="舞泉镇",
        location="人民路",
    )


def inspection(entity_id: str, item_id: int = 1, outcome: str = "fail", severity: str = "critical", at=None) -> dict:
    return _base(
        entity_id,
        at,
        inspection_id=f"insp-{next(_ids)}",
        item_id=item_id,
        departments=["amr"],
        inspectors=["amr-01", "emergency-02"],
        checklist={"证照公示": True, "原料台账": False},
        violations=[{"code": "V12", "severity": severity, "description": "原料台账缺失"}],
        outcome=outcome,
    )


def feedback(entity_id: str, alert_id: str, department: str, status: str = "acknowledged") -> dict:
    return _base(entity_id, alert_id=alert_id, department=department, status=status, comment="已安排人员核查")


def task(
    entity_id: str,
    department: str = "amr",
    item_id: int | None = 1,
    kind: str = "plan",
    due: datetime | None = None,
    task_id: str | None = None,
    at: datetime | None = None,
) -> dict:
    return _base(
        entity_id,
        at,
        task_id=task_id or f"task-{next(_ids)}",
        department=department,
        due=(due or BASE + timedelta(days=10)).isoformat(),
        item_id=item_id,
        kind=kind,
        ref="",
        note="",
    )


def alert(aid: str, now: datetime, **fields):
    """A firing yellow cold-chain alert of entity ``E-<aid>`` as the worker publishes it; ``fields``
    override any of the contract's fields."""
    from schemas.events import Alert, Contribution
    from schemas.vocabulary import Level

    base = dict(
        alert_id=aid,
        revision=1,
        fingerprint=f"E-{aid}|1|rule.sensor",
        entity_id=f"E-{aid}",
        entity_name="舞泉镇测试企业",
        entity_kind="food_producer",
        township="舞泉镇",
        item_id=1,
        item_name="食品生产",
        rule="rule.sensor.cold_chain_temp",
        level=Level.yellow,
        level_zh="黄色",
        status="firing",
        score=60.0,
        title="冷链温度超过8℃上限",
        message="【预警】",
        explanation=[Contribution(signal="rule.sensor", value=1.0, detail="超限")],
        lead_department="amr",
        departments=["amr"],
        first_seen=now - timedelta(hours=1),
        last_seen=now,
        updated_at=now,
        source_event_id="ev-1",
    )
    return Alert(**{**base, **fields})
