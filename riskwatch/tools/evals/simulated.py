"""``riskwatch eval simulated --seed N``: the simulator's incidents through the production processor.

The simulator (``riskwatch.tools.simulator``) generates a county's streams with injected incidents and
their ground truth. Every message goes through the same code as the pipeline — the edge decoder
(``streams.engine.ingest.Decoder``) and :class:`streams.engine.dispatch.Processor` with one
:class:`streams.engine.state.EntityState` per entity — only Kafka and ClickHouse are left out. The
processor's clock is the event time, so ``updated_at`` is simulated time.

Alert revisions are collected; the first revision of each alert id is mapped back to the incidents
with :func:`riskwatch.tools.simulator.incidents.match_alerts`. Reported:

* recall over injected incidents, median time to detect (from incident start, and from the first
  reading above the limit for limit incidents);
* alerts matching no incident, split fairly into

  - **rule alerts on background facts** (``legit``): a rule that by regulation opens a case on one
    event — a failed inspection, a complaint of a category that always opens a case, an elevator
    fault code reported by the device. The simulator emits these in its normal background; an
    alert on them is the product doing its job, not a false alert;
  - **false alerts**: everything else (model alerts, fused ``model.risk``, sensor limit breaches
    and AI-video detections outside incidents), per 1,000 entity-days.

Every unmatched alert is also listed by rule so the lead can judge the split.

Device health (``streams/engine/health.py``) is evaluated on its own against the simulator's labelled
device faults (``record: device_fault``: gateway gaps, stuck values, dying sensors): the offline scan
runs every ``SCAN_S`` of event time (the whole county is one partition here), and per fault kind it
reports recall over the *detectable* faults (a gap of at least 2 × the interval; a stuck value longer
than its channel allows plus one interval), the detection delay (offline: due within 2 × interval +
the commit interval of the gap's start) and false alarms per 1,000 device-days. A worker kill -9 with
catch-up is injected half-way: every state goes back to a snapshot taken ``KILL_REPLAY`` earlier (what
the changelog held) and the events since are processed again; device alarms in the hour after it that
match no fault are reported (must be 0). Device-health alerts are left out of the alert metrics above.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from detectors.device_health import load_health
from riskwatch.domain.county import load_county
from riskwatch.tools.simulator import SimConfig, Simulator
from riskwatch.tools.simulator.county import CST
from riskwatch.tools.simulator.incidents import match_alerts
from riskwatch.tools.simulator.streams import wire_topic
from schemas.events import DeadLetter
from streams.engine import health
from streams.engine.dispatch import Processor
from streams.engine.ingest import Batch, Decoder
from streams.engine.state import EntityState

START = datetime(2025, 3, 3, 0, 0, tzinfo=CST)  # fixed: same seed → same numbers, any day it runs
DAYS = 3.0
GRACE = timedelta(hours=2)
SCAN_S = 60.0  # the offline scan's period in event time (the worker's timer, at most the lifecycle tick)
KILL_REPLAY = 900.0  # the kill -9: states go back to a snapshot this much event time earlier, then replay
COMMIT_S = 5.0  # the commit interval (settings.commit_interval_seconds) in the detection-delay bound

#: Rules that by regulation open a case from one background event (see the module docstring).
LEGIT_BACKGROUND = ("rule.inspection", "rule.complaint.", "rule.sensor.elevator_fault")


def _is_legit(rule: str) -> bool:
    return rule.startswith(LEGIT_BACKGROUND)


def _silence(a: dict) -> bool:
    """A risk alert that a silent safety-critical sensor contributed to (device health: reported there)."""
    return a["rule"] == "model.risk" and any(s.startswith("silence.") for s in a.get("signals", ()))


def run(
    seed: int = 7, days: float = DAYS, scale: float = 1.0, start: datetime = START, progress: bool = True
) -> dict[str, Any]:
    """Simulate, process, match; return the metrics (see :func:`run_cli` for the printout)."""
    cfg = SimConfig(seed=seed, days=days, scale=scale, bad_rate=0.0, start=start, now=start + timedelta(days=days))
    sim = Simulator(cfg)
    county = load_county()
    catalog = county.catalog
    decoder = Decoder(catalog)
    now = [start.timestamp()]
    proc = Processor.from_county(county, clock=lambda: now[0])
    states: dict[str, EntityState] = {}
    first_rev: dict[str, dict] = {}
    n_rev = 0
    n_events = 0
    rejected: Counter[str] = Counter()
    max_state = 0
    t0 = time.perf_counter()
    offsets: Counter = Counter()
    next_scan = start.timestamp() + SCAN_S
    kill_at = start.timestamp() + days * 86400 / 2
    snapshot: dict[str, bytes] | None = None
    replay: list[tuple[str, int, Any]] = []
    killed = [0.0]
    device_firing: list[tuple[str, str, float, float]] = []  # (entity, rule, from, to): a device alert firing
    device_status: dict[str, int] = {}  # a firing device alert -> its entry in device_firing

    def collect(alerts: list) -> None:
        nonlocal n_rev
        for a in alerts:
            n_rev += 1
            if a.alert_id not in first_rev:
                first_rev[a.alert_id] = {
                    "alert_id": a.alert_id,
                    "entity_id": a.entity_id,
                    "rule": a.rule,
                    "level": a.level.value,
                    "first_seen": a.first_seen.isoformat(),
                    "kind": a.entity_kind,
                    "title": a.title,
                    "why": a.explanation[0].signal if a.explanation else "",
                    "signals": [c.signal for c in a.explanation],
                }
            if a.rule.startswith("device."):  # when it fires (a re-opened one too) and until it resolves
                was, now_firing = device_status.get(a.alert_id), a.status.value == "firing"
                if now_firing and was is None:
                    device_status[a.alert_id] = len(device_firing)
                    device_firing.append((a.entity_id, a.rule, a.last_seen.timestamp(), float("inf")))
                elif not now_firing and was is not None:
                    e, r, t0, _ = device_firing[was]
                    device_firing[was] = (e, r, t0, a.last_seen.timestamp())
                    device_status.pop(a.alert_id)

    def process(topic: str, off: int, ev: Any) -> None:
        nonlocal next_scan
        t = ev.occurred_at.timestamp()
        while next_scan <= t:  # the offline scan on the partition's event-time progress
            now[0] = next_scan
            for eid, est in states.items():
                if est.health:
                    collect(health.scan(proc.cx, proc.desk, eid, est, next_scan).alerts)
            next_scan += SCAN_S
        now[0] = t
        st = states.get(ev.entity_id)
        if st is None:
            st = states[ev.entity_id] = EntityState()
        out = proc.process(ev, st, (topic, 0, off))
        if out.rejected:
            rejected[out.rejected[:60]] += 1
        collect(out.alerts)

    for topic, key, value in sim.events():
        off = offsets[topic]
        offsets[topic] += 1
        ev = decoder.decode(wire_topic(topic, value, sim.catalog), 0, off, key, value)  # inspections: the dept's topic
        if isinstance(ev, DeadLetter):
            rejected[ev.error[:60]] += 1
            continue
        assert not isinstance(ev, Batch), "the simulator sends single readings here (gateway_batch=0)"
        t_ev = ev.occurred_at.timestamp()
        if snapshot is None and not killed[0] and t_ev >= kill_at - KILL_REPLAY:  # the last commit before the kill
            snapshot = {eid: st.dumps() for eid, st in states.items()}
            snap_scan = next_scan
        if snapshot is not None and t_ev >= kill_at:  # kill -9: the changelog's states, then catch up
            states.clear()
            states.update({eid: EntityState.loads(b) for eid, b in snapshot.items()})
            next_scan, snapshot, killed[0] = snap_scan, None, t_ev
            for args in replay:
                process(*args)
            replay.clear()
        if snapshot is not None:
            replay.append((topic, off, ev))
        process(topic, off, ev)
        n_events += 1
        if progress and n_events % 200_000 == 0:
            print(
                f"  {n_events:,} events, sim {datetime.fromtimestamp(now[0], CST):%m-%d %H:%M}, "
                f"{len(first_rev)} alerts, {time.perf_counter() - t0:.0f}s",
                file=sys.stderr,
                flush=True,
            )
    for st in states.values():
        max_state = max(max_state, len(st.dumps()))
    truth = sim.ground_truth()
    incidents = [r for r in truth if r.get("record") == "incident"]
    dev = device_metrics(truth, device_firing, sim.n_streams * days, killed[0], start.timestamp() + days * 86400)
    m = match_alerts(truth, [a for a in first_rev.values() if not a["rule"].startswith("device.")], grace=GRACE)
    unmatched = m["false_alerts"]
    legit = [a for a in unmatched if _is_legit(a["rule"])]
    false = [a for a in unmatched if not _is_legit(a["rule"]) and not _silence(a)]
    dev["risk_alerts_with_silence"] = sum(1 for a in unmatched if _silence(a))
    registered = sum(1 for s in states.values() if s.registered)
    entity_days = registered * days
    det = m["detected"].values()
    delays = [d["delay_s"] for d in det]
    breach = [d["delay_from_breach_s"] for d in det if "delay_from_breach_s" in d]
    by_type: dict[str, list] = {}
    for r in incidents:
        d = m["detected"].get(r["incident_id"])
        by_type.setdefault(r["type"], []).append(None if d is None else round(d["delay_s"] / 60, 1))
    return {
        "seed": seed,
        "days": days,
        "scale": scale,
        "start": start.isoformat(),
        "events": n_events,
        "alert_revisions": n_rev,
        "alerts": len(first_rev),
        "rejected": dict(rejected),
        "entities": registered,
        "entity_days": entity_days,
        "incidents": len(incidents),
        "detected": len(m["detected"]),
        "recall": m["recall"],
        "missed": [
            {"incident_id": i, "type": r["type"], "entity_id": r["entity_id"]}
            for i in m["missed"]
            for r in incidents
            if r["incident_id"] == i
        ],
        "detect_minutes_by_type": by_type,
        "detected_by_rule": dict(Counter(d["rule"] for d in det)),
        "median_detect_min": round(statistics.median(delays) / 60, 1) if delays else None,
        "median_detect_from_breach_min": round(statistics.median(breach) / 60, 1) if breach else None,
        "false_alerts": len(false),
        "false_per_1000_entity_days": round(1000 * len(false) / entity_days, 3) if entity_days else None,
        "false_by_rule": dict(Counter(a["rule"] for a in false).most_common()),
        "false_risk_by_top_signal": dict(Counter(a["why"] for a in false if a["rule"] == "model.risk").most_common()),
        "false_list": [{k: a[k] for k in ("entity_id", "kind", "rule", "first_seen", "signals")} for a in false],
        "silence_list": [
            {k: a[k] for k in ("entity_id", "kind", "rule", "first_seen", "signals")} for a in unmatched if _silence(a)
        ],
        "legit_background_alerts": len(legit),
        "legit_by_rule": dict(Counter(a["rule"] for a in legit).most_common()),
        "max_state_bytes": max_state,
        "device_health": dev,
        "seconds": round(time.perf_counter() - t0, 1),
    }


def run_cli(seed: int) -> dict[str, Any]:
    print(f"simulating {DAYS:g} days (seed {seed}) and processing every event…", file=sys.stderr, flush=True)
    r = run(seed)
    print(f"events processed            {r['events']:,} ({r['seconds']}s)")
    print(f"incidents injected          {r['incidents']}")
    print(f"recall                      {r['recall']:.1%} ({r['detected']}/{r['incidents']})")
    for m in r["missed"]:
        print(f"  missed                    {m['incident_id']} {m['type']} {m['entity_id']}")
    print(
        f"median time to detect       {r['median_detect_min']} min from incident start, "
        f"{r['median_detect_from_breach_min']} min from first limit breach"
    )
    for typ, ds in sorted(r["detect_minutes_by_type"].items()):
        print(f"  {typ:27s} {ds} (minutes; None = missed)")
    print(f"detected by                 {r['detected_by_rule']}")
    print(f"entity-days                 {r['entity_days']:,.0f}")
    print(f"false alerts                {r['false_alerts']} = {r['false_per_1000_entity_days']} per 1,000 entity-days")
    for rule, n in r["false_by_rule"].items():
        print(f"  {rule:27s} {n}")
        if rule == "model.risk":
            for sig, k in r["false_risk_by_top_signal"].items():
                print(f"    top signal {sig:31s} {k}")
    print(f"rule alerts on background   {r['legit_background_alerts']} (not counted as false: regulation opens a case)")
    for rule, n in r["legit_by_rule"].items():
        print(f"  {rule:27s} {n}")
    print(f"largest entity state        {r['max_state_bytes']:,} bytes (data format: msgpack)")
    d = r["device_health"]
    print(f"device faults               {d['device_days']:,.0f} device-days; per fault kind:")
    print("  kind      faults detectable recall  delay median/max (min)  within 2×interval+commit")
    for kind, k in d["by_kind"].items():
        print(
            f"  {kind:9s} {k['faults']:6d} {k['detectable']:10d} {k['recall']:6.1%}  "
            f"{k['delay_median_min']!s:>6} / {k['delay_max_min']!s:<8}       {k['within_bound']}"
        )
    print(f"device false alarms         {d['false_alarms']} = {d['false_per_1000_device_days']} per 1,000 device-days")
    for rule, n in d["false_by_rule"].items():
        print(f"  {rule:27s} {n}")
    print(f"  during kill -9 + catch-up {d['false_after_kill']} (in the hour after it)")
    print(f"risk alerts with silence    {d['risk_alerts_with_silence']} (a silent safety-critical sensor contributed)")
    return r


def device_metrics(
    truth: list[dict], firing: list[tuple[str, str, float, float]], device_days: float, killed: float, end: float
) -> dict[str, Any]:
    """Device-health alerts against the labelled device faults (see the module docstring)."""
    cfg = load_health()
    ts = lambda x: datetime.fromisoformat(x).timestamp()  # noqa: E731
    faults = [f for f in truth if f.get("record") == "device_fault"]
    check_of = {"offline": "offline", "dying": "offline", "stuck": "stuck"}
    # (entity, channel, check) -> when its alert fired and until when (one alert per entity and channel:
    # a second device's fault while it fires is covered by it)
    by_dev: dict[tuple[str, str, str], list[tuple[float, float]]] = {}
    for entity, rule, t_on, t_off in firing:
        _, check, channel = rule.split(".", 2)
        by_dev.setdefault((entity, channel, check), []).append((t_on, t_off))
    matched: set[tuple[str, str, str, float]] = set()
    by_kind: dict[str, dict[str, Any]] = {}
    for f in faults:
        ch = cfg.channel(f["channel"])
        iv, t0 = float(f["interval_s"]), ts(f["start"])
        t1 = ts(f["end"]) if f["end"] else end
        check = check_of[f["kind"]]
        key = (f["entity_id"], f["channel"], check)
        spans = [(a, b) for a, b in by_dev.get(key, []) if a <= t1 + 2 * iv and b >= t0]
        matched.update((*key, a) for a, _ in spans if a >= t0 - iv)
        hits = [max(a, t0) for a, _ in spans]
        if check == "stuck":
            detectable = ch.max_stuck_min is not None and t1 - t0 > ch.max_stuck_min * 60 + iv
            bound = (ch.max_stuck_min or 0) * 60 + 2 * iv + COMMIT_S
        else:
            detectable = t1 - t0 >= 2 * iv
            bound = 2 * iv + COMMIT_S
        k = by_kind.setdefault(f["kind"], {"faults": 0, "detectable": 0, "detected": 0, "delays": [], "bounds": []})
        k["faults"] += 1
        if detectable:
            k["detectable"] += 1
            if hits:
                k["detected"] += 1
                k["delays"].append(max(0.0, min(hits) - t0))
                k["bounds"].append(bound)
    out: dict[str, Any] = {}
    for kind, k in sorted(by_kind.items()):
        ds = k["delays"]
        out[kind] = {
            "faults": k["faults"],
            "detectable": k["detectable"],
            "recall": k["detected"] / k["detectable"] if k["detectable"] else 1.0,
            "delay_median_min": round(statistics.median(ds) / 60, 1) if ds else None,
            "delay_max_min": round(max(ds) / 60, 1) if ds else None,
            "within_bound": f"{sum(d <= b for d, b in zip(ds, k['bounds'], strict=True))}/{len(ds)}",
        }
    false = [(e, c, k, t) for (e, c, k), spans in by_dev.items() for t, _ in spans if (e, c, k, t) not in matched]
    return {
        "device_days": device_days,
        "by_kind": out,
        "false_alarms": len(false),
        "false_per_1000_device_days": round(1000 * len(false) / device_days, 3) if device_days else None,
        "false_by_rule": dict(Counter(f"device.{k}.{c}" for _, c, k, _ in false).most_common()),
        "false_after_kill": sum(1 for *_, t in false if killed and killed <= t <= killed + 3600),
    }
