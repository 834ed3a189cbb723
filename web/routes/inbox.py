"""部门收件箱: the alerts addressed to the department, open ones first, with deadlines; for a
department cases were transferred to (案件移送, e.g. 县公安局) also those cases, tagged with the
transfer's state (``transfer=pending`` lists the ones awaiting its answer)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from schemas.vocabulary import ALERT_STATUSES, LEVELS
from web.deps import OPEN, ctx, render, require_user
from web.users import User

router = APIRouter()
LIMIT = 200

OPEN_SQL = f"status IN ({', '.join(repr(s.value) for s in OPEN)})"
LEVEL_RANK_SQL = f"indexOf([{', '.join(repr(lv.value) for lv in LEVELS)}], level)"

INBOX_SQL = f"""
SELECT alert_id, title, entity_id, entity_name, township, item_id, item_name, level, level_zh, status, score,
       ack_due, dispose_due, first_seen, updated_at, lead_department, departments, transfer
FROM {{db}}.alerts FINAL
WHERE {{where}}
ORDER BY {OPEN_SQL} DESC,
         {LEVEL_RANK_SQL} DESC, first_seen DESC
LIMIT %(limit)s"""

COUNTS_SQL = f"""
SELECT countIf({OPEN_SQL}) AS open,
       countIf(status = 'firing' AND {{mine}}) AS unacked,
       countIf({OPEN_SQL} AND dispose_due < now64(3) AND {{mine}}) AS overdue,
       count() AS total,
       countIf(transfer = 'transferred') AS transfers
FROM {{db}}.alerts FINAL WHERE {{where}}"""


def scope(user: User, dept: str = "") -> tuple[str, dict]:
    """WHERE clause of the alerts a user may see (a department: its own; the office/leaders: all)."""
    if not user.sees_all:
        return RECEIVES, {"dept": user.dept}
    if dept:
        return RECEIVES, {"dept": dept}
    return "1", {}


# a department receives an alert it is a receiver of, or a case transferred to it (案件移送)
# (the audit trail's notify rows "case_transfer → police": ``alerts`` keeps only an alert's latest
# revision once merged, so the case_transfer revision itself is not a lasting record)
RECEIVES = (
    "(has(departments, %(dept)s) OR alert_id IN (SELECT alert_id FROM {db}.alert_history "
    "WHERE kind = 'notify' AND startsWith(comment, 'case_transfer → ') "
    "AND has(splitByChar(',', splitByString(' → ', comment)[2]), %(dept)s)))"
)


async def nav_counts(request: Request, user: User) -> dict:
    where, params = scope(user)
    # 待签收 / 处置超期 count the alerts the department must answer, not cases only transferred to it
    mine = "1" if user.sees_all else "has(departments, %(dept)s)"
    rows = await ctx(request).reader.cached(
        10.0, COUNTS_SQL.replace("{where}", where).replace("{mine}", mine), **params
    )
    return rows[0] if rows else {}


@router.get("/inbox")
async def inbox(
    request: Request,
    user: User = Depends(require_user),
    item: str = "",
    township: str = "",
    level: str = "",
    status: str = "open",
    dept: str = "",
    transfer: str = "",
):
    c = ctx(request)
    where, params = scope(user, dept if dept in c.catalog.departments else "")
    conds = [where]
    if item.isdigit():
        conds.append("item_id = %(item)s")
        params["item"] = int(item)
    if township:
        conds.append("township = %(township)s")
        params["township"] = township
    if level in LEVELS:
        conds.append("level = %(level)s")
        params["level"] = level
    if status == "open":
        conds.append(OPEN_SQL)
    elif status in ALERT_STATUSES:
        conds.append("status = %(status)s")
        params["status"] = status
    if transfer == "pending":
        conds.append("transfer = 'transferred'")
    elif transfer == "any":
        conds.append("transfer != ''")
    rows = await c.reader.rows(INBOX_SQL.replace("{where}", " AND ".join(conds)), limit=LIMIT, **params)
    w0, p0 = scope(user)
    townships = [
        r["township"]
        for r in await c.reader.cached(
            300.0,
            "SELECT DISTINCT township FROM {db}.alerts WHERE " + w0 + " AND township != '' ORDER BY township LIMIT 100",
            **p0,
        )
    ]
    request.state.nav_counts = await nav_counts(request, user)
    return render(
        request,
        "inbox.html",
        alerts=rows,
        limit=LIMIT,
        townships=townships,
        open_statuses=OPEN,
        f={"item": item, "township": township, "level": level, "status": status, "dept": dept, "transfer": transfer},
    )
