"""The worker's Prometheus metrics, served at ``/metrics`` (see ``streams/runtime/pages.py``)."""

from __future__ import annotations

import time
from collections import Counter as Tally
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
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

# per source (vendor, gateway, system: an event's `source`; a dead letter's transport source or the
# `source` its payload claims): deploy/prometheus/rules.yml alarms a silent source and a source's
# garbage to that source's owner (streams/engine/health.py counts them per batch)
SOURCE_EVENTS = Counter(
    "riskwatch_source_events_total",
    "Input events per source: ok, dead (refused to the dead-letter topic), skewed (occurred_at off the "
    "Kafka record timestamp by more than devices.yaml sources.clock_skew_s; also counted as ok)",
    ["event_source", "result"],
)
SOURCE_LAST_SEEN = Gauge(
    "riskwatch_source_last_seen_timestamp_seconds",
    "Wall time this worker last processed an event from the source",
    ["event_source"],
)
MAX_SOURCES = 2000  # label values kept; later sources count as "other" (a flood of made-up names stays bounded)
_sources: set[str] = set()


def observe_sources(counts: Tally[tuple[str, str]]) -> None:
    """A batch's per-source counts on /metrics."""
    now = time.time()
    for (source, result), n in counts.items():
        if source not in _sources:
            if len(_sources) >= MAX_SOURCES:
                source = "other"
            _sources.add(source)
        SOURCE_EVENTS.labels(source, result).inc(n)
        if result != "dead":
            SOURCE_LAST_SEEN.labels(source).set(now)


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
