"""What processing one event (or a tick of the clock) produces: :class:`Outcome`.

The runtime turns an outcome into Kafka records and ClickHouse rows (``streams/engine/batch.py``);
nothing here knows where they go.

>>> from datetime import datetime, timezone
>>> out = Outcome()
>>> out.alerts, out.rejected, out.redelivered
([], None, False)
>>> Notice("unassigned", "E1", ["taskforce"], "待研判", datetime(2026, 1, 1, tzinfo=timezone.utc)).as_dict()["at"]
'2026-01-01T00:00:00+00:00'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from schemas.events import Alert, Contribution, InspectionPlan, InspectionTask
from streams.engine.state import Where

# a row of alerts.events / alert_history (an AlertTransition as a dict, with the audit chain's hashes)
TransitionRow = dict[str, Any]
# a rectification order's row (streams/engine/orders.py order_row)
OrderRow = dict[str, Any]
# a sealed evidence bundle's row (streams/engine/evidence.py Draft._row)
EvidenceRow = dict[str, Any]


@dataclass(slots=True)
class Notice:
    """A message to departments that is not an alert: 双告知, unassigned kind, urging, escalation."""

    kind: str
    entity_id: str
    departments: list[str]
    text: str
    at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "entity_id": self.entity_id,
            "departments": self.departments,
            "text": self.text,
            "at": self.at.isoformat(),
        }


@dataclass(slots=True)
class RiskRecord:
    """A fused risk score for ClickHouse ``risk_scores`` (``sinks.rows.risk_score_row``)."""

    entity_id: str
    at: datetime
    score: float
    level: str  # "" below blue
    item_id: int | None
    top: list[Contribution]  # the strongest signals, strongest first
    tier: str  # credit tier A–D


@dataclass(slots=True)
class Outcome:
    alerts: list[Alert] = field(default_factory=list)
    notices: list[Notice] = field(default_factory=list)
    rejected: str | None = None  # reason, when the event is valid JSON but not acceptable (→ dead letter)
    duplicate_of: Where | None = None  # where the same event_id was first seen
    redelivered: bool = False  # same message again (after a restart): already processed, skipped
    risk: list[RiskRecord] = field(default_factory=list)  # when the score moved or the level changed
    inspection_p: float | None = None  # inspection-outcome model's score before it learnt this result
    transitions: list[TransitionRow] = field(default_factory=list)  # alerts.events, alert_history
    plans: list[InspectionPlan] = field(default_factory=list)  # inspection.plans, inspection_plans
    tasks: list[InspectionTask] = field(default_factory=list)  # alert on-site checks (→ events_task rows)
    evidence: list[EvidenceRow] = field(default_factory=list)  # sealed evidence bundles
    orders: list[OrderRow] = field(default_factory=list)  # rectification_orders rows (a version per step)
    at: float = 0.0  # the event's time (unix seconds), computed once per event
