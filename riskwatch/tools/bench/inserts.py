"""ClickHouse insert cost by insert size: ``python -m riskwatch.tools.bench.inserts [--rows 28000]``.

Inserts the same simulated sensor rows into a fresh embedded engine (chDB, the project's own
migrations) as one insert and as inserts of 2,000 rows (the writer's former chunk), and prints
the CPU per row of each: the fixed cost of an insert is why a commit's rows of one table go in one
insert (``sinks/writer.py``, ``INSERT_MAX_ROWS``).
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta

from sinks import migrations
from sinks.clickhouse import INSERT_SETTINGS, make_client
from sinks.rows import COLUMNS


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=28_000, help="rows per round (a commit's sensor rows)")
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args(argv)
    client = make_client(f"chdb://{tempfile.mkdtemp(prefix='riskwatch-inserts-')}")
    migrations.migrate(client, "riskwatch")
    rnd = random.Random(7)
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    channels = ["cold_chain_temp", "boiler_pressure", "storage_humidity"]
    rows = [
        (
            str(uuid.UUID(int=rnd.getrandbits(128))),
            f"E{rnd.randrange(10_000):06d}",
            t0 + timedelta(seconds=i),
            "iot",
            1,
            f"d{i % 3}",
            rnd.choice(channels),
            rnd.random() * 10,
            "C",
        )
        for i in range(a.rows)
    ]

    def insert(chunk: int) -> float:
        c = time.process_time()
        for k in range(0, len(rows), chunk):
            client.insert(
                "events_sensor",
                rows[k : k + chunk],
                column_names=COLUMNS["events_sensor"],
                database="riskwatch",
                settings=INSERT_SETTINGS,
            )
        return (time.process_time() - c) / len(rows) * 1e6

    insert(len(rows))  # warm-up: the first insert creates the table's first part
    for label, chunk in ((f"one insert of {a.rows:,}", a.rows), ("inserts of 2,000", 2_000)):
        cpu = sorted(insert(chunk) for _ in range(a.rounds))[a.rounds // 2]
        print(f"{label:>24}: {cpu:5.1f} µs CPU per row (median of {a.rounds})")


if __name__ == "__main__":
    main()
