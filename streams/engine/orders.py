"""整改 (rectification) orders and 复查 (re-inspection): an order's record and its life cycle.

An inspection with violations and outcome ``pass_with_conditions`` or ``fail`` (or a disposal outcome
that ordered 责令整改: :func:`open_order`) opens an order for the lead department: the required
actions (one per finding, from ``riskwatch/data/rectification.yaml``), a deadline per finding from its
severity, and the department responsible. Its life cycle::

    issued ──整改完成 (claim, with evidence)──> claimed ──复查 passed──> closed
       │                                          │
       └──deadline: 督促, then the office─────────┴──复查 failed──> reopened (new deadline,
                                                                     escalated to the office,
                                                                     counts against the credit tier)

A 复查 task (``InspectionTask`` kind ``recheck``, ref = the order id) goes to the lead department at
the claim or at the deadline, whichever comes first; it merges into joint inspections like any task.
An inspection with ``order_id`` is that 复查: ``pass`` closes the order, anything else fails it.
Every step is a row of the order's own audit chain (``alert_history``, ``alert_id`` = the order id)
and a new version of its ``rectification_orders`` row.

>>> from riskwatch.domain.county import load_county
>>> from schemas.events import Violation
>>> cx, st, out = Context.of(load_county()), EntityState(name="A"), Outcome()
>>> o = open_order(cx, st, out, entity_id="E1", alert_id="", department="amr", item_id=1, source="I1",
...     items=[Violation(code="cold_chain.temp", severity="serious", description="冷库超温")],
...     reason="检查 I1:限期整改", at=0.0)
>>> o.status, o.deadline / 86400, o.items[0].action[:11]
('issued', 15.0, '冷库超温:整改冷链设施')
>>> claim(cx, st, out, "E1", o.order_id, "amr", "已更换压缩机", "", "u1", 86400.0) is None, o.status
(True, 'claimed')
>>> sorted(t.source for t in st.tasks.values())       # the 复查 task for the lead department
['recheck']
>>> recheck(cx, st, out, "E1", o.order_id, ["amr"], passed=False, inspection_id="I2", at=2 * 86400.0)
>>> o.status, o.failed, [n.kind for n in out.notices]
('reopened', 1, ['escalate'])
>>> recheck(cx, st, out, "E1", o.order_id, ["amr"], passed=True, inspection_id="I3", at=3 * 86400.0)
>>> o.status, holds(st, "")
('closed', False)
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import Any, Protocol

import yaml
from pydantic import BaseModel, ConfigDict, Field

from riskwatch.domain.planning import InspectionTask as Task
from riskwatch.settings import DATA_DIR
from schemas.audit import chain_hash, chain_row
from schemas.events import InspectionTask, TaskSource
from schemas.privacy import mask_pii
from schemas.vocabulary import ORDER_STATUS_ZH, SEVERITY_ZH
from streams.engine import plans
from streams.engine.context import Context
from streams.engine.outcome import Notice, Outcome
from streams.engine.revision import EPOCH, dt
from streams.engine.state import EntityState, Order, OrderItem, OrderStep

__all__ = ["Order", "OrderItem", "OrderStep", "open_order", "claim", "recheck", "tick", "holds", "STATUS_ZH"]

DAY = 86400.0
STATUS_ZH = ORDER_STATUS_ZH  # an order's status, as the workbench shows it
OPEN_STATUSES = frozenset(STATUS_ZH) - {"closed"}
RECHECK_SIGNAL = "rule.rectification.recheck_failed"


class Policy(BaseModel):
    """``riskwatch/data/rectification.yaml``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    deadline_days: dict[str, float]
    reopen_days: float = Field(gt=0)
    recheck_days: float = Field(gt=0)
    recheck_failed_signal: float = Field(ge=0, le=1)
    escalate_after_failures: int = Field(ge=1)
    actions: dict[str, str] = Field(default_factory=dict)
    by_severity: dict[str, str]

    def action(self, code: str, severity: str, description: str) -> str:
        best = max((k for k in self.actions if code == k or code.startswith(k)), key=len, default="")
        what = self.actions[best] if best else self.by_severity.get(severity, self.by_severity["serious"])
        return f"{description}:{what}" if description else what


