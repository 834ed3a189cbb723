"""Offline helpers for checking panel SQL: expand the ClickHouse plugin's macros and variables.

Grafana cannot run here, so tests expand what the grafana-clickhouse-datasource plugin would
(``$__timeFilter``, ``$__timeInterval``, ``$__fromTime``, ``$__toTime``, ``$__interval_s``) and the
dashboard variables, then run the SQL on the real engine (chDB).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime


def _ts(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def expand(sql: str, frm: datetime, to: datetime, variables: dict[str, str] | None = None, interval_s: int = 60) -> str:
    """The SQL the plugin would send for time range [frm, to] and these variable values."""
    f, t = f"toDateTime64('{_ts(frm)}', 3, 'UTC')", f"toDateTime64('{_ts(to)}', 3, 'UTC')"
    sql = re.sub(r"\$__timeFilter\(([^)]+)\)", lambda m: f"{m[1].strip()} >= {f} AND {m[1].strip()} <= {t}", sql)
    sql = re.sub(
        r"\$__timeInterval\(([^)]+)\)",
        lambda m: f"toStartOfInterval(toDateTime({m[1].strip()}), INTERVAL {interval_s} second)",
        sql,
    )
    sql = sql.replace("$__fromTime", f"toDateTime({int(frm.timestamp())})").replace(
        "$__toTime", f"toDateTime({int(to.timestamp())})"
    )
    sql = sql.replace("$__interval_s", str(interval_s))
    for name, value in (variables or {}).items():
        sql = sql.replace("${" + name + "}", value)
        sql = re.sub(r"\$" + re.escape(name) + r"\b", value, sql)
    left = re.findall(r"\$\{?\w+", sql)
    if left:
        raise ValueError(f"unexpanded macros/variables {left} in:\n{sql}")
    return sql
