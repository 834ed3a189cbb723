"""A complaint (12345 hotline, app, …): the rate surge and inspection history of a known entity,
the evidence record (text masked), its category's rule, and suspected-crime flags that transfer
the case (行刑衔接).

>>> from datetime import datetime, timezone
>>> from riskwatch.domain.county import load_county
>>> from schemas.events import Complaint
>>> cx = Context.of(load_county(), clock=lambda: 0.0); desk = Desk(cx)
>>> st, out = EntityState(kind="retail_pharmacy", registered=True), Outcome()
>>> ev = Complaint(event_id="c1", entity_id="E1", occurred_at=datetime(2026, 1, 1, tzinfo=timezone.utc),
...                source="12345", channel="12345", category="counterfeit_drug", text="假药")
>>> handle(cx, desk, ev, st, out)
>>> [(a.rule, a.notification) for a in out.alerts][:1], any(a.transfer for a in out.alerts)
([('rule.complaint.counterfeit_drug', 'firing')], True)
"""

from __future__ import annotations

from detectors.inspection import to_days
from detectors.rules import Hit
from schemas.events import Complaint, Contribution
from streams.engine import evidence as E
from streams.engine.context import Context
from streams.engine.desk import Crime, Desk
from streams.engine.outcome import Outcome
from streams.engine.risk import rate
from streams.engine.state import EntityState


def handle(cx: Context, desk: Desk, ev: Complaint, st: EntityState, out: Outcome) -> None:
    if ev.entity_id != "unknown":
        rate(cx, ev, st, "complaint")
        st.history.on_complaint(to_days(ev.occurred_at))
    if cx.evidence:
        st.complaints = [*st.complaints[-7:], E.complaint_record(ev)]
    hit = cx.rules.on_complaint(ev.category)
    crime = crime_flags(cx, ev, st)
    if crime and not hit:
        hit = Hit("rule.crime", "red", crime[0][1], 1.0)
    if hit:
        oa = desk.raise_alert(
            ev,
            st,
            out,
            hit,
            [Contribution(signal=f"complaint.{ev.category}", value=1.0, detail=f"{ev.channel} 渠道投诉")],
            crime=crime,
        )
        if crime:
            desk.transfer(ev.entity_id, st, out, oa, crime, ev.occurred_at.timestamp())


def crime_flags(cx: Context, ev: Complaint, st: EntityState) -> Crime:
    """Suspected-crime flags of a complaint (rules.yaml suspected_crime): its category, a
    food-poisoning cluster, unlicensed special equipment that hurt someone."""
    sc = cx.rules.suspected_crime
    cat = ev.category.value
    flags = []
    if cat in sc.complaint_categories:
        flags.append((f"complaint:{cat}", sc.complaint_categories[cat]))
    pc = sc.food_poisoning_cluster
    if pc is not None and cat == "food_poisoning" and ev.entity_id != "unknown":
        since = ev.occurred_at.timestamp() - pc.within_hours * 3600
        n = sum(1 for c in st.complaints if c[3] == "food_poisoning" and c[0] >= since)
        if n >= pc.complaints:
            flags.append(("food_poisoning_cluster", f"{pc.title}({pc.within_hours:g}小时内{n}起食物中毒投诉)"))
    ui = sc.unlicensed_equipment_injury
    if (
        ui is not None
        and st.registered
        and not st.licensed
        and st.kind in ui.entity_kinds
        and cat in ui.complaint_categories
        and any(k in ev.text for k in ui.keywords)
    ):
        flags.append(("unlicensed_equipment_injury", ui.title))
    return flags
