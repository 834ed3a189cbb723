"""Disposal feedback from the workbench: a department's answer (签收, 处置中, 办结, 非本部门 …),
a case transfer's receiver answering (受理 / 不予受理), or the office making another department
lead (专班研判改派: the alert's on-site check moves with it), the office merging a clue into the alert
(专班研判合并, ``merged``: a row on the alert, its receivers told), or a rectification order's 整改完成
(``rectified``, the order id in ``alert_id``). Refused feedback is a dead letter.

已处置 carries the outcome (``DisposalOutcome``): its words lead the recorded comment (audit chain, timeline),
its columns go to ``events_feedback`` with the event. A 误报 names a reason of
``riskwatch/data/false_alarm_reasons.yaml`` (an unknown code is refused); a reason with ``learn: true`` teaches the
model that raised the alert (:func:`learn_false_alarm`): the entity's stream detectors of that device and channel
raise their alert threshold by ``THRESHOLD_STEP`` (up to ``THRESHOLD_MAX``). An outcome is accepted while the
alert is in the entity's state (open, or resolved within its close grace); a disposed message without an
outcome is accepted as outcome unknown (this release, docs/events.md).

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

from riskwatch.domain.outcomes import load_reasons
from schemas.events import DisposalFeedback, DisposalOutcome, Verdict, Violation
from schemas.privacy import mask_pii
from schemas.vocabulary import FALSE_ALARM_REASON_ZH, MEASURE_ZH, VERDICT_ZH
from streams.engine import orders, plans, texts
from streams.engine.context import Context
from streams.engine.desk import Desk
from streams.engine.outcome import Outcome
from streams.engine.state import EntityState, OpenAlert

THRESHOLD_STEP = 0.1  # a learnable 误报 raises the device-channel detector's alert threshold by this
THRESHOLD_MAX = 0.95  # and never above this (the detector still alerts on a gross anomaly)
DISCOUNT_STEP = 0.7  # a learnable 误报 on a fused-risk alert: the entity's signal kinds that made it count 0.7×
DISCOUNT_FLOOR = 0.4  # and never below 0.4× (three 误报 in a row; a real breach of a rule still alerts)


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
    if ev.status == "merged":  # the office merged a clue into this alert (专班研判合并): its receivers hear of it
        rev = oa.lc.revision
        res = cx.lifecycle.merge(oa.lc, ev.department, ev.occurred_at, mask_pii(ev.comment), cx.silences, user=ev.user)
        if res.rejected:
            out.rejected = res.rejected
            return
        desk.publish(ev.entity_id, ev.event_id, st, out, oa, [], res.notifications, rev)
        return
    o = ev.outcome
    if o is not None and o.verdict == Verdict.false_alarm and o.reason not in load_reasons():
        out.rejected = (
            f"误报原因 {o.reason!r} 不在清单中(unknown false-alarm reason; known: {', '.join(load_reasons())})"
        )
        return
    attached = f"[附件 sha256:{ev.attachment_sha256}]" if ev.attachment_sha256 else ""
    said = outcome_text(o) if o is not None else ""
    # leaves on alerts.* and in history
    comment = mask_pii(" ".join(x for x in (said, ev.comment, ev.result, attached) if x))
    status = ev.status.value if hasattr(ev.status, "value") else str(ev.status)
    if status in ("accepted", "declined"):  # a case transfer's receiver answers (行刑衔接)
        desk.feedback(ev, st, out, oa, ev.department, status, comment, ev.user, transfer=True)
    else:
        desk.feedback(ev, st, out, oa, ev.department, status, comment, ev.user)
        if o is not None and out.rejected is None and o.verdict == Verdict.confirmed and "rectify" in o.measures:
            # 责令整改: a rectification order; the alert closes only when it closes (orders.py, desk.py)
            orders.open_order(
                cx,
                st,
                out,
                entity_id=ev.entity_id,
                alert_id=oa.alert_id,
                department=ev.department,
                items=[Violation(code="rectify", severity="serious", description=mask_pii(o.rectify_note or oa.title))],
                reason=f"预警处置:属实,责令整改({oa.title})",
                at=ev.occurred_at.timestamp(),
                item_id=oa.item_id,
            )
        if (
            o is not None
            and out.rejected is None
            and o.verdict == Verdict.false_alarm
            and load_reasons()[o.reason].learn
        ):
            learn_false_alarm(st, oa, cx, ev.occurred_at.timestamp())


def outcome_text(o: DisposalOutcome) -> str:
    """The outcome in the words of the timeline: ``【核查结果】属实;措施:责令整改(…)、罚款 5000 元``.

    >>> from schemas.events import DisposalOutcome
    >>> outcome_text(DisposalOutcome(verdict="false_alarm", reason="sensor_fault"))
    '【核查结果】误报(设备故障)'
    >>> outcome_text(DisposalOutcome(verdict="confirmed", measures=["rectify", "fine"], fine_yuan=5000))
    '【核查结果】属实;措施:责令整改、罚款 5000 元'
    """
    head = f"【核查结果】{VERDICT_ZH[o.verdict.value]}"
    if o.verdict == Verdict.false_alarm:
        return f"{head}({FALSE_ALARM_REASON_ZH.get(o.reason, o.reason)})"
    parts = []
    for m in o.measures:
        word = MEASURE_ZH[m.value]
        detail = {
            "rectify": o.rectify_note,
            "case": f"案号 {o.case_number}",
            "fine": f" {o.fine_yuan:g} 元" if o.fine_yuan else "",
            "transfer": f"移送至{o.transfer_to}" if o.transfer_to else "",
        }.get(m.value, "")
        if m.value == "fine":
            parts.append(word + detail)
        elif m.value == "transfer":
            parts.append(detail or word)
        else:
            parts.append(f"{word}({detail})" if detail else word)
    return head + (";措施:" + "、".join(parts) if parts else "")


def learn_false_alarm(st: EntityState, oa: OpenAlert, cx: Context | None = None, t: float = 0.0) -> list[str]:
    """A 误报 on a model's alert: the model that raised it learns. Returns what changed.

    - ``model.sensor.<channel>``: the detectors of its device and channel raise their threshold; the alert
      names its device in the evidence key (``<device>:<channel>``); without one, every device of the
      entity on that channel learns;
    - ``model.risk`` (the fused risk): the signal kinds contributing to the entity's score now (the ones
      that raised it) count ``DISCOUNT_STEP`` times less for this entity, down to ``DISCOUNT_FLOOR``.
    """
    if oa.rule == "model.risk" and cx is not None:
        kinds = st.risk.top_kinds(t or oa.last_seen, cx.fusion, oa.item_id)
        return [f"risk.{k}" for k in st.risk.discount_kinds(kinds, DISCOUNT_STEP, DISCOUNT_FLOOR)]
    if not oa.rule.startswith("model.sensor."):
        return []
    channel = oa.rule.removeprefix("model.sensor.")
    key = oa.evidence.key if oa.evidence is not None and oa.evidence.key else ""
    keys = [key] if key in st.sensors else [k for k in st.sensors if k.endswith(f":{channel}")]
    changed = []
    for k in keys:
        det = st.sensors[k]
        new = min(float(det.threshold) + THRESHOLD_STEP, THRESHOLD_MAX)
        if new > det.threshold:
            det.threshold = new
            st.touch_sensor(k)
            changed.append(k)
    return changed
