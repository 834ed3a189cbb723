"""An inspection result: the visit does its departments' pending tasks; the inspection-outcome
model scores (before knowing the result), then learns; violations open a case (crime flags
transfer it); a clean visit resolves the entity's open non-sensor alerts.

>>> from datetime import datetime, timezone
>>> from riskwatch.domain.county import load_county
>>> from schemas.events import InspectionResult
>>> cx = Context.of(load_county()); desk = Desk(cx)
>>> st, out = EntityState(kind="catering"), Outcome()
>>> ev = InspectionResult(event_id="i1", entity_id="E1", occurred_at=datetime(2026, 1, 1, tzinfo=timezone.utc),
...     source="amr", inspection_id="I1", item_id=1, departments=["amr"], outcome="pass", violations=[])
>>> handle(cx, desk, ev, st, out); out.inspection_p is not None, out.alerts
(True, [])
"""

from __future__ import annotations

from detectors.inspection import to_days
from detectors.rules import Hit
from schemas.events import Contribution, InspectionResult
from schemas.vocabulary import INSPECTION_OUTCOME_ZH
from streams.engine import orders, texts
from streams.engine.context import Context
from streams.engine.desk import Desk
from streams.engine.outcome import Outcome
from streams.engine.state import EntityState


def handle(cx: Context, desk: Desk, ev: InspectionResult, st: EntityState, out: Outcome) -> None:
    t = ev.occurred_at.timestamp()
    if ev.order_id:  # a 复查: refused (a dead letter) when the order is unknown or not the sender's
        out.rejected = orders.recheck(
            cx,
            st,
            out,
            ev.entity_id,
            ev.order_id,
            ev.departments,
            passed=ev.outcome == "pass",
            inspection_id=ev.inspection_id,
            at=t,
        )
        if out.rejected:
            return
    # the visit happened: the pending tasks of its departments for this entity are done
    done = set(ev.departments)
    st.tasks = {k: task for k, task in st.tasks.items() if task.department not in done}
    learn(cx, ev, st, out)
    if ev.order_id:
        return  # a 复查 is the order's step only: its failure escalates the order, it raises no alert of its own
    if ev.violations and ev.outcome in ("pass_with_conditions", "fail"):
        orders.open_order(
            cx,
            st,
            out,
            entity_id=ev.entity_id,
            alert_id="",
            department=ev.departments[0],
            items=ev.violations,
            reason=f"检查 {ev.inspection_id}:{INSPECTION_OUTCOME_ZH.get(ev.outcome, ev.outcome)}",
            at=t,
            item_id=ev.item_id,
            source=ev.inspection_id,
        )
    worst = ev.worst
    hit = cx.rules.on_inspection(ev.outcome, worst.value if worst else None)
    crime = cx.rules.suspected_crime.on_violations(ev.violations) if ev.violations else []
    if crime and not hit:
        hit = Hit("rule.inspection", "orange", texts.INSPECTION_CRIME_TITLE, 1.0)
    if hit:
        n = sum(1 for v in ev.violations if v.severity != "minor")
        oa = desk.raise_alert(
            ev,
            st,
            out,
            hit,
            [
                Contribution(
                    signal="inspection.violations", value=float(n), detail=f"检查 {ev.inspection_id}:{ev.outcome}"
                )
            ],
            item_id=ev.item_id,
            crime=crime,
        )
        if crime:
            desk.transfer(ev.entity_id, st, out, oa, crime, ev.occurred_at.timestamp())
    elif ev.outcome == "pass":
        # A clean inspection confirms the entity is in order: open inspection/complaint/video
        # alerts of that item are resolved (sensor alerts resolve from their readings).
        for oa in list(st.alerts.values()):
            if oa.status not in ("resolved", "closed") and not oa.rule.startswith(("rule.sensor", "model.sensor")):
                desk.clear(ev, st, out, oa)


def learn(cx: Context, ev: InspectionResult, st: EntityState, out: Outcome) -> None:
    """The inspection-outcome model: score with the history as it was before the visit, then learn."""
    days = to_days(ev.occurred_at)
    ctx = {"item": str(ev.item_id), "lead": ev.departments[0]}
    x = st.history.features(days, ctx)
    out.inspection_p = cx.model.predict_proba_one(x)
    n_crit = sum(1 for v in ev.violations if v.severity == "critical")
    n_ser = sum(1 for v in ev.violations if v.severity == "serious")
    n_min = sum(1 for v in ev.violations if v.severity == "minor")
    cx.model.learn_one(x, n_crit + n_ser > 0)
    st.history.on_inspection(days, critical=n_crit, serious=n_ser, minor=n_min, failed=ev.outcome == "fail")