@cache
def policy(path: Path | None = None) -> Policy:
    """The rectification policy (read once per process)."""
    with open(path or DATA_DIR / "rectification.yaml", encoding="utf-8") as f:
        return Policy.model_validate(yaml.safe_load(f))


class ViolationLike(Protocol):
    """A finding: ``schemas.events.Violation`` (or anything with these attributes)."""

    @property
    def code(self) -> str: ...
    @property
    def severity(self) -> Any: ...  # a Severity or its string
    @property
    def description(self) -> str: ...


def order_id_of(source: str, department: str) -> str:
    """One order per source (an inspection or alert id) and department: redelivery opens no second one."""
    return "RO-" + hashlib.blake2b(f"{source}|{department}".encode(), digest_size=8).hexdigest()


def holds(st: EntityState, alert_id: str) -> bool:
    """True while an open order of ``alert_id`` exists: the alert closes only when its orders close."""
    return any(o.alert_id == alert_id and o.status in OPEN_STATUSES for o in st.orders.values())


# --- the life cycle -------------------------------------------------------------------------------
def open_order(
    cx: Context,
    st: EntityState,
    out: Outcome,
    *,
    entity_id: str,
    alert_id: str,
    department: str,
    items: Sequence[ViolationLike],
    reason: str,
    at: float,
    item_id: int | None = None,
    source: str = "",
) -> Order:
    """Open the rectification order of ``source`` (an inspection id; default the alert id) for
    ``department``; the existing one when it was opened before (a redelivered event)."""
    p = policy()
    oid = order_id_of(source or alert_id, department)
    if oid in st.orders:
        return st.orders[oid]
    its = []
    for v in items:
        sev = getattr(v.severity, "value", v.severity)
        days = p.deadline_days.get(sev, p.deadline_days.get("serious", 15.0))
        its.append(
            OrderItem(
                v.code, sev, mask_pii(v.description), p.action(v.code, sev, mask_pii(v.description)), at + days * DAY
            )
        )
    deadline = max((i.due for i in its), default=at + p.deadline_days.get("serious", 15.0) * DAY)
    o = Order(
        order_id=oid,
        alert_id=alert_id,
        source=source or alert_id,
        department=department,
        item_id=item_id,
        reason=mask_pii(reason),
        items=its,
        status="",  # _step sets it: the first history row goes "" → issued
        issued_at=at,
        deadline=deadline,
        remind_due=deadline,
    )
    st.orders[oid] = o
    names = ";".join(f"{i.code}({SEVERITY_ZH.get(i.severity, i.severity)}) 限{dt(i.due).date()}" for i in its)
    _step(st, out, entity_id, o, at, "issued", "system", f"{o.reason} | {names}")
    return o


def claim(
    cx: Context,
    st: EntityState,
    out: Outcome,
    entity_id: str,
    order_id: str,
    department: str,
    comment: str,
    attachment_sha256: str,
    user: str,
    at: float,
) -> str | None:
    """The department reports the entity's rectification done (整改完成), with evidence: the 复查
    task is due ``recheck_days`` later. A refusal's reason (a dead letter), else None."""
    o = st.orders.get(order_id)
    if o is None or o.status not in OPEN_STATUSES:
        return f"整改完成 for unknown or closed rectification order {order_id!r} of entity {entity_id!r}"
    if department != o.department:
        return f"rectification order {order_id} belongs to {o.department}, not {department}"
    if o.status == "claimed":
        return f"rectification order {order_id} is already claimed; waiting for its 复查"
    attached = f"[附件 sha256:{attachment_sha256}]" if attachment_sha256 else ""
    o.claimed_at, o.evidence = at, attachment_sha256
    _step(
        st,
        out,
        entity_id,
        o,
        at,
        "claimed",
        f"{department}/{user}" if user else department,
        mask_pii(" ".join(x for x in (comment, attached) if x)),
    )
    _recheck_task(cx, st, out, entity_id, o, at)
    return None


