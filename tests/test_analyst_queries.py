"""Every query in docs/analyst-queries.sql runs on the real engine (chDB) against sample data.

Sample: one simulated day (riskwatch.tools.simulator) + synthetic alerts/history/feedback/scores
(riskwatch.tools.sample_data). Queries run read-only (sinks.clickhouse.READ_SETTINGS), as analysts do.
Row counts are printed (pytest -s) and a few queries must find rows.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from riskwatch.tools.sample_data import load_sample
from sinks.clickhouse import READ_SETTINGS, make_client

SQL_FILE = Path(__file__).resolve().parents[1] / "docs" / "analyst-queries.sql"
MUST_HAVE_ROWS = {
    "overdue_alerts_by_department", "entities_risk_rising_three_days", "complaint_surge_by_township",
    "median_disposal_time_per_item", "dead_letters_by_topic_and_reason", "top_risk_entities",
    "alerts_per_department_by_level", "event_volume_per_kind_per_day", "sensor_channels_with_most_anomalies",
    "registry_entities_per_kind_per_township", "unassigned_taskforce_entities", "inspection_failure_rate_per_item",
}  # fmt: skip


def parse_queries(text: str) -> dict[str, str]:
    """``{name: sql}`` from ``-- name: x`` markers; comments kept, trailing ``;`` removed."""
    parts = re.split(r"^-- name: *(\w+) *$", text, flags=re.M)
    out = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        sql = body.strip().rstrip(";").strip()
        assert name not in out, f"duplicate query name {name}"
        out[name] = sql
    return out


QUERIES = parse_queries(SQL_FILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    url = f"chdb://{tmp_path_factory.mktemp('analyst') / 'ch'}"
    load_sample(url)
    c = make_client(url)
    yield c
    c.close()


def test_at_least_ten_queries_each_a_single_select():
    assert len(QUERIES) >= 10
    for name, sql in QUERIES.items():
        code = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
        assert code.lstrip().upper().startswith(("SELECT", "WITH")), name
        assert ";" not in code, f"{name}: more than one statement"
        assert re.search(r"[\u4e00-\u9fff]", sql), f"{name}: needs a Chinese comment"


@pytest.mark.parametrize("name", list(QUERIES))
def test_query_runs(client, name):
    res = client.query(QUERIES[name], settings=READ_SETTINGS)
    print(f"\n[analyst-query] {name}: {len(res.result_rows)} rows; columns {res.column_names}")
    if name in MUST_HAVE_ROWS:
        assert res.result_rows, f"{name} returned no rows on the sample data"
