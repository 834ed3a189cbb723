"""A sensor reading: the evidence window, the limit rules (confirmed breaches open a case,
in-limit readings resolve it), the per-device stream detector and its anomaly evidence for the fused risk.

>>> from datetime import datetime, timezone
>>> from riskwatch.domain.county import load_county
>>> from schemas.events import SensorReading
>>> cx = Context.of(load_county()); desk = Desk(cx)
>>> st, out = EntityState(kind="food_producer"), Outcome()
>>> ev = SensorReading(event_id="s1", entity_id="E1", occurred_at=datetime(2026, 1, 1, tzinfo=timezone.utc),
...                    source="iot", device_id="d1", channel="cold_chain_temp", value=4.0, unit="C")
>>> out.at = ev.occurred_at.timestamp(); handle(cx, desk, ev, st, out)
>>> out.alerts, sorted(st.sensors), list(st.readings["d1:cold_chain_temp"])
([], ['d1:cold_chain_temp'], [1767225600.0, 4.0])
"""

from __future__ import annotations

from array import array

from detectors.inspection import to_days
from detectors.rules import Hit
from detectors.sensor import SensorAnomaly
from riskwatch.domain.units import UnitError, display, to_canonical
from schemas.events import Contribution, SensorReading
from streams.engine import health, texts
from streams.engine.context import Context
from streams.engine.desk import Desk
from streams.engine.handlers.confirm import confirmed
from streams.engine.outcome import Outcome
from streams.engine.state import EntityState

RESOLVE_AFTER_OK = 3  # consecutive in-limit readings that resolve a sensor alert
TRIM_SLACK_S = 600.0  # evidence readings older than the window are dropped once they are this much older


def handle(cx: Context, desk: Desk, ev: SensorReading, st: EntityState, out: Outcome) -> None:
    dev = st.devices.get(ev.device_id) if st.devices else None
    unit = ev.unit or (dev.unit if dev is not None else "")
    if unit:  # into the channel's canonical unit (a cached affine map); an unknown unit is refused
        try:
            value = to_canonical(ev.channel, ev.value, unit)
        except UnitError as e:
            out.rejected = str(e)
            return
        if value != ev.value:
            # not model_copy(update=...): a gateway batch's readings share one frozen fields-set
            ev = SensorReading.model_construct(**{**ev.__dict__, "value": value, "unit": display(ev.channel)})
    key = f"{ev.device_id}:{ev.channel}"
    det = st.sensors.get(key)
    t = out.at
    if cx.evidence:
        keep_window(cx, ev, st, key, t)
    baseline = det.slow if det is not None and det.warmed_up(t) else None
    # the device's typical reading so far: an unrated device's county default follows its operating band
    typical = (det.slow, det.n) if det is not None and det.n else None
    hit = cx.rules.on_sensor(ev.channel, ev.value, baseline, dev, typical)
    if hit and not confirmed(st, f"{hit.rule}:{ev.device_id}", t, hit):
        pass  # a breach not yet confirmed: neither a case nor a sign of recovery
    elif hit:
        desk.raise_alert(
            ev,
            st,
            out,
            hit,
            [
                Contribution(
                    signal=f"sensor.{ev.channel}",
                    value=ev.value,
                    detail=f"{ev.device_id} {hit.note}" if hit.note else f"{ev.device_id} 读数 {ev.value:g}{ev.unit}",
                )
            ],
        )
    else:
        ok(desk, ev, st, out, f"rule.sensor.{ev.channel}")
    if ev.entity_id != "unknown":
        health.on_reading(cx, desk, ev, st, out)  # offline / stuck / range / step (streams/engine/health.py)
    if det is None:
        det = st.sensors[key] = SensorAnomaly()
    st.touch_sensor(key)
    score, alert = det.update(ev.value, t)
    if score > 0.0 and det.warmed_up(t):
        # fusion accumulates evidence: use the undamped score while the detector suppresses
        raw = score / det.damp if (not alert and det.since_alert <= det.suppress and det.damp > 0) else score
        st.risk.learn_one(t, f"anomaly.{ev.channel}", min(raw, 1.0), cx.fusion)
    if alert:
        st.history.on_signal(to_days(t), "sensor")
    if alert and not hit and cx.fusion.sensor_model_alerts:
        level = "yellow" if score >= 0.9 else "blue"
        desk.raise_alert(
            ev,
            st,
            out,
            Hit(f"model.sensor.{ev.channel}", level, texts.SENSOR_MODEL_TITLE, score),
            [
                Contribution(
                    signal=f"anomaly.{ev.channel}",
                    value=round(score, 4),
                    detail=f"{ev.device_id} 读数 {ev.value:g}{ev.unit},偏离该设备历史规律",
                )
            ],
        )


def keep_window(cx: Context, ev: SensorReading, st: EntityState, key: str, t: float) -> None:
    """The evidence window: the device's last readings (bounded), and the open after-windows."""
    buf = st.readings.get(key)
    if buf is None:
        buf = st.readings[key] = array("d")
    buf.append(t)
    buf.append(ev.value)
    win = cx.windows.get(ev.channel)
    if win is None:
        w = cx.rules.evidence_window(ev.channel)
        win = cx.windows[ev.channel] = (2 * w.max_points, w.before_s, w.before_s + TRIM_SLACK_S)
    if len(buf) > win[0]:
        del buf[:2]
    if buf[0] < t - win[2]:  # only the window before a trigger is needed: trimmed lazily, in steps
        horizon = t - win[1]
        i = 0
        while i < len(buf) and buf[i] < horizon:
            i += 2
        del buf[:i]
    if st.alerts:
        for oa in st.alerts.values():
            d = oa.evidence
            if d is not None and not d.final and d.key == key:
                d.add_point(t, ev.value)


def ok(desk: Desk, ev: SensorReading, st: EntityState, out: Outcome, rule: str) -> None:
    """An in-limit reading: the rule's open alerts resolve after ``RESOLVE_AFTER_OK`` in a row."""
    if not st.alerts:
        return
    for oa in list(st.alerts.values()):
        if oa.rule == rule and oa.status not in ("resolved", "closed"):
            oa.ok_streak += 1
            if oa.ok_streak >= RESOLVE_AFTER_OK:
                desk.clear(ev, st, out, oa)
