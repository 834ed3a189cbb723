"""Insert latency while analysts read: ``python -m riskwatch.tools.bench.query [--seconds 6]``.

One :class:`sinks.writer.ClickHouseWriter` on a fresh embedded engine (chDB, the project's
migrations) inserts sensor rows in a loop (``write_sync``, the agents' path) and records each
insert's latency, in three phases of one run:

1. idle: nothing else runs;
2. reads: heavy reads go through ``writer.query`` (the worker's ``/query``: gate, own thread and
   client, limits) back to back;
3. shared thread (the former design, for comparison): the same read runs on the writer's own
   insert thread, so every insert waits for it.

It prints the median and p95 insert latency of each phase and the ratios to idle. The read is a
CPU-heavy scan of ``numbers()`` (no data needed), well under the 30 s limit.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

from riskwatch.settings import Settings
from sinks.clickhouse import READ_SETTINGS
from sinks.writer import ClickHouseWriter

HEAVY = "SELECT sum(cityHash64(number)) FROM numbers({n})"


def _rows(n: int, rnd: random.Random) -> list[tuple]:
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    return [
        (
            str(uuid.UUID(int=rnd.getrandbits(128))),
            f"E{rnd.randrange(10_000):06d}",
            t0 + timedelta(seconds=i),
            "iot",
            1,
            f"d{i % 3}",
            "boiler_pressure",
            rnd.random() * 10,
            "MPa",
        )
        for i in range(n)
    ]


def _inserts(writer: ClickHouseWriter, seconds: float, rows: int, rnd: random.Random) -> list[float]:
    lat, end = [], time.monotonic() + seconds
    while time.monotonic() < end:
        batch = _rows(rows, rnd)
        t = time.perf_counter()
        writer.write_sync("events_sensor", batch)
        lat.append(time.perf_counter() - t)
        time.sleep(0.02)  # an agent's pace, not a tight loop
    return lat


def _with_reads(run_read, writer, seconds, rows, rnd) -> tuple[list[float], int]:
    stop, done = threading.Event(), [0]

    def reader():
        while not stop.is_set():
            run_read()
            done[0] += 1

    th = threading.Thread(target=reader, daemon=True)
    th.start()
    time.sleep(0.2)  # the first read is running
    try:
        return _inserts(writer, seconds, rows, rnd), done[0]
    finally:
        stop.set()
        th.join()


def _p(lat: list[float], q: float) -> float:
    return sorted(lat)[min(len(lat) - 1, int(q * len(lat)))] * 1000


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=6.0, help="length of each phase")
    ap.add_argument("--rows", type=int, default=500, help="rows per insert")
    ap.add_argument("--scan", type=int, default=1_000_000_000, help="numbers() scanned by each heavy read")
    a = ap.parse_args(argv)
    s = Settings(clickhouse_url=f"chdb://{tempfile.mkdtemp(prefix='riskwatch-bench-query-')}", _env_file=None)
    writer = ClickHouseWriter(s)
    writer.open()
    rnd = random.Random(7)
    heavy = HEAVY.format(n=a.scan)
    t = time.perf_counter()
    writer.query(heavy)
    read_s = time.perf_counter() - t
    _inserts(writer, 1.0, a.rows, rnd)  # warm-up
    idle = _inserts(writer, a.seconds, a.rows, rnd)
    reads, n_reads = _with_reads(lambda: writer.query(heavy), writer, a.seconds, a.rows, rnd)

    def on_insert_thread():  # the former design: the read queues on the insert thread
        writer._executor.submit(lambda: writer._write_client().query(heavy, settings=READ_SETTINGS)).result()  # noqa: SLF001

    shared, n_shared = _with_reads(on_insert_thread, writer, a.seconds, a.rows, rnd)
    writer.close()
    base = statistics.median(idle)
    print(f"heavy read: {heavy} takes {read_s:.2f} s alone; inserts of {a.rows} rows, {a.seconds:.0f} s per phase")
    print(f"{'phase':<34}{'inserts':>8}{'reads':>7}{'median ms':>11}{'p95 ms':>9}{'median/idle':>13}")
    for label, lat, n in (
        ("idle", idle, 0),
        ("reads on their own thread (now)", reads, n_reads),
        ("reads on the insert thread (before)", shared, n_shared),
    ):
        print(
            f"{label:<34}{len(lat):>8}{n:>7}{_p(lat, 0.5):>11.1f}{_p(lat, 0.95):>9.1f}"
            f"{statistics.median(lat) / base:>13.2f}"
        )


if __name__ == "__main__":
    main()
