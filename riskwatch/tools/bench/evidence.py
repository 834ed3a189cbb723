"""What evidence bundles and the audit chain cost per event: ``riskwatch bench-evidence``.

The processor's work per event (decode excluded: it is the same either way) plus serializing the
changed entity states as the commit does (every ``BATCH`` events, each changed state once), over
the same simulated events, with the audit chain on and off (``Processor(evidence=...)``, the
setting ``RISKWATCH_AUDIT_CHAIN``). Rounds alternate on/off so a busy shared machine slows both
alike; the medians and their ratio are printed as JSON, with the alerts, bundles and chained rows
produced and the median pickled entity state with and without.

For the whole worker (Kafka, ClickHouse, commit) run ``riskwatch bench-paced`` twice, the second
time with ``RISKWATCH_AUDIT_CHAIN=false``.
"""

from __future__ import annotations

import json
import statistics
import sys
import time

from riskwatch.domain.county import load_county
from riskwatch.tools.bench import pipeline as B

BATCH = 5000  # events per commit snapshot (the worker's batch size)


def _decode(evs):
    from schemas.events import DeadLetter
    from streams.engine.ingest import Decoder

    county = load_county()
    dec = Decoder(county.catalog)
    out = []
    for i, (topic, key, value) in enumerate(evs):
        ev = dec.decode(topic, 0, i, key, value)
        if not isinstance(ev, DeadLetter):
            out.append((topic, key, ev))
    return county, out


def _one_run(county, decoded, evidence: bool) -> dict:
    from streams.engine.dispatch import Processor
    from streams.engine.state import EntityState

    p = Processor.from_county(county, evidence=evidence, clock=lambda: 0.0)
    states: dict[bytes, EntityState] = {}
    dirty: set[bytes] = set()
    alerts = bundles = rows = 0
    t0 = time.process_time()
    for i, (topic, key, ev) in enumerate(decoded):
        st = states.get(key)
        if st is None:
            st = states[key] = EntityState()
        out = p.process(ev, st, (topic, 0, i))
        alerts += len(out.alerts)
        bundles += len(out.evidence)
        rows += len(out.transitions)
        dirty.add(key)
        if len(dirty) and (i + 1) % BATCH == 0:
            for k in dirty:
                states[k].dumps()
            dirty.clear()
    for k in dirty:
        states[k].dumps()
    cpu = time.process_time() - t0
    sizes = [len(st.dumps()) for st in states.values()]
    return {
        "us_per_event": cpu / len(decoded) * 1e6,
        "alerts": alerts,
        "bundles": bundles,
        "history_rows": rows,
        "state_bytes_median": statistics.median(sizes),
        "state_bytes_mean": statistics.fmean(sizes),
    }


def run(events: int = 100_000, entities: int = 1_000, rounds: int = 3, seed: int = 7) -> dict:
    print(f"generating {events:,} simulated events for ~{entities:,} entities ...", file=sys.stderr)
    county, decoded = _decode(B._events(events, entities, seed))
    on: list[dict[str, float]] = []
    off: list[dict[str, float]] = []
    for r in range(rounds):
        for evidence, acc in ((False, off), (True, on)) if r % 2 == 0 else ((True, on), (False, off)):
            res = _one_run(county, decoded, evidence)
            acc.append(res)
            print(
                f"round {r + 1}/{rounds} audit_chain={'on ' if evidence else 'off'}: {res['us_per_event']:.1f} "
                "µs/event",
                file=sys.stderr,
            )
    med = lambda xs, k: statistics.median(x[k] for x in xs)  # noqa: E731
    result = {
        "events": len(decoded),
        "rounds": rounds,
        "us_per_event_without": round(med(off, "us_per_event"), 1),
        "us_per_event_with": round(med(on, "us_per_event"), 1),
        "ratio_with_over_without": round(med(on, "us_per_event") / med(off, "us_per_event"), 3),
        "alerts": on[0]["alerts"],
        "evidence_bundles": on[0]["bundles"],
        "chained_history_rows": on[0]["history_rows"],
        "state_bytes_median_without": off[0]["state_bytes_median"],
        "state_bytes_median_with": on[0]["state_bytes_median"],
        "state_bytes_mean_without": round(off[0]["state_bytes_mean"]),
        "state_bytes_mean_with": round(on[0]["state_bytes_mean"]),
    }
    print(json.dumps(result, indent=2))
    return result
