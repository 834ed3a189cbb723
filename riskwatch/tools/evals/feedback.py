"""``riskwatch eval feedback --seed N``: do 误报 labels teach the online models? The two halves, with a control.

The simulator's county runs through the production processor (as ``riskwatch eval simulated``), with the
per-stream model alerts on (``model.sensor.<channel>``, fusion.yaml ``sensor_model_alerts``) so that the stream
detectors' own mistakes reach departments. The simulated departments know the ground truth: the lead department
answers every alert that fired ``LABEL_DELAY`` later with 已处置 and an outcome — 属实 when an injected incident of
the entity covers the alert's first_seen (``[start, end + grace]``, as ``match_alerts``), else 误报 with reason
``sensor_fault`` (the feedback handler raises that device-channel detector's threshold).

Two runs on the same seed:

* **learning**: the labels as above;
* **control**: the same labels with reason ``duplicate``, which the model does not learn from
  (false_alarm_reasons.yaml ``learn: false``): same feedback, same life cycle, no learning.

Reported per half of the simulated time (by the alert's first_seen, and the incident's start): false alerts
(matching no incident, rule alerts on background facts excluded as in ``eval simulated``) per 1,000 entity-days,
and recall over the incidents that started in that half — the false-alarm rate falls at equal recall when the
second half's recall is unchanged.
"""

from __future__ import annotations

import dataclasses
import heapq
import sys
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from riskwatch.domain.county import load_county
from riskwatch.tools.evals.simulated import GRACE, START, _is_legit
from riskwatch.tools.simulator import SimConfig, Simulator
from riskwatch.tools.simulator.county import CST
from riskwatch.tools.simulator.streams import wire_topic
from schemas.events import DeadLetter, DisposalFeedback, DisposalOutcome
from streams.engine.dispatch import Processor
from streams.engine.ingest import Batch, Decoder
from streams.engine.state import EntityState

DAYS = 4.0
LABEL_DELAY = timedelta(hours=1)  # the on-site check's answer after the alert fired


