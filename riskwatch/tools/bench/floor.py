"""The Faust floor: how fast a Faust agent that does nothing consumes the benchmark's topics.

``python -m riskwatch.tools.bench.floor --events N --topic T [--topic T ...] [--stock]`` runs a worker
with one agent reading the topics the way riskwatch's entity agent does (raw bytes,
``take_events``, a memory-store table app) and acknowledging every batch without work; it prints
one JSON line ``{"faust_floor_eps": ..., "cpu_us_per_event": ...}`` and exits. ``--stock`` is Faust
as shipped: its own delivery loop and worker, instead of ``streams/runtime/faust_fastpath.py``'s loop and
``quiet_worker`` (no start-up spinner, which leaves the root logger at DEBUG). ``riskwatch bench`` runs it as
a subprocess to separate the framework's share of the per-event cost from riskwatch's own.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import uuid


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, required=True)
    ap.add_argument("--topic", action="append", required=True)
    ap.add_argument("--bootstrap", default=os.environ.get("RISKWATCH_KAFKA_BOOTSTRAP", "127.0.0.1:19092"))
    ap.add_argument("--stock", action="store_true", help="Faust's own delivery loop (no fast path)")
    ap.add_argument("--batch-max", type=int, default=5000)
    ap.add_argument("--within", type=float, default=0.05)
    a = ap.parse_args(argv)

    import faust
    from faust.worker import Worker

    from streams.runtime import faust_fastpath

    if not a.stock:
        faust_fastpath.install()
    datadir = tempfile.mkdtemp(prefix="riskwatch-floor-")  # Faust's default is <app id>-data in the working directory
    app = faust.App(
        f"riskwatch-floor-{uuid.uuid4().hex[:8]}",
        broker=f"kafka://{a.bootstrap}",
        store="memory://",
        datadir=datadir,
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        broker_commit_every=a.batch_max,
        logging_config=None,
    )
    src = app.topic(*a.topic, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    seen = {"n": 0}

    @app.agent(src)
    async def floor(stream):
        async for batch in stream.take_events(a.batch_max, within=a.within):
            if not seen["n"]:  # the clock starts after the first batch (start-up and fetch latency excluded)
                seen["t0"], seen["c0"], seen["first"] = time.perf_counter(), time.process_time(), len(batch)
            seen["n"] += len(batch)
            if seen["n"] >= a.events:
                secs, cpu = time.perf_counter() - seen["t0"], time.process_time() - seen["c0"]
                n = seen["n"] - seen["first"]
                print(
                    json.dumps(
                        {
                            "faust_floor_eps": round(n / secs),
                            "cpu_us_per_event": round(cpu / n * 1e6, 1),
                            "events": seen["n"],
                        }
                    ),
                    flush=True,
                )
                sys.stderr.flush()
                shutil.rmtree(datadir, ignore_errors=True)
                os._exit(0)

    if a.stock:
        Worker(app, loglevel="error", quiet=True, redirect_stdouts=False).execute_from_commandline()
    else:
        faust_fastpath.quiet_worker(app, loglevel="error", redirect_stdouts=False).execute_from_commandline()


if __name__ == "__main__":
    main(sys.argv[1:])
