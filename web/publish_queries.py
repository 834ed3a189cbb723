"""ClickHouse reads for publishing: the closed alerts the office may turn into typical cases, and the
monthly supervision information (监管信息) the public pages show.

The public reads select no entity id, name, address, title or message: counts by item and level, and
for resolved red alerts only the item, the signal (rule) and the dates. The office's read of closed
alerts does show names (it is behind the login); what the office publishes from it is masked by the
publish route. ``%(ym)s`` is a month as the integer ``YYYYMM`` (ClickHouse ``toYYYYMM``).

>>> month_bounds("2026-12")
(202612, '2026年12月')
>>> month_bounds("2026-13") is None, month_bounds("x") is None
(True, True)
"""

from __future__ import annotations

import re

# The published 双随机 results: entity, date, departments, outcome once the inspection result exists
# (names of spot-checked entities are published by law: 双随机、一公开).
SPOT_SQL = """
SELECT t.ref AS ref, any(r.name) AS entity_name, any(r.township) AS township, t.item_id AS item_id,
       min(i.occurred_at) AS inspected_at, groupUniqArray(t.department) AS departments,
       argMin(i.outcome, i.occurred_at) AS outcome
FROM (SELECT entity_id, item_id, department, ref, occurred_at FROM {db}.events_task FINAL
      WHERE kind = 'spot_check') AS t
INNER JOIN (SELECT entity_id, item_id, occurred_at, outcome FROM {db}.events_inspection FINAL) AS i
    ON i.entity_id = t.entity_id AND i.item_id = t.item_id
LEFT JOIN (SELECT entity_id, name, township FROM {db}.registry FINAL) AS r ON r.entity_id = t.entity_id
WHERE i.occurred_at >= t.occurred_at
GROUP BY t.entity_id, t.item_id, t.ref
ORDER BY inspected_at DESC
LIMIT 500"""

# Resolved (已解除) or closed (已关闭): the alert's business is over, the office may publish it.
CLOSED_SQL = """
SELECT alert_id, title, entity_id, entity_name, township, item_id, item_name, rule, level, level_zh, status,
       first_seen, updated_at
FROM {db}.alerts FINAL WHERE status IN ('resolved', 'closed')
ORDER BY updated_at DESC LIMIT 200"""

ALERT_SQL = """
SELECT alert_id, title, message, entity_id, entity_name, township, item_id, item_name, rule, level, level_zh, status,
       first_seen, updated_at
FROM {db}.alerts FINAL WHERE alert_id = %(a)s AND status IN ('resolved', 'closed')"""

# Warnings that fired (pending ones never reached a department) in the month, by item and level.
MONTH_COUNTS_SQL = """
SELECT ifNull(item_id, 0) AS item_id, any(item_name) AS item_name, level, count() AS n
FROM {db}.alerts FINAL WHERE status != 'pending' AND toYYYYMM(first_seen, 'Asia/Shanghai') = %(ym)s
GROUP BY item_id, level ORDER BY item_id, level"""

# Red alerts resolved in the month: item, signal and dates only (no entity, no title, no message).
MONTH_RED_SQL = """
SELECT ifNull(item_id, 0) AS item_id, item_name, rule, first_seen, updated_at
FROM {db}.alerts FINAL
WHERE level = 'red' AND status IN ('resolved', 'closed') AND toYYYYMM(updated_at, 'Asia/Shanghai') = %(ym)s
ORDER BY updated_at LIMIT 200"""

MONTH_SPOT_SQL = f"""
SELECT * FROM ({SPOT_SQL.strip()}) WHERE toYYYYMM(inspected_at, 'Asia/Shanghai') = %(ym)s"""

MONTH = re.compile(r"^(\d{4})-(\d{2})$")


def month_bounds(month: str) -> tuple[int, str] | None:
    """``YYYY-MM`` → (``YYYYMM``, Chinese label); None when it is not a month."""
    m = MONTH.match(month or "")
    if m is None or not 1 <= int(m.group(2)) <= 12 or not 2000 <= int(m.group(1)) <= 2100:
        return None
    return int(m.group(1)) * 100 + int(m.group(2)), f"{m.group(1)}年{int(m.group(2))}月"
