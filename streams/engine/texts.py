"""The Chinese texts the engine writes itself (notification texts come from the lifecycle,
``riskwatch/domain/lifecycle.py``; rule titles from ``riskwatch/data/rules.yaml``).

>>> dual_notification("食品生产企业", "鑫源食品", "舞泉镇", "食品生产")
'双告知:新登记食品生产企业「鑫源食品」(舞泉镇),纳入食品生产,请落实监管责任。'
>>> alert_message("橙色", "firing", "鑫源食品", "舞泉镇", "冷链温度超过8℃上限", "市场监管局")
'【橙色预警·待签收】舞泉镇鑫源食品:冷链温度超过8℃上限。牵头单位:市场监管局。'
>>> risk_title(79.6)
'综合风险评分80分'
"""

from __future__ import annotations

from schemas.vocabulary import AlertStatus, zh

SENSOR_MODEL_TITLE = "传感器读数异常(模型预警)"
INSPECTION_CRIME_TITLE = "检查发现涉嫌犯罪线索"
UNASSIGNED_ITEM = "待专班研判"  # an alert without a supervision item (not yet in the registry)


def dual_notification(kind_zh: str, name: str, township: str, items: str) -> str:
    """双告知: a newly registered entity of a supervised kind, to the lead departments of its items."""
    return f"双告知:新登记{kind_zh}「{name}」({township}),纳入{items},请落实监管责任。"


def unassigned(name: str, kind_zh: str) -> str:
    """A newly registered entity of a kind no item covers: the task-force office decides."""
    return f"待研判:新登记主体「{name}」类型为{kind_zh},尚无对应监管事项和行业主管部门,请专班办公室研判定性。"


def alert_message(level_zh: str, status: str, name: str, township: str, title: str, lead_name: str | None) -> str:
    """An alert revision's message when no notification speaks for it (a state update)."""
    return (
        f"【{level_zh}预警·{zh(AlertStatus, status)}】{'' if name.startswith(township) else township}{name}:{title}。"
        + (f"牵头单位:{lead_name}。" if lead_name is not None else "")
    )


def evidence_sealed(version: int, bundle_hash: str, n_items: int, first_hash: str) -> str:
    """The audit record of a bundle sealed again with the readings after the trigger."""
    return f"证据包 v{version} sha256:{bundle_hash}(含触发后读数 {n_items} 项,取代 v1 {first_hash[:16]}…)"


def risk_title(score: float) -> str:
    return f"综合风险评分{score:.0f}分"


def unknown_alert(alert_id: str, entity_id: str) -> str:
    """Why feedback for an alert the entity does not have is refused (a dead letter)."""
    return (
        f"feedback for unknown or already closed alert {alert_id!r} of entity "
        f"{entity_id!r}; check the alert_id (alerts FINAL in ClickHouse)"
    )
