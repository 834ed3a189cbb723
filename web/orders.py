"""整改令 as the workbench reads them: table ``rectification_orders`` (the latest version of each
order, FINAL) and its history in ``alert_history`` (``alert_id`` = the order id). Used by the task list
and the order page (``web/routes/tasks.py``), the alert page and the dossier.

>>> order_view({"status": "claimed", "actions": ["V1|serious|整改"], "item_due": [1]})["items"]
[{'code': 'V1', 'severity': 'serious', 'action': '整改', 'due': 1}]
"""

from __future__ import annotations

import re

from fastapi import Request

from schemas.vocabulary import ORDER_STATUS_ZH
from web.deps import PageError, ctx
from web.users import User

ORDER_ID = re.compile(r"^RO-[0-9a-f]{16}$")
ORDERS_SQL = """
SELECT order_id, version, entity_id, entity_name, township, alert_id, source, department, item_id, status, reason,
       actions, item_due, issued_at, deadline, claimed_at, evidence_sha256, failed_rechecks, reminders, updated_at
FROM {db}.rectification_orders FINAL WHERE {where}
ORDER BY status = 'closed', deadline
LIMIT 300"""
ORDER_HISTORY_SQL = """
SELECT seq, at, kind, from_status, to_status, actor, comment, hash
FROM {db}.alert_history WHERE alert_id = %(o)s ORDER BY seq"""
ORDER_OPEN = ("issued", "claimed", "reopened", "escalated")


def order_view(o: dict) -> dict:
    """An order row for the templates: its actions split, its status in words."""
    o["status_zh"] = ORDER_STATUS_ZH.get(o["status"], o["status"])
    o["items"] = [
        dict(zip(("code", "severity", "action"), (a.split("|", 2) + ["", ""])[:3], strict=True)) | {"due": d}
        for a, d in zip(o["actions"], o["item_due"], strict=False)
    ]
    o["open"] = o["status"] in ORDER_OPEN
    return o


async def orders_of(request: Request, where: str, **params) -> list[dict]:
    """Orders matching ``where`` (a condition on rectification_orders), for the task list, alert page, dossier."""
    return [order_view(o) for o in await ctx(request).reader.rows(ORDERS_SQL.replace("{where}", where), **params)]


async def load_order(request: Request, user: User, order_id: str) -> dict:
    if not ORDER_ID.match(order_id):
        raise PageError(404, "整改令不存在", "整改令编号无效。")
    rows = await orders_of(request, "order_id = %(o)s", o=order_id)
    if not rows:
        raise PageError(404, "整改令不存在", f"没有编号为 {order_id} 的整改令。")
    o = rows[0]
    if not user.sees_all and user.dept != o["department"]:
        raise PageError(403, "无权查看", "该整改令不由本部门负责。")
    return o
