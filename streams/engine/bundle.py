"""What a new alert's evidence bundle holds (``streams/engine/evidence.py`` seals it): the readings,
detections, complaints or inspection behind it, as the entity has them now, and the explanation.

>>> from datetime import datetime, timezone
>>> from detectors.rules import Hit
>>> from riskwatch.domain.county import load_county
>>> from schemas.events import InspectionResult
>>> ev = InspectionResult(event_id="i1", entity_id="E1", occurred_at=datetime(2026, 1, 1, tzinfo=timezone.utc),
...     source="amr", inspection_id="I1", item_id=1, departments=["amr"], outcome="fail", violations=[])
>>> d = open_bundle(load_county().rules, ev, EntityState(), "A1", Hit("rule.inspection", "orange", "t", 1.0), [], [])
>>> [it["kind"] for it in d.items], d.final
(['inspection', 'explanation'], True)
"""

from __future__ import annotations

from detectors.rules import Hit, RuleSet
from schemas.events import Complaint, Contribution, Event, InspectionResult, SensorReading, VideoDetection
from streams.engine import evidence as E
from streams.engine.state import EntityState


def open_bundle(
    rules: RuleSet,
    ev: Event,
    st: EntityState,
    alert_id: str,
    hit: Hit,
    why: list[Contribution],
    crime: list[tuple[str, str]] | None,
) -> E.Draft:
    """The evidence bundle of a new alert: what the entity has on it now."""
    t = ev.occurred_at.timestamp()
    items: list[E.Item] = []
    after_s, key = 0.0, ""
    if isinstance(ev, SensorReading):
        w = rules.evidence_window(ev.channel)
        key = f"{ev.device_id}:{ev.channel}"
        pts = E.window_points(st.readings.get(key), t - w.before_minutes * 60, t)
        items.append(
            E.readings_item(
                ev.device_id, ev.channel.value, ev.unit, w.before_minutes, w.after_minutes, pts or [(t, ev.value)]
            )
        )
        after_s = w.after_minutes * 60
    elif isinstance(ev, VideoDetection):
        since = t - (hit.within_s or 0.0)
        items += [E.video_item(v) for v in st.videos if v[3] == ev.cls.value and v[0] >= since]
    elif isinstance(ev, Complaint):
        if ev.entity_id == "unknown":
            items.append(E.complaint_item(E.complaint_record(ev)))
        else:
            since = t - 86400.0
            items += [E.complaint_item(c) for c in st.complaints if c[3] == ev.category.value and c[0] >= since]
    elif isinstance(ev, InspectionResult):
        items.append(E.inspection_item(ev))
    items.append(E.explanation_item(hit.rule, hit.level, hit.title, why))
    if crime:
        items.append(E.crime_item(crime))
    return E.Draft.open(ev, alert_id, hit.rule, items, after_s=after_s, key=key)
