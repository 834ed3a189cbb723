"""Chinese text is cut by characters, never bytes: in SQL (``substringUTF8``/``leftUTF8``, never the
byte-wise ``substring``/``left``/``right``) and in the demo's tables, which once printed comments
cut in the middle of a character as hex."""

from __future__ import annotations

import ast
import re
from datetime import UTC, datetime
from pathlib import Path

from riskwatch.settings import Settings
from riskwatch.tools import demo
from sinks.rows import alert_history_row
from sinks.writer import ClickHouseWriter

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("riskwatch", "streams", "sinks", "schemas", "detectors", "dashboards", "reports", "web", "notify")
# byte-wise ClickHouse string cuts; their UTF8 variants (substringUTF8, leftUTF8, ...) count characters
BYTE_CUT = re.compile(r"\b(substring|substr|left|right|mid|leftPad|rightPad)\s*\(", re.IGNORECASE)
SQL_HINT = re.compile(r"\b(SELECT|FROM)\b")


def _sql_texts():
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")) if (ROOT / pkg).is_dir() else ():
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL_HINT.search(node.value):
                    yield f"{path.relative_to(ROOT)}:{node.lineno}", node.value
    for path in sorted((ROOT / "docs").rglob("*.sql")):
        yield str(path.relative_to(ROOT)), path.read_text(encoding="utf-8")
    for path in sorted((ROOT / "dashboards/json").glob("*.json")):
        yield str(path.relative_to(ROOT)), path.read_text(encoding="utf-8")


def test_no_byte_wise_string_cut_in_sql():
    found = [f"{where}: {m.group(0)}" for where, text in _sql_texts() for m in BYTE_CUT.finditer(text)]
    assert not found, "cut Chinese text by characters (substringUTF8 / leftUTF8): " + "; ".join(found)


def test_demo_lifecycle_table_cuts_a_long_chinese_comment_by_characters(tmp_path):
    comment = "已会同县市场监管局对该冷库开展现场检查，温控设备已维修，责令整改并复查合格，" * 3  # 111 characters
    settings = Settings(clickhouse_url=f"chdb://{tmp_path / 'clickhouse'}", sink_batch_seconds=0.1, _env_file=None)
    at = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
    with ClickHouseWriter(settings) as w:
        w.submit(
            "alert_history",
            [
                alert_history_row("A-1", at, None, "firing", "riskwatch", "", seq=1, kind="status"),
                alert_history_row("A-1", at, "firing", "resolved", "amr", comment, seq=2, kind="feedback"),
            ],
        ).result(timeout=60)
        cols, rows = w.query(demo.LIFECYCLE_SQL)
    shown = rows[-1][cols.index("comment")]
    assert isinstance(shown, str) and shown == comment[:60]
