"""Injected incidents and their ground truth.

Six incident types, several of each per run (``incidents.per_day`` in simulator.yaml), at seeded
random entities and times after a warm-up:

============================ ============================== =============================================
type                         entity / stream                signal the detectors should raise
============================ ============================== =============================================
cold_chain_failure           food producer / produce market sensor.cold_chain_temp creeps up for hours,
                             freezer or chiller              then stays above ``limit`` until repaired
boiler_overpressure          special-equipment boiler       sensor.boiler_pressure above rated (1.25 MPa)
complaint_surge              one shop (mostly catering)     complaint.count: many complaints in a day
rodent_repeat                one kitchen with cameras       video.rodent detections on several nights
elevator_fault_burst         one elevator                   sensor.elevator_fault non-zero for 1–3 h
pharmacy_humidity_excursion  one retail pharmacy            sensor.storage_humidity above 75 %RH
============================ ============================== =============================================

A ground-truth record (one JSON line per incident) gives ``incident_id``, ``type``, ``entity_id``,
``start``/``end`` (ISO, +08:00: the whole abnormal episode), ``expected_signal`` and what was
actually emitted (``observed``: first breach, peak, counts). A detector evaluation matches an alert
to an incident when the alert's ``entity_id`` equals the incident's and the alert's first_seen lies
in ``[start, end + grace]``; alerts matching no incident are false alerts.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from riskwatch.tools.simulator.county import CST, County, Entity, SimConfig
from riskwatch.tools.simulator.words import DISHES, DRUGS, FOODS, PROCEDURES, SYMPTOMS

INCIDENT_TYPES = (
    "cold_chain_failure",
    "boiler_overpressure",
    "complaint_surge",
    "rodent_repeat",
    "elevator_fault_burst",
    "pharmacy_humidity_excursion",
)

SENSOR_INCIDENTS = {"cold_chain_failure", "boiler_overpressure", "pharmacy_humidity_excursion", "elevator_fault_burst"}


@dataclass
class Incident:
    incident_id: str
    type: str
    entity: Entity
    start: float  # epoch seconds
    end: float
    expected_signal: str
    description: str
    device_id: str | None = None
    template: str | None = None  # channel template in simulator.yaml
    channel: str | None = None  # wire channel name
    limit: float | None = None
    # gauge incidents: blend normal value toward `target` with weight ramping 0→1 (shape `power`)
    target: float | None = None
    ramp_s: float = 0.0
    hold_s: float = 0.0
    recover_s: float = 0.0
    power: float = 1.0
    # elevator burst
    codes: dict[int, float] = field(default_factory=dict)
    fault_share: float = 0.0
    # event incidents: (epoch, what, params) rows streams.py turns into events
    scheduled: list[tuple[float, str, dict]] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    observed: dict[str, Any] = field(default_factory=dict)

    def weight(self, t: float) -> float:
        """Blend weight of the abnormal target at time t (0 outside the episode)."""
        if t < self.start or t > self.end:
            return 0.0
        dt = t - self.start
        if dt < self.ramp_s:
            return (dt / self.ramp_s) ** self.power
        dt -= self.ramp_s
        if dt <= self.hold_s:
            return 1.0
        dt -= self.hold_s
        return max(0.0, 1.0 - dt / self.recover_s) if self.recover_s > 0 else 0.0

    def truth(self, reached: float | None = None) -> dict[str, Any]:
        e = self.entity
        rec: dict[str, Any] = {
            "record": "incident",
            "incident_id": self.incident_id,
            "type": self.type,
            "entity_id": e.entity_id,
            "entity_kind": e.kind,
            "entity_name": e.name,
            "township": e.township,
            "start": _iso(self.start),
            "end": _iso(self.end),
            "expected_signal": self.expected_signal,
            "description": self.description,
        }
        if self.device_id and self.channel:
            rec["device_id"] = self.device_id
            rec["channel"] = self.channel
        if self.limit is not None:
            rec["limit"] = self.limit
            rec["direction"] = "above"
        if self.target is not None:
            rec["target"] = round(self.target, 3)
        rec.update(self.params)
        obs = dict(self.observed)
        for k in ("first_breach", "first_fault", "first_event", "last_event"):
            if isinstance(obs.get(k), float):
                obs[k] = _iso(obs[k])
        rec["observed"] = obs
        if reached is not None:
            rec["complete"] = self.end <= reached
        return rec


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, CST).isoformat()


SURGE_THEMES = {
    "catering": [("food_poisoning", 0.6), ("hygiene", 0.25), ("food_quality", 0.15)],
    "food_producer": [("food_quality", 0.8), ("food_poisoning", 0.2)],
    "produce_market": [("food_quality", 1.0)],
    "retail_pharmacy": [("counterfeit_drug", 0.5), ("drug_sales", 0.5)],
    "medical_beauty": [("medical_beauty_injury", 0.7), ("pricing", 0.3)],
}
SURGE_KIND_WEIGHTS = {
    "catering": 0.6,
    "food_producer": 0.1,
    "produce_market": 0.1,
    "retail_pharmacy": 0.1,
    "medical_beauty": 0.1,
}


def _pick(rng: random.Random, items: list[tuple[Any, float]]) -> Any:
    total = sum(w for _, w in items)
    x = rng.random() * total
    for v, w in items:
        x -= w
        if x < 0:
            return v
    return items[-1][0]


def schedule_incidents(cfg: SimConfig, county: County, channels: dict[str, dict]) -> list[Incident]:
    """Choose incident entities, devices and windows (deterministic from the seed)."""
    data = cfg.data["incidents"]
    rng = random.Random(f"incidents:{cfg.seed}")
    t0, t1 = cfg.start.timestamp(), cfg.end.timestamp()
    horizon = t1 - t0
    warm = min(float(data.get("warmup_hours", 14)) * 3600, 0.3 * horizon)
    used: set[str] = set()
    out: list[Incident] = []

    def window(dur: float) -> tuple[float, float]:
        """A start in [t0+warm, t1-dur] and the compression factor if the run is too short."""
        avail = t1 - (t0 + warm)
        f = 1.0
        if dur > 0.9 * avail:
            f = 0.9 * avail / dur
            dur *= f
        s = t0 + warm + rng.random() * max(0.0, avail - dur)
        return float(int(s)), f

    def free(cands: list) -> list:
        return [c for c in cands if c[0].entity_id not in used and c[0].registered_at is None]

    def devices_with(kinds: tuple[str, ...], templates: tuple[str, ...]) -> list[tuple[Entity, Any, str]]:
        rows = []
        for e in county.entities:
            if e.kind in kinds:
                for d in e.devices:
                    for tmpl in d.channels:
                        if tmpl in templates:
                            rows.append((e, d, tmpl))
        return rows

    for typ in INCIDENT_TYPES:
        n = max(1, round(float(data["per_day"].get(typ, 0)) * cfg.days))
        for _ in range(n):
            inc = None
            if typ == "cold_chain_failure":
                cands = free(devices_with(("food_producer", "produce_market"), ("freezer_temp", "chiller_temp")))
                if not cands:
                    continue
                e, d, tmpl = rng.choice(cands)
                spec = channels[tmpl]
                ramp, hold, rec = rng.uniform(3, 8) * 3600, rng.uniform(1, 4) * 3600, rng.uniform(1, 2) * 3600
                s, f = window(ramp + hold + rec)
                inc = Incident(
                    "",
                    typ,
                    e,
                    s,
                    s + (ramp + hold + rec) * f,
                    f"sensor.{spec['channel']}",
                    f"{e.name}{'冷冻库' if tmpl == 'freezer_temp' else '冷藏库'}压缩机故障,"
                    f"库温数小时内持续上升并超过{spec['limit']}℃",
                    device_id=d.device_id,
                    template=tmpl,
                    channel=spec["channel"],
                    limit=spec["limit"],
                    target=spec["limit"] + rng.uniform(2.5, 8.0),
                    ramp_s=ramp * f,
                    hold_s=hold * f,
                    recover_s=rec * f,
                    power=1.8,
                )
            elif typ == "boiler_overpressure":
                cands = free(devices_with(("special_equipment",), ("boiler_pressure",)))
                if not cands:
                    continue
                e, d, tmpl = rng.choice(cands)
                spec = channels[tmpl]
                ramp, hold, rec = rng.uniform(20, 60) * 60, rng.uniform(15, 45) * 60, rng.uniform(10, 20) * 60
                s, f = window(ramp + hold + rec)
                inc = Incident(
                    "",
                    typ,
                    e,
                    s,
                    s + (ramp + hold + rec) * f,
                    "sensor.boiler_pressure",
                    f"{e.name}锅炉压力超过额定工作压力{spec['limit']}MPa",
                    device_id=d.device_id,
                    template=tmpl,
                    channel=spec["channel"],
                    limit=spec["limit"],
                    target=spec["limit"] * rng.uniform(1.06, 1.15),
                    ramp_s=ramp * f,
                    hold_s=hold * f,
                    recover_s=rec * f,
                    power=1.3,
                )
            elif typ == "pharmacy_humidity_excursion":
                cands = free(devices_with(("retail_pharmacy",), ("drug_humidity",)))
                if not cands:
                    continue
                e, d, tmpl = rng.choice(cands)
                spec = channels[tmpl]
                ramp, hold, rec = rng.uniform(2, 5) * 3600, rng.uniform(4, 12) * 3600, rng.uniform(1, 3) * 3600
                s, f = window(ramp + hold + rec)
                inc = Incident(
                    "",
                    typ,
                    e,
                    s,
                    s + (ramp + hold + rec) * f,
                    "sensor.storage_humidity",
                    f"{e.name}药品储存区除湿设备故障,相对湿度超过{spec['limit']}%",
                    device_id=d.device_id,
                    template=tmpl,
                    channel=spec["channel"],
                    limit=spec["limit"],
                    target=spec["limit"] + rng.uniform(6, 15),
                    ramp_s=ramp * f,
                    hold_s=hold * f,
                    recover_s=rec * f,
                    power=1.2,
                )
            elif typ == "elevator_fault_burst":
                cands = free(devices_with(("special_equipment",), ("elevator_fault",)))
                if not cands:
                    continue
                e, d, tmpl = rng.choice(cands)
                dur = rng.uniform(1, 3) * 3600
                s, f = window(dur)
                main = rng.choice((1, 3, 4))
                inc = Incident(
                    "",
                    typ,
                    e,
                    s,
                    s + dur * f,
                    "sensor.elevator_fault",
                    f"{e.name}电梯{d.device_id.rsplit('-', 1)[-1]}短时间内反复报故障(故障码{main})",
                    device_id=d.device_id,
                    template=tmpl,
                    channel="elevator_fault",
                    codes={main: 0.75, 1: 0.1, 4: 0.1, 5: 0.05},
                    fault_share=rng.uniform(0.5, 0.8),
                    params={"main_fault_code": main},
                )
                if rng.random() < 0.5:  # someone trapped calls the hotline
                    inc.scheduled.append(
                        (
                            float(int(s + rng.uniform(0.1, 0.8) * dur * f)),
                            "complaint",
                            {"category": "equipment_safety", "theme": "trapped"},
                        )
                    )
            elif typ == "complaint_surge":
                kind = _pick(rng, list(SURGE_KIND_WEIGHTS.items()))
                cands = free([(e,) for e in county.of_kind(kind)]) or free([(e,) for e in county.of_kind("catering")])
                if not cands:
                    continue
                (e,) = rng.choice(cands)
                category = _pick(rng, SURGE_THEMES.get(e.kind, [("food_quality", 1.0)]))
                dur = rng.uniform(6, 20) * 3600
                s, f = window(dur)
                dur *= f
                count = rng.randint(8, 20)
                times = sorted(float(int(s + dur * rng.random() ** 1.5)) for _ in range(count))  # front-loaded
                inc = Incident(
                    "",
                    typ,
                    e,
                    times[0],
                    times[-1],
                    "complaint.count",
                    f"{e.name}一天内被集中投诉{count}次({category})",
                    params={"count": count, "category": category},
                )
                # one story told by many: the same dish/product/drug in every complaint of the surge
                fixed = {
                    "food": rng.choice(FOODS),
                    "dish": rng.choice(DISHES),
                    "drug": rng.choice(DRUGS),
                    "proc": rng.choice(PROCEDURES),
                    "symptom": rng.choice(SYMPTOMS),
                }
                inc.params["story"] = fixed
                inc.scheduled = [
                    (t, "complaint", {"category": category, "theme": "surge", "fixed": fixed}) for t in times
                ]
            elif typ == "rodent_repeat":
                cands = free([(e,) for e in county.entities if e.kind in ("catering", "food_producer") and e.cameras])
                if not cands:
                    continue
                (e,) = rng.choice(cands)
                nights = rng.randint(2, 3)
                s, f = window(nights * 86400)
                count = rng.randint(5, 14)
                times = []
                for _ in range(count):
                    night = rng.randrange(nights)
                    # 22:00–05:00 local after the window start's day
                    day0 = datetime.fromtimestamp(s, CST).replace(hour=22, minute=0, second=0, microsecond=0)
                    t = (day0 + timedelta(days=night, minutes=rng.uniform(0, 7 * 60))).timestamp()
                    t = float(int(min(max(t, s), t1 - 1)))
                    times.append(t)
                times.sort()
                cam = rng.choice(e.cameras)  # mostly the kitchen camera
                inc = Incident(
                    "",
                    typ,
                    e,
                    times[0],
                    times[-1],
                    "video.rodent",
                    f"{e.name}后厨连续多个夜间被AI视频识别到老鼠",
                    device_id=cam,
                    params={"count": count, "camera_id": cam},
                )
                inc.scheduled = [
                    (
                        t,
                        "video",
                        {
                            "cls": "rodent",
                            "camera_id": cam if rng.random() < 0.8 else rng.choice(e.cameras),
                            "confidence": round(rng.uniform(0.7, 0.96), 3),
                        },
                    )
                    for t in times
                ]
            if inc is not None:
                used.add(inc.entity.entity_id)
                out.append(inc)

    for inc in out:
        inc.end = float(int(inc.end))
    out.sort(key=lambda i: (i.start, i.type))
    for k, inc in enumerate(out, 1):
        inc.incident_id = f"INC{cfg.seed}-{k:03d}"
    return out


def _ts(v: Any) -> float:
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        v = datetime.fromisoformat(v)
    if v.tzinfo is None:
        v = v.replace(tzinfo=CST)
    return v.timestamp()


def match_alerts(
    truth: Iterable[dict],
    alerts: Iterable[dict],
    grace: timedelta = timedelta(hours=2),
    lead: timedelta = timedelta(0),
) -> dict[str, Any]:
    """Map alerts back to injected incidents.

    ``truth``: ground-truth records (other records than ``incident`` are ignored); ``alerts``:
    dicts with ``entity_id``, ``first_seen`` (ISO string or datetime, simulated event time) and
    optionally ``alert_id``/``rule``. An alert matches an incident of the same entity when its
    ``first_seen`` lies in ``[start − lead, end + grace]``; the earliest matching alert detects the
    incident. Returns per-incident detections (delay from ``start`` and, for limit incidents, from
    the first reading above the limit: negative = warned before the breach), missed incidents,
    false alerts (no incident matches) and recall/precision over alerts.

    >>> inc = [{"record": "incident", "incident_id": "I1", "type": "t", "entity_id": "E1",
    ...         "start": "2026-03-02T10:00:00+08:00", "end": "2026-03-02T12:00:00+08:00"}]
    >>> r = match_alerts(inc, [{"entity_id": "E1", "first_seen": "2026-03-02T10:30:00+08:00"},
    ...                        {"entity_id": "E2", "first_seen": "2026-03-02T10:30:00+08:00"}])
    >>> r["detected"]["I1"]["delay_s"], len(r["false_alerts"]), r["recall"], r["precision"]
    (1800.0, 1, 1.0, 0.5)
    """
    incs = [r for r in truth if r.get("record", "incident") == "incident"]
    by_entity: dict[str, list[dict]] = {}
    for r in incs:
        by_entity.setdefault(r["entity_id"], []).append(r)
    detected: dict[str, dict] = {}
    false_alerts: list[dict] = []
    matched_alerts = 0
    for a in alerts:
        t = _ts(a["first_seen"])
        hits = [
            r
            for r in by_entity.get(a["entity_id"], ())
            if _ts(r["start"]) - lead.total_seconds() <= t <= _ts(r["end"]) + grace.total_seconds()
        ]
        if not hits:
            false_alerts.append(a)
            continue
        matched_alerts += 1
        for r in hits:
            cur = detected.get(r["incident_id"])
            if cur is None or t < cur["_t"]:
                d = {
                    "_t": t,
                    "type": r["type"],
                    "alert_id": a.get("alert_id"),
                    "rule": a.get("rule"),
                    "delay_s": t - _ts(r["start"]),
                }
                breach = (r.get("observed") or {}).get("first_breach")
                if breach:
                    d["delay_from_breach_s"] = t - _ts(breach)
                detected[r["incident_id"]] = d
    for d in detected.values():
        d.pop("_t")
    n_alerts = matched_alerts + len(false_alerts)
    return {
        "detected": detected,
        "missed": [r["incident_id"] for r in incs if r["incident_id"] not in detected],
        "false_alerts": false_alerts,
        "recall": len(detected) / len(incs) if incs else 1.0,
        "precision": matched_alerts / n_alerts if n_alerts else 1.0,
    }
