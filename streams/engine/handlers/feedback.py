"""Disposal feedback from the workbench: a department's answer (签收, 处置中, 办结, 非本部门 …),
a case transfer's receiver answering (受理 / 不予受理), or the office making another department
lead (专班研判改派: the alert's on-site check moves with it), or a rectification order's 整改完成
(``rectified``, the order id in ``alert_id``). Refused feedback is a dead letter.

>>> from datetime import datetime, timezone
>>> from riskwatch.domain.county import load_county
>>> from schemas.events import DisposalFeedback
>>> cx = Context.of(load_county()); desk = Desk(cx)
>>> st, out = EntityState(), Outcome()
>>> ev = DisposalFeedback(event_id="f1", entity_id="E1", occurred_at=datetime(2026, 1, 1, tzinfo=timezone.utc),
...     source="web", alert_id="nope", department="amr", status="acknowledged")
>>> handle(cx, desk, ev, st, out); out.rejected.startswith("feedback for unknown or already closed alert 'nope'")
True
"""

from __future__ import annotations

from schemas.events import DisposalFeedback
from schemas.privacy import mask_pii
from streams.engine import orders, plans, texts
from streams.engine.context import Context
from streams.engine.desk import Desk
from streams.engine.outcome import Outcome
from streams.engine.state import EntityState


def handle(cx: Context, desk: Desk, ev: DisposalFeedback, st: EntityState, out: Outcome) -> None:
    if ev.status == "rectified":  # 整改完成 of a rectification order: alert_id carries the order id
        out.rejected = orders.claim(
            cx,
            st,
            out,
            ev.entity_id,
            ev.alert_id,
            ev.department,
            " ".join(x for x in (ev.comment, ev.result) if x),
            ev.attachment_sha256,
            ev.user,
            ev.occurred_at.timestamp(),
        )
        return
    oa = next((a for a in st.alerts.values() if a.alert_id == ev.alert_id), None)
    if oa is None:
        out.rejected = texts.unknown_alert(ev.alert_id, ev.entity_id)
        return
    if ev.status == "reassign":  # the task-force office decides who is responsible (专班研判改派)
        lead = oa.lc.lead
        if (
            desk.reassign(ev, st, out, oa, ev.department, ev.assign_to, mask_pii(ev.comment), ev.user)
            and oa.lc.lead != lead
        ):
            plans.move_alert_task(cx, ev.entity_id, st, out, oa, lead, ev.occurred_at.timestamp())
        return
    attached = f"[附件 sha256:{ev.attachment_sha256}]" if ev.attachment_sha256 else ""
    comment = mask_pii(" ".join(x for x in (ev.comment, ev.result, attached) if x))  # leaves on alerts.* and in history
    status = ev.status.value if hasattr(ev.status, "value") else str(ev.status)
    if status in ("accepted", "declined"):  # a case transfer's receiver answers (行刑衔接)
        desk.transfer_answer(ev, st, out, oa, ev.department, status, comment, ev.user)
    else:
        desk.feedback(ev, st, out, oa, ev.department, status, comment, ev.user)