def run(seed: int = 7, days: float = DAYS, learn: bool = True, scale: float = 1.0) -> dict[str, Any]:
    """One run; ``learn=False`` is the control (labels the model does not learn from)."""
    start = START
    cfg = SimConfig(seed=seed, days=days, scale=scale, bad_rate=0.0, start=start, now=start + timedelta(days=days))
    sim = Simulator(cfg)
    county = load_county()
    county = dataclasses.replace(county, fusion=county.fusion.model_copy(update={"sensor_model_alerts": True}))
    decoder = Decoder(county.catalog)
    now = [start.timestamp()]
    proc = Processor.from_county(county, clock=lambda: now[0])
    states: dict[str, EntityState] = {}
    incidents: dict[str, list[tuple[float, float]]] = {}
    for inc in sim.incidents:
        incidents.setdefault(inc.entity.entity_id, []).append((inc.start, inc.end + GRACE.total_seconds()))
    alerts: dict[str, dict[str, Any]] = {}
    queue: list[tuple[float, str, DisposalFeedback]] = []
    labels: Counter[str] = Counter()
    rejected: Counter[str] = Counter()
    offsets: Counter[str] = Counter()
    reason = "sensor_fault" if learn else "duplicate"

    def real(entity_id: str, t: float) -> bool:
        return any(a <= t <= b for a, b in incidents.get(entity_id, ()))

    def process(ev: Any, where: tuple[str, int, int]) -> None:
        st = states.get(ev.entity_id)
        if st is None:
            st = states[ev.entity_id] = EntityState()
        out = proc.process(ev, st, where)
        if out.rejected:
            rejected[out.rejected[:60]] += 1
        for a in out.alerts:
            if a.alert_id in alerts or a.status.value != "firing":
                continue
            t0 = a.first_seen.timestamp()
            ok = real(a.entity_id, t0) or _is_legit(a.rule)  # a regulation case on a background fact is true
            alerts[a.alert_id] = {"entity_id": a.entity_id, "rule": a.rule, "t": t0, "real": ok}
            o = (
                DisposalOutcome(verdict="confirmed", measures=["rectify"])
                if ok
                else DisposalOutcome(verdict="false_alarm", reason=reason)
            )
            at = a.updated_at + LABEL_DELAY
            fb = DisposalFeedback(
                event_id=f"fb-eval-{a.alert_id}",
                entity_id=a.entity_id,
                occurred_at=at,
                source=a.lead_department,
                alert_id=a.alert_id,
                department=a.lead_department,
                status="disposed",
                result="核查完毕",
                outcome=o,
            )
            heapq.heappush(queue, (at.timestamp(), fb.event_id, fb))

    for topic, key, value in sim.events():
        off = offsets[topic]
        offsets[topic] += 1
        ev = decoder.decode(wire_topic(topic, value, sim.catalog), 0, off, key, value)
        if isinstance(ev, DeadLetter):
            continue
        assert not isinstance(ev, Batch)
        t = ev.occurred_at.timestamp()
        while queue and queue[0][0] <= t:
            tf, _, fb = heapq.heappop(queue)
            now[0] = tf
            labels[fb.outcome.verdict.value if fb.outcome else ""] += 1
            off_fb = offsets["events.feedback"]
            offsets["events.feedback"] += 1
            process(fb, ("events.feedback", 0, off_fb))
        now[0] = t
        process(ev, (topic, 0, off))
    registered = sum(1 for s in states.values() if s.registered)
    mid = start.timestamp() + days * 86400 / 2
    halves: list[dict[str, Any]] = []
    for lo, hi in ((start.timestamp(), mid), (mid, start.timestamp() + days * 86400)):
        fa = [a for a in alerts.values() if lo <= a["t"] < hi and not a["real"] and not _is_legit(a["rule"])]
        incs = [i for i in sim.incidents if lo <= i.start < hi and i.end + GRACE.total_seconds() <= hi + 86400]
        det = [
            i
            for i in incs
            if any(
                a["real"]
                and a["entity_id"] == i.entity.entity_id
                and i.start <= a["t"] <= i.end + GRACE.total_seconds()
                for a in alerts.values()
            )
        ]
        ed = registered * days / 2
        halves.append(
            {
                "false_alerts": len(fa),
                "false_per_1000_entity_days": round(1000 * len(fa) / ed, 2) if ed else None,
                "false_by_rule": dict(Counter(a["rule"] for a in fa).most_common(6)),
                "incidents": len(incs),
                "detected": len(det),
                "recall": len(det) / len(incs) if incs else None,
            }
        )
    return {
        "seed": seed,
        "days": days,
        "learn": learn,
        "entities": registered,
        "alerts": len(alerts),
        "labels": dict(labels),
        "rejected": dict(rejected),
        "halves": halves,
    }


def run_cli(seed: int, days: float = DAYS) -> dict[str, Any]:
    res = {}
    for learn in (True, False):
        name = "learning" if learn else "control"
        print(f"simulating {days:g} days (seed {seed}), {name} run…", file=sys.stderr, flush=True)
        t0 = datetime.now(CST)
        r = res[name] = run(seed, days, learn)
        secs = (datetime.now(CST) - t0).total_seconds()
        print(f"{name} ({secs:.0f}s): {r['alerts']} alerts, labels {r['labels']}, entities {r['entities']}")
        for i, h in enumerate(r["halves"], 1):
            rec = "n/a" if h["recall"] is None else f"{h['recall']:.0%} ({h['detected']}/{h['incidents']})"
            print(
                f"  half {i}: false alarms {h['false_alerts']:4d} = {h['false_per_1000_entity_days']:6.2f} "
                f"per 1,000 entity-days, recall {rec}; by rule {h['false_by_rule']}"
            )
        if r["rejected"]:
            print(f"  refused: {r['rejected']}")
    return res
