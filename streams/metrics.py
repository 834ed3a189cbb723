"""The worker's Prometheus metrics, served at ``/metrics`` (see ``streams/pages.py``)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

EVENTS_IN = Counter("riskwatch_events_total", "Input events by topic and result", ["topic", "result"])
ALERTS_OUT = Counter("riskwatch_alert_revisions_total", "Alert revisions published", ["level", "status"])
BATCH_SECONDS = Histogram("riskwatch_batch_seconds", "Time to process one batch end to end")
EVICTED = Counter("riskwatch_evicted_entities_total", "Entity states evicted after entity_ttl_days of silence")
SINK_SECONDS = Histogram("riskwatch_sink_write_seconds", "ClickHouse write latency per batch of the alert sink")
COMMIT_SECONDS = Histogram("riskwatch_commit_seconds", "Time to commit processed batches: ClickHouse rows, changelog, acknowledgements")
COMMIT_EVENTS = Counter("riskwatch_committed_events_total", "Input events committed (rows stored, state in the changelog, offsets acknowledged)")
GC_PAUSE = Histogram("riskwatch_gc_pause_seconds", "Python garbage-collection pauses (they stall the event loop)",
                     ["generation"], buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
LOOP_LAG = Histogram("riskwatch_event_loop_lag_seconds",
                     "How late the worker's event loop woke a 0.25 s timer: how long a ready batch, alert or "
                     "/query waited for work holding the loop (a scan, a GC pause, a saturated core)",
                     buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