def recheck(
    cx: Context,
    st: EntityState,
    out: Outcome,
    entity_id: str,
    order_id: str,
    departments: Sequence[str],
    *,
    passed: bool,
    inspection_id: str,
    at: float,
) -> str | None:
    """A 复查 inspection of the order: ``passed`` closes it; a failure re-opens it with a new
    deadline, escalates it to the office and counts against the entity's credit tier."""
    o = st.orders.get(order_id)
    if o is None or o.status not in OPEN_STATUSES:
        return f"复查 of unknown or closed rectification order {order_id!r} of entity {entity_id!r}"
    if o.department not in departments:
        return f"复查 of order {order_id} must include its department {o.department}"
    st.tasks.pop(o.recheck_task, None)
    o.recheck_task = ""
    if passed:
        _step(st, out, entity_id, o, at, "closed", o.department, f"复查 {inspection_id} 合格,整改销号")
        return None
    p = policy()
    o.failed += 1
    o.deadline = o.remind_due = at + p.reopen_days * DAY
    for i in o.items:  # every finding is due again by the new deadline
        i.due = o.deadline
    o.reminders = 0
    to = "escalated" if o.failed >= p.escalate_after_failures else "reopened"
    _step(
        st,
        out,
        entity_id,
        o,
        at,
        to,
        o.department,
        f"复查 {inspection_id} 不合格(第{o.failed}次),重新限期至{dt(o.deadline).date()}",
    )
    st.risk.learn_one(at, RECHECK_SIGNAL, p.recheck_failed_signal, cx.fusion)
    office = cx.catalog.taskforce_office
    out.notices.append(
        Notice(
            "escalate",
            entity_id,
            [office, o.department],
            f"【整改复查不合格·第{o.failed}次】{st.name or entity_id}:整改令{o.order_id}复查不合格,"
            f"已重新限期至{dt(o.deadline).date()},请专班办公室督办。",
            dt(at),
        )
    )
    return None


def tick(cx: Context, st: EntityState, out: Outcome, entity_id: str, now: float) -> None:
    """Time passes (event or lifecycle time): at an order's deadline its 复查 task is due (unless a
    claim made it already) and the department is urged (督促); no answer by the reminder interval
    (``lifecycle.yaml`` reminders, as alerts) escalates to the office, again and again, backing off."""
    lcy = cx.lifecycle
    for o in list(st.orders.values()):
        if o.status == "closed":
            if now >= o.updated_at + lcy.policy.close_grace_minutes * 60:
                del st.orders[o.order_id]  # its history is in ClickHouse; the state keeps open orders
            continue
        if o.status == "claimed" or now < o.remind_due:
            continue
        if not o.recheck_task:
            _recheck_task(cx, st, out, entity_id, o, o.deadline)
        due = o.remind_due
        level = _level(o)
        if o.reminders == 0:
            kind, to = "urge", [o.department]
            text = f"【督促】{st.name or entity_id}:整改令{o.order_id}已到整改期限,请督促整改并组织复查。"
        else:
            kind, to = "escalate", [cx.catalog.taskforce_office]
            text = (
                f"【升级督办·第{o.reminders}次】{st.name or entity_id}:整改令{o.order_id}"
                f"({o.department})逾期未整改,请专班办公室督办。"
            )
        out.notices.append(Notice(kind, entity_id, to, text, dt(due)))
        o.reminders += 1
        o.remind_due = max(due, now) + lcy.reminder_interval(level, o.reminders)
        _step(
            st, out, entity_id, o, due, "reminder", "system", f"{kind} #{o.reminders}: {','.join(to)}", keep_status=True
        )


