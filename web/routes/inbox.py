"""部门收件箱: the alerts addressed to the department, open ones first, with deadlines; for a
department cases were transferred to (案件移送, e.g. 县公安局) also those cases, tagged with the
transfer's state (``transfer=pending`` lists the ones awaiting its answer).

Its notices (通知与督导单, ``/notices``): 双告知 of new registrations, 待研判 entities, township surges
and the office's 督导单, each with its deadline. The department answers on the notice's page:
认领 or 有异议 (with a reason) for a notice, an answer for a 督导单. The answer is a
``streams.engine.notices.NoticeAnswer`` produced to ``events.notice.<the user's department>``; the
worker takes the department from the topic. Another department's notice is a 403."""

from __future__ import annotations

import logging
import re
import time

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse
from pydantic import ValidationError

from schemas.vocabulary import ALERT_STATUSES, LEVELS, NoticeState, NoticeType, labels
from streams.engine.notices import OPEN as NOTICE_OPEN
from streams.engine.notices import NoticeAction, NoticeAnswer
from web.deps import OPEN, PageError, check_csrf, ctx, render, require_user
from web.users import User

log = logging.getLogger(__name__)

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
        notices=await notices_of(request, user, NOTICE_OPEN_SQL, limit=20),
        Z=notice_words(),
        limit=LIMIT,
        townships=townships,
        open_statuses=OPEN,
        f={"item": item, "township": township, "level": level, "status": status, "dept": dept, "transfer": transfer},
    )


# --- notices (双告知, 待研判, township surges) and 督导单 -----------------------------------------------
NOTICE_OPEN_SQL = f"status IN ({', '.join(repr(str(s)) for s in sorted(NOTICE_OPEN))})"
NOTICES_SQL = f"""
SELECT notice_id, department, kind, entity_id, township, text, subject, sender, created_at, deadline, status,
       answered_at, answer, answered_by, urged
FROM {{db}}.notices FINAL
WHERE {{where}}
ORDER BY {NOTICE_OPEN_SQL} DESC, deadline ASC, created_at DESC
LIMIT %(limit)s"""
NOTICE_KIND_ZH = labels(NoticeType)
NOTICE_STATE_ZH = labels(NoticeState)


def notice_words() -> dict:
    """The templates' ``Z.kind`` / ``Z.status`` (schemas.vocabulary's labels)."""
    return {"kind": NOTICE_KIND_ZH, "status": NOTICE_STATE_ZH}


ID_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,63}$")


async def notices_of(
    request: Request, user: User, where: str = "1", params: dict[str, object] | None = None, limit: int = LIMIT
) -> list[dict]:
    """Notices the user may see (a department: its own; the office/leaders: all), newest need first.
    Empty while the notices table does not exist yet (a workbench in front of an older worker)."""
    conds, params = [where], dict(params or {})
    if not user.sees_all:
        conds.append("department = %(me)s")
        params["me"] = user.dept
    try:
        return await ctx(request).reader.rows(
            NOTICES_SQL.replace("{where}", " AND ".join(conds)), limit=limit, **params
        )
    except Exception as e:  # noqa: BLE001 — the page works without notices
        log.warning("notices not readable: %s", str(e).splitlines()[0] if str(e) else type(e).__name__)
        return []


@router.get("/notices")
async def notice_list(request: Request, user: User = Depends(require_user), status: str = "open", dept: str = ""):
    c = ctx(request)
    conds: list[str] = ["1"]
    params: dict[str, object] = {}
    if status == "open":
        conds.append(NOTICE_OPEN_SQL)
    elif status in NOTICE_STATE_ZH:
        conds.append("status = %(status)s")
        params["status"] = status
    if user.sees_all and dept in c.catalog.departments:
        conds.append("department = %(dept)s")
        params["dept"] = dept
    rows = await notices_of(request, user, " AND ".join(conds), params)
    request.state.nav_counts = await nav_counts(request, user)
    return render(request, "notices.html", notices=rows, f={"status": status, "dept": dept}, Z=notice_words())


@router.get("/notices/{notice_id}")
async def notice_page(request: Request, notice_id: str, user: User = Depends(require_user)):
    c = ctx(request)
    rows = await _recipients(request, user, notice_id)
    history = await c.reader.rows(
        "SELECT department, seq, at, kind, from_status, to_status, actor, comment, hash FROM {db}.notice_history FINAL "
        "WHERE notice_id = %(n)s" + ("" if user.sees_all else " AND department = %(me)s") + " ORDER BY department, seq",
        n=notice_id,
        me=user.dept,
    )
    mine = next((r for r in rows if r["department"] == user.dept), None)
    request.state.nav_counts = await nav_counts(request, user)
    return render(
        request,
        "notice.html",
        n=rows[0],
        rows=rows,
        mine=mine,
        history=history,
        Z=notice_words(),
        wait=request.query_params.get("wait", ""),
        open_states=NOTICE_OPEN,
    )


async def _recipients(request: Request, user: User, notice_id: str) -> list[dict]:
    """The notice's rows (one per recipient) the user may see: 404 unknown, 403 another department's."""
    if not ID_OK.match(notice_id):
        raise PageError(404, "通知不存在", "通知编号无效。")
    rows = await ctx(request).reader.rows(NOTICES_SQL.replace("{where}", "notice_id = %(n)s"), limit=LIMIT, n=notice_id)
    if not rows:
        raise PageError(404, "通知不存在", f"没有编号为 {notice_id} 的通知。")
    if not user.sees_all and user.dept not in {r["department"] for r in rows}:
        raise PageError(403, "无权查看", "该通知不是发给本部门的。")
    return rows


ANSWERS = {"confirm": NoticeAction.confirm, "dispute": NoticeAction.dispute, "answer": NoticeAction.answer}


@router.post("/notices/{notice_id}/answer", dependencies=[Depends(check_csrf)])
async def notice_answer(
    request: Request,
    notice_id: str,
    user: User = Depends(require_user),
    action: str = Form(""),
    comment: str = Form(""),
):
    """认领 / 有异议 / 答复督导单: produced to ``events.notice.<the user's department>``."""
    c = ctx(request)
    if not user.can_act:
        raise PageError(403, "只读账号", "县领导账号只能查看,不能答复。")
    rows = await _recipients(request, user, notice_id)
    mine = next((r for r in rows if r["department"] == user.dept), None)
    if mine is None:
        raise PageError(403, "无权答复", "该通知不是发给本部门的,不能认领或答复。")
    if action not in ANSWERS:
        raise PageError(400, "操作无效", f"未知操作 {action[:40]!r},本次操作未提交。")
    if mine["status"] not in NOTICE_OPEN:
        raise PageError(400, "已答复", f"本部门已{NOTICE_STATE_ZH.get(mine['status'], mine['status'])},不再接受答复。")
    comment = comment.strip()
    if action in ("dispute", "answer") and not comment:
        raise PageError(
            400, "请填写说明", ("异议理由" if action == "dispute" else "答复内容") + "不能为空,本次操作未提交。"
        )
    try:
        ev = c.producer.build(
            NoticeAnswer,
            entity_id=mine["entity_id"] if ID_OK.match(mine["entity_id"] or "") else user.dept,
            notice_id=notice_id,
            action=ANSWERS[action],
            comment=comment,
            actor=user.name,
        )
    except ValidationError as e:
        raise PageError(400, "内容不合规", "; ".join(x["msg"] for x in e.errors()) + "。本次操作未提交。") from None
    await c.producer.send(ev, user.actor, user.dept)
    return RedirectResponse(f"/notices/{notice_id}?wait={ev.event_id}&since={int(time.time() * 1000)}", status_code=303)
