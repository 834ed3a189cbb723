"""riskwatch/tools/bench/pipeline.py helpers that turn the worker's /metrics into benchmark numbers."""

from __future__ import annotations

import math

from riskwatch.tools.bench.pipeline import _loop_lag, _percentile

INF = math.inf
BOUNDS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, INF)


def _cumulative(lags: list[float]) -> dict[float, float]:
    return {le: float(sum(1 for x in lags if x <= le)) for le in BOUNDS}


def test_loop_lag_counts_only_the_phase_and_finds_the_p99_bucket():
    before = _cumulative([0.3] * 50)  # earlier stalls must not count in the phase
    phase = [0.0005] * 190 + [0.02] * 7 + [0.2] * 3  # 200 probes: 3 woke 200 ms late
    after = _cumulative([0.3] * 50 + phase)
    r = _loop_lag(before, after)
    assert r["latency_phase_loop_lag_probes"] == 200
    assert r["latency_phase_loop_lag_over_100ms"] == 3
    assert r["latency_phase_loop_lag_ms_p99"] == 250  # the 99th percentile lies in the (100, 250] ms bucket


def test_loop_lag_without_probes_reports_nothing():
    same = _cumulative([0.001] * 5)
    assert _loop_lag(same, same) == {}


def test_percentile_picks_an_observed_value():
    xs = [float(i) for i in range(1, 101)]
    assert _percentile(xs, 0.50) == 51.0 and _percentile(xs, 0.99) == 100.0
    assert math.isnan(_percentile([], 0.5))


def test_paced_bench_splits_cpu_into_the_event_loop_python_threads_and_native_threads():
    from riskwatch.tools.bench.threads import thread_groups

    before = {"python3:100": 10.0, "python3:101": 2.0, "Unknown:102": 1.0}
    after = {"python3:100": 14.0, "python3:101": 3.0, "Unknown:102": 2.0, "MergeMutate:103": 1.0}  # 103 started later
    assert thread_groups(before, after, main_tid=100, seconds=4.0) == {
        "event_loop": 1.0,
        "python_threads": 0.25,
        "native_threads": 0.5,
    }


def test_paced_bench_reads_this_process_threads():
    import os
    import threading

    from riskwatch.tools.bench.threads import thread_cpu

    t = threading.Thread(target=lambda: None)
    t.start()
    t.join()
    cpu = thread_cpu(os.getpid())
    assert any(k.endswith(f":{os.getpid()}") for k in cpu)  # the main thread's tid is the pid
    assert all(v >= 0 for v in cpu.values())


def test_batch_metrics_and_histograms_are_read_from_the_workers_prometheus_text(monkeypatch):
    import io
    import urllib.request

    from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

    from riskwatch.settings import Settings
    from riskwatch.tools.bench import pipeline as bench

    reg = CollectorRegistry()
    events = Counter("riskwatch_events", "", ["topic", "result"], registry=reg)
    events.labels("events.sensor", "ok").inc(900)
    events.labels("events.video", "dead").inc(100)
    batch = Histogram("riskwatch_batch_seconds", "", registry=reg)
    for _ in range(4):
        batch.observe(0.05)
    commit = Histogram("riskwatch_commit_seconds", "", registry=reg)
    commit.observe(0.5)
    Counter("riskwatch_committed_events", "", registry=reg).inc(1000)
    gc = Histogram("riskwatch_gc_pause_seconds", "", ["generation"], registry=reg)
    gc.labels("2").observe(0.2)
    lag = Histogram("riskwatch_event_loop_lag_seconds", "", buckets=(0.01, 0.1, 1), registry=reg)
    for x in (0.005, 0.05, 0.5):
        lag.observe(x)
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: io.BytesIO(generate_latest(reg)))

    s = Settings()
    assert bench._batch_metrics(s) == {
        "batches": 4,
        "batch_events_mean": 250,
        "batch_ms_mean": 50.0,
        "commits": 1,
        "commit_events_mean": 1000,
        "commit_ms_mean": 500.0,
        "gc_full_collections": 1,
        "gc_full_ms_mean": 200.0,
    }
    assert bench._histogram(s, "riskwatch_event_loop_lag_seconds") == {0.01: 1.0, 0.1: 2.0, 1.0: 3.0, INF: 3.0}


def test_probes_replace_every_fiftieth_event_with_a_complaint_on_a_fresh_entity():
    import orjson

    from riskwatch.tools.bench.pipeline import PROBE_EVERY, with_probes

    evs = [("events.sensor", b"E%d" % i, b"{}") for i in range(2 * PROBE_EVERY)]
    out = with_probes(evs, "r1")
    probes = [x for x in out if x[0] == "events.complaint"]
    assert len(out) == len(evs) and len(probes) == 2
    assert [orjson.loads(v)["entity_id"] for _, _, v in probes] == ["Pr10000000", f"Pr1{PROBE_EVERY:07d}"]
    assert out[1] == evs[1]


def test_gateway_batches_group_one_entitys_readings_and_keep_other_events():
    import orjson

    from riskwatch.tools.bench.pipeline import _count, gateway_batches

    def r(i, e):
        return (
            "events.sensor",
            e.encode(),
            orjson.dumps(
                {
                    "schema_version": 1,
                    "event_id": f"{e}-{i}",
                    "entity_id": e,
                    "occurred_at": "2026-11-27T08:00:00+08:00",
                    "source": "iot-gw-01",
                    "device_id": "d1",
                    "channel": "storage_temp",
                    "unit": "C",
                    "value": 20.0 + i,
                }
            ),
        )

    evs = [r(i, "E1") for i in range(5)] + [("events.complaint", b"E2", b"{}")] + [r(i, "E2") for i in range(3)]
    out = gateway_batches(evs, 2)
    assert [(t, k) for t, k, _ in out] == [
        ("events.sensor", b"E1"),
        ("events.sensor", b"E1"),
        ("events.complaint", b"E2"),
        ("events.sensor", b"E2"),
        ("events.sensor", b"E1"),
        ("events.sensor", b"E2"),
    ]
    assert [len(orjson.loads(v)["readings"]) for t, _, v in out if t == "events.sensor"] == [2, 2, 2, 1, 1]
    assert _count(out) == _count(evs) == (9, 8)


def test_profile_top_reads_py_spy_collapsed_stacks(tmp_path):
    from riskwatch.tools.bench.pipeline import profile_top

    p = tmp_path / "p.txt"
    p.write_text(
        "main (a.py:1);work (streams/x.py:5);dumps (state.py:9) 30\n"
        "main (a.py:1);work (streams/x.py:5) 10\n"
        "main (a.py:1);idle (sel.py:2) 60\n"
    )
    top = profile_top(p, 2)
    assert top[0] == ("idle (sel.py)", 0.6, 0.6)
    assert top[1] == ("dumps (state.py)", 0.3, 0.3)
