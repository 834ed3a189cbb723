"""``riskwatch eval simulated --seed N``: the simulator's incidents through the production processor.

The simulator (``riskwatch.tools.simulator``) generates a county's streams with injected incidents and
their ground truth. Every message goes through the same code as the pipeline — the edge decoder
(``streams.engine.ingest.Decoder``) and :class:`streams.engine.dispatch.Processor` with one
:class:`streams.engine.state.EntityState` per entity — only Kafka and ClickHouse are left out. Each
message's record timestamp is its send time in the simulation (``Simulator.sim_time``), which is also
the processor's clock, so ``updated_at`` is simulated time; a skewed gateway's readings carry an
``occurred_at`` off it.

Alert revisions are collected; the first revision of each alert id is mapped back to the incidents
with :func:`riskwatch.tools.simulator.incidents.match_alerts`. Reported:

* recall over injected incidents, median time to detect (from incident start, and from the first
  reading above the limit for limit incidents);
* alerts matching no incident, split fairly into

  - **rule alerts on background facts** (``legit``): a rule that by regulation opens a case on one
    event — a failed inspection, a complaint of a category that always opens a case, an elevator
    fault code reported by the device. The simulator emits these in its normal background; an
    alert on them is the product doing its job, not a false alert;
  - **device-fault detections**: a ``model.risk`` alert whose strongest signal is ``silence.<channel>``
    while a labelled gap or dying sensor of that entity and channel is silent (issue 21: a silent
    safety-critical channel raises the risk on purpose), reported with device health;
  - **false alerts**: everything else (model alerts, fused ``model.risk``, sensor limit breaches
    and AI-video detections outside incidents), per 1,000 entity-days.

Every unmatched alert is also listed by rule so the lead can judge the split.

Device health (``streams/engine/health.py``) is evaluated on its own against the simulator's labelled
device faults (``record: device_fault``: gateway gaps, stuck values, dying sensors): the offline scan
runs every ``SCAN_S`` of record time against the partition's progress as the worker's timer takes it
(the latest ``occurred_at`` processed, capped at :func:`streams.engine.health.progress_of` of the
entities' latest device readings; the whole county is one partition here), and per fault kind it
reports recall over the *detectable* faults (a gap of at least 2 × the interval; a stuck value longer
than its channel allows plus one interval), the detection delay (offline: due within 2 × interval +
the commit interval of the gap's start) and false alarms per 1,000 device-days. A worker kill -9 with
catch-up is injected half-way: every state goes back to a snapshot taken ``KILL_REPLAY`` earlier (what
the changelog held) and the events since are processed again; device alarms in the hour after it that
match no fault are reported (must be 0). Device-health alerts are left out of the alert metrics above.

Skewed gateway clocks (``record: clock_skew``) are judged per source, as production does: the per-minute
counts of ``riskwatch_source_events_total{result="ok"|"skewed"}`` (skewed: ``|occurred_at − record
timestamp|`` beyond ``devices.yaml`` ``sources.clock_skew_s``) go through ``RiskwatchSourceClockSkew``
emulated (``deploy/prometheus/rules.yml``: more than 10 % skewed over 15 min, for 15 min). Recall is over
periods beyond the bound lasting 20 min or more; a firing outside every period is a false alarm. Device
alarms and false alerts on a skewed source's entities during its skew are counted apart (must be 0).
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
from schemas.events import DeadLetter, SensorReading
from streams.engine import health
from streams.engine.dispatch import Processor
from streams.engine.ingest import Batch, Decoder
from streams.engine.state import EntityState


def ts(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


START = datetime(2025, 3, 3, 0, 0, tzinfo=CST)  # fixed: same seed → same numbers, any day it runs
DAYS = 3.0
GRACE = timedelta(hours=2)
SCAN_S = 60.0  # the offline scan's period in event time (the worker's timer, at most the lifecycle tick)
KILL_REPLAY = 900.0  # the kill -9: states go back to a snapshot this much event time earlier, then replay
SKEW_WINDOW, SKEW_FOR, SKEW_SHARE = 15, 15, 0.1  # RiskwatchSourceClockSkew: rate window, for (minutes), share
COMMIT_S = 5.0  # the commit interval (settings.commit_interval_seconds) in the detection-delay bound

#: Rules that by regulation open a case from one background event (see the module docstring).
LEGIT_BACKGROUND = ("rule.inspection", "rule.complaint.", "rule.sensor.elevator_fault")


def _is_legit(rule: str) -> bool:
    return rule.startswith(LEGIT_BACKGROUND)


def _silence(a: dict) -> bool:
    """A risk alert that a silent safety-critical sensor contributed to (device health: reported there)."""
    return a["rule"] == "model.risk" and any(s.startswith("silence.") for s in a.get("signals", ()))


def _labelled_silence(a: dict, truth: list[dict]) -> bool:
    t = ts(a["first_seen"])
    channels = {s.removeprefix("silence.") for s in a["signals"] if s.startswith("silence.")}
    return any(
        f.get("record") == "device_fault"
        and f["kind"] in ("offline", "dying")
        and f["entity_id"] == a["entity_id"]
        and f["channel"] in channels
        and ts(f["start"]) <= t <= (ts(f["end"]) + 2 * f["interval_s"] if f["end"] else float("inf"))
        for f in truth
    )


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
    replay: list[tuple[str, int, Any, float]] = []
    killed = [0.0]
    part_time = [0.0]  # the partition's latest occurred_at processed since the worker took it
    latest: dict[str, tuple[str, float]] = {}  # entity -> (source, its latest device reading)
    src_ok: Counter[tuple[str, int]] = Counter()  # (source, minute of record time) -> events
    src_skewed: Counter[tuple[str, int]] = Counter()
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

    def part_progress() -> float:
        """The partition's event-time progress as the runtime's offline timer takes it (streams/runtime/timers.py):
        the latest occurred_at processed since the worker took it, capped at its sources' devices' quorum."""
        by_src: dict[str, list[float]] = {}
        for src, t_dev in latest.values():
            by_src.setdefault(src, []).append(t_dev)
        return min(part_time[0], health.progress_of(by_src)) if part_time[0] and by_src else 0.0

    def process(topic: str, off: int, ev: Any, t_rec: float) -> None:
        nonlocal next_scan
        while next_scan <= t_rec:  # the worker's offline timer (its clock: the record times here)
            p = part_progress()
            now[0] = next_scan
            if p:
                for eid, est in states.items():
                    if est.health:
                        collect(health.scan(proc.cx, proc.desk, eid, est, p).alerts)
            next_scan += SCAN_S
        now[0] = t_rec
        st = states.get(ev.entity_id)
        if st is None:
            st = states[ev.entity_id] = EntityState()
        out = proc.process(ev, st, (topic, 0, off))
        if out.rejected:
            rejected[out.rejected[:60]] += 1
        elif not out.redelivered:  # riskwatch_source_events_total{result=ok|skewed}, per minute of record time
            minute = int(t_rec // 60)
            src_ok[(ev.source, minute)] += 1
            if health.clock_skewed(out.at, t_rec):
                src_skewed[(ev.source, minute)] += 1
            part_time[0] = max(part_time[0], out.at)
            if isinstance(ev, SensorReading) and ev.entity_id != "unknown":
                cur = latest.get(ev.entity_id)
                if cur is None or out.at > cur[1]:
                    latest[ev.entity_id] = (ev.source, out.at)
        collect(out.alerts)

    for topic, key, value in sim.events():
        off = offsets[topic]
        offsets[topic] += 1
        ev = decoder.decode(wire_topic(topic, value, sim.catalog), 0, off, key, value)  # inspections: the dept's topic
        if isinstance(ev, DeadLetter):
            rejected[ev.error[:60]] += 1
            continue
        assert not isinstance(ev, Batch), "the simulator sends single readings here (gateway_batch=0)"
        t_rec = sim.sim_time  # the record's timestamp: its send time (occurred_at is off it for a skewed clock)
        if snapshot is None and not killed[0] and t_rec >= kill_at - KILL_REPLAY:  # the last commit before the kill
            snapshot = {eid: st.dumps() for eid, st in states.items()}
            snap_scan = next_scan
        if snapshot is not None and t_rec >= kill_at:  # kill -9: the changelog's states, then catch up
            states.clear()
            states.update({eid: EntityState.loads(b) for eid, b in snapshot.items()})
            next_scan, snapshot, killed[0] = snap_scan, None, t_rec
            part_time[0] = 0.0  # a new worker: no progress until it processed something
            latest.clear()
            for eid, st in states.items():
                if st.health:
                    last = max(st.health.values(), key=lambda rec: rec.last_t)
                    latest[eid] = (last.source, last.last_t)
            for args in replay:
                process(*args)
            replay.clear()
        if snapshot is not None:
            replay.append((topic, off, ev, t_rec))
        process(topic, off, ev, t_rec)
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
    end = start.timestamp() + days * 86400
    dev = device_metrics(truth, device_firing, sim.n_streams * days, killed[0], end)
    skew = skew_metrics(truth, src_ok, src_skewed, killed[0], sim.n_streams * days)
    dev["by_kind"]["skew"] = skew.pop("by_kind")
    dev.update(skew)
    # what a skewed clock caused besides its own alarm: device alarms and risk alerts on its entities
    skew_spans = [
        (r["source"], ts(r["start"]), ts(r["end"]) + GRACE.total_seconds())
        for r in truth
        if r.get("record") == "clock_skew" and abs(r["skew_s"]) > health.skew_bound()
    ]
    src_of = {eid: src for eid, (src, _) in latest.items()}
    on_skewed = lambda eid, t: any(src_of.get(eid) == s and a <= t <= b for s, a, b in skew_spans)  # noqa: E731
    dev["skewed_false_device_alarms"] = sum(1 for e, _, _, t in dev.pop("false_list") if on_skewed(e, t))
    m = match_alerts(truth, [a for a in first_rev.values() if not a["rule"].startswith("device.")], grace=GRACE)
    unmatched = m["false_alerts"]
    legit = [a for a in unmatched if _is_legit(a["rule"])]
    # a risk alert whose strongest signal is the silence of a safety-critical channel while a labelled gap or
    # dying sensor of that entity and channel was silent: the detection of that device fault, not a false alert;
    # one with that silence only among its signals stays counted (its strongest signal is the process's)
    silent = [a for a in unmatched if _silence(a) and _labelled_silence(a, truth)]
    detected = [a for a in silent if a["why"].startswith("silence.")]
    false = [a for a in unmatched if not _is_legit(a["rule"]) and a not in detected]
    dev["risk_alerts_with_silence"] = len(silent)
    dev["risk_alerts_with_silence_top"] = len(detected)
    dev["skewed_false_alerts"] = sum(1 for a in false if on_skewed(a["entity_id"], ts(a["first_seen"])))
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
    print(
        f"risk alerts with silence    {d['risk_alerts_with_silence']} (a labelled silent safety-critical sensor "
        f"contributed; {d['risk_alerts_with_silence_top']} with it as the top signal: detections of that fault, "
        "not false; the others are counted above)"
    )
    print(f"clock skew: rule fired      {d['skew_firing']}")
    print(
        f"skew false alarms           {d['skew_false_alarms']} = {d['skew_false_per_1000_device_days']} per 1,000 "
        f"device-days, {d['skew_false_after_kill']} in the hour after the kill -9"
    )
    print(
        f"on skewed sources' entities {d['skewed_false_device_alarms']} false device alarms, "
        f"{d['skewed_false_alerts']} false alerts (during the skew + {GRACE})"
    )
    return r


def device_metrics(
    truth: list[dict], firing: list[tuple[str, str, float, float]], device_days: float, killed: float, end: float
) -> dict[str, Any]:
    """Device-health alerts against the labelled device faults (see the module docstring)."""
    cfg = load_health()
    faults = [f for f in truth if f.get("record") == "device_fault"]
    check_of = {"offline": "offline", "dying": "offline", "stuck": "stuck"}
    # (entity, channel, check) -> when its alert fired and until when (one alert per entity and channel:
    # a second device's fault while it fires is covered by it)
    by_dev: dict[tuple[str, str, str], list[tuple[float, float]]] = {}
    for entity, rule, t_on, t_off in firing:
        _, check, channel = rule.split(".", 2)
        by_dev.setdefault((entity, channel, check), []).append((t_on, t_off))
    matched: set[tuple[str, str, str, float]] = set()
    late: list[dict] = []  # detected after the bound: which, for the lead to judge
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
                if k["delays"][-1] > bound:
                    late.append({**f, "delay_min": round(k["delays"][-1] / 60, 1)})
    out: dict[str, Any] = {}
    for kind, k in sorted(by_kind.items()):
        ds = k["delays"]
        out[kind] = _kind_row(k, sum(d <= b for d, b in zip(ds, k["bounds"], strict=True)))
    false = [(e, c, k, t) for (e, c, k), spans in by_dev.items() for t, _ in spans if (e, c, k, t) not in matched]
    return {
        "device_days": device_days,
        "by_kind": out,
        "false_alarms": len(false),
        "false_per_1000_device_days": round(1000 * len(false) / device_days, 3) if device_days else None,
        "false_by_rule": dict(Counter(f"device.{k}.{c}" for _, c, k, _ in false).most_common()),
        "false_after_kill": sum(1 for *_, t in false if killed and killed <= t <= killed + 3600),
        "false_list": false,
        "false_detail": [(e, f"device.{k}.{c}", datetime.fromtimestamp(t, CST).isoformat()) for e, c, k, t in false],
        "late": late,
    }


def skew_metrics(
    truth: list[dict], ok: Counter[tuple[str, int]], skewed: Counter[tuple[str, int]], killed: float, device_days: float
) -> dict[str, Any]:
    """Skewed gateway clocks against ``RiskwatchSourceClockSkew`` (deploy/prometheus/rules.yml) emulated on the
    per-minute counts of ``riskwatch_source_events_total``: more than ``SKEW_SHARE`` of a source's events
    skewed over ``SKEW_WINDOW`` minutes, held for ``SKEW_FOR`` minutes. A period is detectable when its skew
    exceeds the bound (devices.yaml ``sources.clock_skew_s``) and it lasts ``SKEW_FOR`` + 5 minutes."""
    bound = health.skew_bound()
    periods = [r for r in truth if r.get("record") == "clock_skew"]
    firing: list[tuple[str, float]] = []  # (source, when the rule fires)
    for src in sorted({s for s, _ in skewed}):
        mins = sorted(m for s, m in ok if s == src)
        held_since: int | None = None
        fired = False
        for m in range(mins[0], mins[-1] + 1):
            n_ok = sum(ok.get((src, x), 0) for x in range(m - SKEW_WINDOW + 1, m + 1))
            n_sk = sum(skewed.get((src, x), 0) for x in range(m - SKEW_WINDOW + 1, m + 1))
            if n_ok and n_sk / n_ok > SKEW_SHARE:
                held_since = m if held_since is None else held_since
                if not fired and m - held_since >= SKEW_FOR:
                    firing.append((src, (m + 1) * 60.0))
                    fired = True
            else:
                held_since, fired = None, False
    matched: set[int] = set()
    k: dict[str, Any] = {"faults": len(periods), "detectable": 0, "detected": 0, "delays": []}
    for r in periods:
        t0, t1 = ts(r["start"]), ts(r["end"])
        hits = [i for i, (s, t) in enumerate(firing) if s == r["source"] and t0 <= t <= t1 + SKEW_WINDOW * 60]
        matched.update(hits)
        if abs(r["skew_s"]) > bound and t1 - t0 >= (SKEW_FOR + 5) * 60:
            k["detectable"] += 1
            if hits:
                k["detected"] += 1
                k["delays"].append(min(firing[i][1] for i in hits) - t0)
    false = [f for i, f in enumerate(firing) if i not in matched]
    return {
        "by_kind": _kind_row(k, sum(d <= (SKEW_FOR + 5) * 60 for d in k["delays"])),
        "skew_periods": [
            {"source": r["source"], "skew_min": r["skew_s"] / 60, "start": r["start"], "end": r["end"]} for r in periods
        ],
        "skew_firing": [(s, datetime.fromtimestamp(t, CST).isoformat()) for s, t in firing],
        "skew_false_alarms": len(false),
        "skew_false_per_1000_device_days": round(1000 * len(false) / device_days, 3) if device_days else None,
        "skew_false_after_kill": sum(1 for _, t in false if killed and killed <= t <= killed + 3600),
    }


def _kind_row(k: dict[str, Any], within: int) -> dict[str, Any]:
    """One fault kind's row: faults, detectable, recall, delay median/max (min), detections within the bound."""
    ds = k["delays"]
    return {
        "faults": k["faults"],
        "detectable": k["detectable"],
        "recall": k["detected"] / k["detectable"] if k["detectable"] else 1.0,
        "delay_median_min": round(statistics.median(ds) / 60, 1) if ds else None,
        "delay_max_min": round(max(ds) / 60, 1) if ds else None,
        "within_bound": f"{within}/{len(ds)}",
    }
