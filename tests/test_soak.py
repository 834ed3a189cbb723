"""``riskwatch soak`` for 3 minutes: all six faults against real processes, then every check passes.

Long (about 5 minutes with start-up and drain; ``timeout`` mark below): one run of the CLI with its
own broker, worker, bridge, Alertmanager and workbench in ``tmp_path`` (:mod:`riskwatch.tools.soak`).
The 60-minute result is in docs/performance.md.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from riskwatch.tools.soak import FAULTS, SoakConfig, slope_per_min

pytestmark = pytest.mark.skipif(
    shutil.which("prometheus-alertmanager") is None and shutil.which("alertmanager") is None,
    reason="Debian's prometheus-alertmanager is not installed",
)


def test_schedule_scales_down_so_a_three_minute_run_has_every_fault():
    short, hour = SoakConfig(minutes=3), SoakConfig(minutes=60)
    assert hour.fault_interval == 300 and hour.alertmanager_down_seconds == 120
    assert 20 <= short.fault_interval <= 30 and short.seconds - 5 > len(FAULTS) * short.fault_interval
    assert slope_per_min([(0, 100), (60, 110), (120, 120)]) == pytest.approx(10.0)


@pytest.mark.timeout(900)
def test_soak_three_minutes_under_every_fault(tmp_path: Path):
    out = tmp_path / "soak.json"
    repo = Path(__file__).resolve().parents[1]
    r = subprocess.run(
        [sys.executable, "-m", "riskwatch.cli.main", "soak", "--minutes", "3", "--rate", "300"]
        + ["--out", str(out), "--data-dir", str(tmp_path / "run"), "--topic-prefix", "soaktest."],
        cwd=repo,
        env={**os.environ, "COLUMNS": "160"},
        capture_output=True,
        text=True,
        timeout=880,
    )
    tail = (r.stdout + r.stderr)[-6000:]
    assert r.returncode == 0, tail
    res = json.loads(out.read_text())
    assert res["failed"] == [], tail
    assert {f["fault"] for f in res["faults"]} == set(FAULTS)
    assert all(f["recovered_s"] is not None for f in res["faults"])
    for topic, n in res["sent"].items():
        assert res["stored"][topic.replace(".", "_")] == n
    assert res["dead_letters"] == res["malformed_sent"] > 0
    assert res["notifications_delivered"] == res["notifications_decided"] > 0
    assert sum(res["duplicate_rows"].values()) == res["duplicate_alert_revisions"] == 0
    assert res["duplicate_notifications"] == 0
    assert len(res["rss"]) >= 6 and sum("worker" in s["mb"] for s in res["rss"]) >= len(res["rss"]) - 2


def test_insert_failpoint_fails_the_next_inserts_then_the_retry_stores_them(tmp_path: Path):
    from riskwatch.settings import Settings
    from sinks.rows import COLUMNS
    from sinks.writer import ClickHouseWriter

    class Client:
        def __init__(self) -> None:
            self.rows: list[tuple] = []

        def insert(self, table, rows, **kw) -> None:
            self.rows.extend(rows)

        def close(self) -> None:
            pass

    client = Client()
    (tmp_path / "clickhouse_insert").write_text("2")
    off = ClickHouseWriter(Settings(_env_file=None), client_factory=lambda: client, migrate=False)
    assert off.failpoint_dir is None  # off by default: the file is never read
    off.close()
    s = Settings(_env_file=None, fault_failpoint_dir=tmp_path)
    w = ClickHouseWriter(s, client_factory=lambda: client, migrate=False, retry_initial_seconds=0.01)
    row = tuple(None for _ in COLUMNS["dead_letters"])
    try:
        assert w.write_sync("dead_letters", [row], timeout=30) == 1
    finally:
        w.close()
    assert w.retries == 2 and client.rows == [row] and not (tmp_path / "clickhouse_insert").exists()
