"""``riskwatch gateway bench --compare``: the worker fed by the edge's batches vs. one reading per message.

Issue #20 item 6: the gateway and the MQTT bridge write ``sensor_batch`` messages (one per entity per
request or window), so the worker sees batches from real sources. This measures what that buys, in
one run, on the same readings:

1. the simulator's sensor readings (``--readings``, default 50,000, ~1,000 entities);
2. **edge**: as the HTTP gateway writes them. Each vendor platform (the readings' ``source``) posts
   its readings in requests of ``--request`` readings (100) in the order they happen, and the
   gateway's own :func:`edge.gateway.accept.messages` turns each request into one ``sensor_batch``
   per entity (the messages are produced directly, so the gateway's HTTP cost is not in the worker's
   number; ``riskwatch gateway bench`` measures that);
3. **single**: the same readings, one per Kafka message;
4. each set on topics of its own, filled first; then one worker consumes it: readings/s from its
   first committed offset to lag zero, and its CPU per reading.

Prints both readings/s and the ratio, and writes ``var/bench/edge_compare.json``.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import uuid
from collections import defaultdict
from pathlib import Path

from rich.progress import Progress

from edge.gateway.accept import messages
from riskwatch.domain.catalog import load_catalog
from riskwatch.settings import Settings
from riskwatch.tools.bench.pipeline import _events, _produce, _settings_for, _worker_phase
from schemas.events import SensorReading
from streams.runtime import topics as T


def edge_messages(readings: list[tuple[str, bytes, bytes]], request: int) -> list[tuple[str, bytes, bytes]]:
    """The gateway's Kafka messages for these readings posted by their vendors ``request`` at a time."""
    out: list[tuple[str, bytes, bytes]] = []
    pending: dict[str, list] = defaultdict(list)

    def post(source: str) -> None:
        for m in messages("sensor", pending.pop(source), source):
            out.append((m.topic, m.key or b"", m.value))

    for _, _, value in readings:
        ev = SensorReading.model_validate_json(value)
        pending[ev.source].append(ev)
        if len(pending[ev.source]) >= request:
            post(ev.source)
    for source in list(pending):
        post(source)
    return out


def run(base: Settings, n: int = 50_000, entities: int = 1_000, request: int = 100, seed: int = 7) -> dict:
    evs = [e for e in _events(int(n * 1.1) + 1000, entities, seed) if e[0] == "events.sensor"][:n]
    sets = {"edge": edge_messages(evs, request), "single": evs}
    run_id = uuid.uuid4().hex[:8]
    tmp = Path(tempfile.mkdtemp(prefix="riskwatch-edgecmp-"))
    result: dict = {"readings": len(evs), "request_readings": request, "entities": entities}
    try:
        for tag, msgs in sets.items():
            s = _settings_for(base, tmp, run_id, tag, base.partitions)
            T.ensure_topics(s, load_catalog(s.catalog_path))
            with Progress(transient=True) as progress:
                _produce(s, msgs, progress)
            r, procs = _worker_phase(s, len(evs), len(msgs), tmp, f"worker-{tag}")
            for w in procs:
                w.stop()
            r["messages"] = len(msgs)
            r["readings_per_message"] = round(len(evs) / len(msgs), 2)
            result[tag] = r
            print(
                f"{tag:>6}: {len(msgs):,} messages ({r['readings_per_message']} readings each), "
                f"{r['readings_eps']:,} readings/s, worker CPU {r.get('worker_cpu_us_per_reading', '?')} µs/reading",
                file=sys.stderr,
            )
        result["ratio"] = round(result["edge"]["readings_eps"] / max(result["single"]["readings_eps"], 1), 2)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out = Path("var/bench/edge_compare.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(
        f"edge batches {result['edge']['readings_eps']:,} readings/s vs one per message "
        f"{result['single']['readings_eps']:,} readings/s: ratio {result['ratio']} ({out})"
    )
    return result
