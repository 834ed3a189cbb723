"""Cost benchmark of the production sensor detector: µs per ``update`` and pickled state bytes.

Run as ``python -m riskwatch.tools.evals.bench_sensor``.
"""

from __future__ import annotations

import math
import pickle
import random
import statistics
import time

from detectors.sensor import SensorAnomaly


def _stream(n: int, seed: int) -> list[tuple[float, float]]:
    rng = random.Random(seed)
    t0 = 1_700_000_000.0
    out = []
    for i in range(n):
        x = 20 + 5 * math.sin(2 * math.pi * i / 288) + rng.gauss(0, 0.5)
        if rng.random() < 0.002:
            x += rng.choice([-1, 1]) * rng.uniform(5, 50)
        out.append((x, t0 + 300 * i + rng.choice([0, 0, 0, 1, -1])))
    return out


def main(n_events: int = 20_000, n_streams: int = 5, batch: int = 100) -> dict:
    per_event = []
    sizes = []
    for k in range(n_streams):
        det = SensorAnomaly()
        events = _stream(n_events, seed=k)
        update = det.update
        for j in range(0, n_events, batch):
            chunk = events[j : j + batch]
            t1 = time.perf_counter()
            for x, t in chunk:
                update(x, t)
            per_event.append((time.perf_counter() - t1) / len(chunk) * 1e6)
        sizes.append(len(pickle.dumps(det)))
    res = {
        "median_us_per_event": statistics.median(per_event),
        "p95_us_per_event": sorted(per_event)[int(0.95 * (len(per_event) - 1))],
        "state_bytes_per_stream_max": max(sizes),
        "state_bytes_per_stream_median": statistics.median(sizes),
    }
    print(
        f"SensorAnomaly.update: median {res['median_us_per_event']:.2f} µs/event "
        f"(p95 of {batch}-event batches {res['p95_us_per_event']:.2f} µs), "
        f"{n_streams} streams x {n_events} events"
    )
    print(
        f"pickled state: {res['state_bytes_per_stream_max']} bytes/stream (max), "
        f"{res['state_bytes_per_stream_median']:.0f} (median)"
    )
    return res


if __name__ == "__main__":
    main()
