"""The worker's Prometheus metrics, served at ``/metrics`` (see ``streams/runtime/pages.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

if TYPE_CHECKING:
    from streams.runtime.store import StateCache

EVENTS_IN = Counter("riskwatch_events_total", "Input events by topic and result", ["topic", "result"])
ALERTS_OUT = Counter("riskwatch_alert_revisions_total", "Alert revisions published", ["level", "status"])
BATCH_SECONDS = Histogram("riskwatch_batch_seconds", "Time to process one batch end to end")
EVICTED = Counter("riskwatch_evicted_entities_total", "Entity states evicted after entity_ttl_days of silence")
SINK_SECONDS = Histogram("riskwatch_sink_write_seconds", "ClickHouse write latency per batch of the alert sink")
COMMIT_SECONDS = Histogram(
    "riskwatch_commit_seconds", "Time to commit processed batches: ClickHouse rows, changelog, acknowledgements"
)
COMMIT_EVENTS = Counter(
    "riskwatch_committed_events_total",
    "Input events committed (rows stored, state in the changelog, offsets acknowledged)",
)
GC_PAUSE = Histogram(
    "riskwatch_gc_pause_seconds",
    "Python garbage-collection pauses (they stall the event loop)",
    ["generation"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
LOOP_LAG = Histogram(
    "riskwatch_event_loop_lag_seconds",
    "How late the worker's event loop woke a 0.25 s timer: how long a ready batch, alert or "
    "/query waited for work holding the loop (a scan, a GC pause, a saturated core)",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


class StateCacheMetrics:
    """The live-object cache in front of the state store (``streams/runtime/store.py``), read at scrape time:
    nothing is counted per event. The hit ratio says whether ``RISKWATCH_STATE_CACHE_ENTRIES`` fits
    the entities this worker serves; ``thrashing`` 1 means they do not and the cache keeps none."""

    cache: StateCache | None = None  # the worker's StateCache, set when the worker is built

    def collect(self) -> Iterator[Metric]:
        c = self.cache
        if c is None:
            return
        lookups = CounterMetricFamily(
            "riskwatch_state_cache_lookups",
            "Entity-state lookups by result (miss: unpickled from the local store)",
            labels=["result"],
        )
        lookups.add_metric(["hit"], c.hits)
        lookups.add_metric(["miss"], c.misses)
        yield lookups
        yield GaugeMetricFamily("riskwatch_state_cache_entries", "Live entity states held", value=c.entries)
        yield GaugeMetricFamily(
            "riskwatch_state_cache_thrashing",
            "1: the entities do not fit the cache, which keeps none until the next rebalance",
            value=int(c.thrashing),
        )


STATE_CACHE = StateCacheMetrics()
REGISTRY.register(STATE_CACHE)