# --- helpers ---------------------------------------------------------------------------------------
def _level(o: Order) -> str:
    sev = {i.severity for i in o.items}
    return "red" if "critical" in sev else "orange" if "serious" in sev else "yellow"


def _recheck_task(cx: Context, st: EntityState, out: Outcome, entity_id: str, o: Order, at: float) -> None:
    """The lead department's 复查 visit, merged into joint inspections like any task."""
    if o.recheck_task and o.recheck_task in st.tasks:
        return
    tid = f"RC-{o.order_id}-{o.failed}"
    due = at + policy().recheck_days * DAY
    st.tasks[tid] = t = Task(
        tid, entity_id, o.department, due, o.item_id, "recheck", o.order_id, f"整改复查:{o.reason}"[:200]
    )
    o.recheck_task = tid
    out.tasks.append(
        InspectionTask.model_construct(
            event_id=tid,
            entity_id=entity_id,
            occurred_at=dt(at),
            source="riskwatch",
            schema_version=1,
            task_id=tid,
            department=t.department,
            due=dt(due),
            item_id=t.item_id,
            kind=TaskSource.recheck,
            ref=o.order_id,
            note=t.note,
        )
    )
    plans.plan(cx, entity_id, st, out, tid, at)


def _step(
    st: EntityState,
    out: Outcome,
    entity_id: str,
    o: Order,
    at: float,
    to: str,
    actor: str,
    comment: str,
    keep_status: bool = False,
) -> None:
    """Record a step: the order's history (bounded), its audit chain row (``alert_history``: the order
    id as ``alert_id``), and a new version of its ``rectification_orders`` row."""
    frm = o.status
    if not keep_status:
        o.status = to
    kind = "reminder" if keep_status else "order"
    o.revision += 1
    o.updated_at = max(o.updated_at, at)
    o.history = [*o.history[-(MAX_STEPS - 1) :], OrderStep(at, to, actor, comment)]
    at_ms = int(round(at * 1000))
    row = chain_row(o.order_id, o.revision, entity_id, at_ms, kind, frm, o.status, actor, mask_pii(comment))
    prev = o.chain
    h = chain_hash(prev, row)
    o.chain = h
    st.unanchored[o.order_id] = (o.revision, h)
    out.transitions.append(
        {
            "alert_id": o.order_id,
            "seq": o.revision,
            "entity_id": entity_id,
            "at": EPOCH + timedelta(milliseconds=at_ms),
            "kind": kind,
            "from_status": row["from_status"],
            "to_status": o.status,
            "actor": actor,
            "comment": row["comment"],
            "prev_hash": prev,
            "hash": h,
        }
    )
    out.orders.append(order_row(entity_id, st, o))


MAX_STEPS = 12  # history steps kept in the state (every step is in alert_history)


def order_row(entity_id: str, st: EntityState, o: Order) -> dict[str, Any]:
    """The order as a ``rectification_orders`` row (a new version per step)."""
    return {
        "order_id": o.order_id,
        "version": o.revision,
        "entity_id": entity_id,
        "entity_name": st.name,
        "township": st.township,
        "alert_id": o.alert_id,
        "source": o.source,
        "department": o.department,
        "item_id": o.item_id or 0,
        "status": o.status,
        "reason": o.reason,
        "actions": [f"{i.code}|{i.severity}|{i.action}" for i in o.items],
        "item_due": [dt(i.due) for i in o.items],
        "issued_at": dt(o.issued_at),
        "deadline": dt(o.deadline),
        "claimed_at": dt(o.claimed_at) if o.claimed_at else None,
        "evidence_sha256": o.evidence,
        "failed_rechecks": o.failed,
        "reminders": o.reminders,
        "chain_hash": o.chain,
        "updated_at": dt(o.updated_at),
    }
