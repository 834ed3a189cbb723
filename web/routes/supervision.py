"""检查督导: the office's supervision page and its supervision notes (督导单).

Per department: overdue alerts (签收 or 处置 past its deadline), overdue inspection tasks, overdue
rectification orders (``rectification_orders``, when that table exists) and overdue notices, then the
response times: the 督促反馈 table of the office's page (alerts: median / p90 time to 签收 and to 处置)
extended with notices (median / p90 working-time-agnostic hours to 认领 or answer, overdue rate) and
督导单. Disputed notices (有异议) wait here for the office's decision, as do escalated ones.

The office sends a 督导单 about an alert, a task, an order or a notice: a
``streams.engine.notices.NoticeAnswer`` with action ``send`` on ``events.notice.<office>`` (only the
office's topic is accepted for it). The worker delivers it like any notice: the department sees it in
its inbox, must answer by the deadline, and is urged when it does not; note and answer are in the
hash-chained ``notice_history``. Role: taskforce (acts) or leader (reads).
"""

from __future__ import annotations

import logging
import time
import uuid
from datetime import datetime

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse
from pydantic import ValidationError

from schemas.events import LOCAL_TZ
from streams.engine.notices import NoticeAction, NoticeAnswer
from web.deps import PageError, check_csrf, ctx, render, require_taskforce
from web.routes.inbox import ID_OK, NOTICE_OPEN_SQL, nav_counts, notice_words
from web.routes.taskforce import RESPONSE_SQL
from web.users import User

router = APIRouter()
log = logging.getLogger(__name__)

ALERTS_OVERDUE_SQL = """
SELECT dept, countIf(status = 'firing' AND ack_due < now64(3)) AS ack_overdue,
       countIf(dispose_due < now64(3)) AS dispose_overdue
FROM {db}.alerts FINAL ARRAY JOIN departments AS dept
WHERE status IN ('firing', 'acknowledged', 'disposing') GROUP BY dept"""

TASKS_OVERDUE_SQL = """
SELECT t.department AS dept, count() AS tasks_overdue
FROM (SELECT * FROM {db}.events_task FINAL WHERE due < now64(3)) AS t
LEFT JOIN (SELECT entity_id, arrayJoin(departments) AS department, max(occurred_at) AS done_at
           FROM {db}.events_inspection FINAL GROUP BY entity_id, department) AS i
    ON i.entity_id = t.entity_id AND i.department = t.department
WHERE NOT (i.done_at >= t.occurred_at) GROUP BY dept"""

ORDERS_OVERDUE_SQL = """
SELECT department AS dept, count() AS orders_overdue FROM {db}.rectification_orders FINAL
WHERE status NOT IN ('closed', 'passed') AND deadline < now64(3) GROUP BY dept"""

NOTICES_OVERDUE_SQL = f"""
SELECT department AS dept, countIf(kind != 'supervision') AS notices_overdue,
       countIf(kind = 'supervision') AS notes_overdue
FROM {{db}}.notices FINAL WHERE {NOTICE_OPEN_SQL} AND deadline < now64(3) GROUP BY dept"""

# notices delivered in the period: time to the department's answer (认领, 有异议, 督导单's answer)
NOTICE_RESPONSE_SQL = """
SELECT department AS dept, kind = 'supervision' AS note, count() AS received,
       countIf(answered_at IS NOT NULL) AS answered,
       round(quantileIf(0.5)(dateDiff('second', created_at, answered_at) / 3600, answered_at IS NOT NULL), 2) AS p50_h,
       round(quantileIf(0.9)(dateDiff('second', created_at, answered_at) / 3600, answered_at IS NOT NULL), 2) AS p90_h,
       countIf(status = 'disputed') AS disputed,
       round(countIf((answered_at IS NULL AND deadline < now64(3)) OR answered_at > deadline) / count(), 3)
           AS overdue_rate
FROM {db}.notices FINAL WHERE created_at >= now() - toIntervalDay(%(days)s)
GROUP BY dept, note ORDER BY dept, note"""

QUEUE_SQL = """
SELECT notice_id, department, kind, entity_id, township, text, subject, sender, created_at, deadline, status,
       answered_at, answer, answered_by, urged
FROM {db}.notices FINAL WHERE status IN ('disputed', 'escalated') ORDER BY created_at DESC LIMIT 100"""

NOTES_SQL = """
SELECT notice_id, department, subject, text, sender, created_at, deadline, status, answered_at, answer, answered_by,
       urged
FROM {db}.notices FINAL WHERE kind = 'supervision' ORDER BY created_at DESC LIMIT 100"""


async def _rows(request: Request, sql: str, **params) -> list[dict]:
    """Rows, or none when the table is not there (rectification_orders before its migration)."""
    try:
        return await ctx(request).reader.rows(sql, **params)
    except Exception as e:  # noqa: BLE001 — one missing table does not take the page down
        log.info("supervision: %s", str(e).splitlines()[0] if str(e) else type(e).__name__)
        return []


async def _has_table(request: Request, name: str) -> bool:
    rows = await _rows(
        request, "SELECT count() AS n FROM system.tables WHERE database = '{db}' AND name = %(t)s", t=name
    )
    return bool(rows and rows[0]["n"])


@router.get("/supervision")
async def supervision(request: Request, user: User = Depends(require_taskforce), days: int = 30):
    c = ctx(request)
    days = max(1, min(days, 3660))
    by_dept: dict[str, dict] = {
        d: {"dept": d, "ack_overdue": 0, "dispose_overdue": 0, "tasks_overdue": 0, "orders_overdue": 0,
            "notices_overdue": 0, "notes_overdue": 0}
        for d in c.catalog.departments
    }  # fmt: skip
    has_orders = await _has_table(request, "rectification_orders")
    parts = [ALERTS_OVERDUE_SQL, TASKS_OVERDUE_SQL, NOTICES_OVERDUE_SQL] + ([ORDERS_OVERDUE_SQL] if has_orders else [])
    for sql in parts:
        for r in await _rows(request, sql):
            if r["dept"] in by_dept:
                by_dept[r["dept"]].update({k: v for k, v in r.items() if k != "dept"})
    overdue = sorted(by_dept.values(), key=lambda r: -sum(v for k, v in r.items() if k != "dept"))
    notice_resp: dict[str, dict] = {}
    for r in await _rows(request, NOTICE_RESPONSE_SQL, days=days):
        notice_resp.setdefault(r["dept"], {})["notes" if r["note"] else "notices"] = r
    request.state.nav_counts = await nav_counts(request, user)
    return render(
        request,
        "supervision.html",
        days=days,
        overdue=overdue,
        has_orders=has_orders,
        response=await _rows(request, RESPONSE_SQL, days=days),
        notice_resp=notice_resp,
        queue=await _rows(request, QUEUE_SQL),
        notes=await _rows(request, NOTES_SQL),
        Z=notice_words(),
        subject=request.query_params.get("subject", "")[:64],
        to=request.query_params.get("to", ""),
    )


@router.post("/supervision/notes", dependencies=[Depends(check_csrf)])
async def send_note(
    request: Request,
    user: User = Depends(require_taskforce),
    department: str = Form(""),
    subject: str = Form(""),
    text: str = Form(""),
    deadline: str = Form(""),
):
    """The office's 督导单 → ``events.notice.<office>`` (action ``send``)."""
    c = ctx(request)
    office = c.catalog.taskforce_office
    if not user.can_act or user.dept != office:
        raise PageError(403, "只读账号", "只有专班办公室可以发出督导单。")
    if department not in c.catalog.departments or department == office:
        raise PageError(400, "请选择部门", "请选择督导的部门,本次督导单未发出。")
    subject, text = subject.strip(), text.strip()
    if subject and not ID_OK.match(subject):
        raise PageError(400, "事由编号无效", "事由应为预警、任务、整改单或通知的编号,本次督导单未发出。")
    if not text:
        raise PageError(400, "请填写督导内容", "督导内容不能为空,本次督导单未发出。")
    due = None
    if deadline:
        try:
            due = datetime.fromisoformat(deadline).replace(tzinfo=LOCAL_TZ)
        except ValueError:
            raise PageError(400, "时限无效", "答复时限格式无效,本次督导单未发出。") from None
        if due.timestamp() < time.time():
            raise PageError(400, "时限无效", "答复时限已过,本次督导单未发出。")
    entity = department
    if subject:  # keyed by the subject's entity when it is an alert or a notice (its partition)
        for sql in ("SELECT entity_id FROM {db}.alerts FINAL WHERE alert_id = %(s)s",
                    "SELECT entity_id FROM {db}.notices FINAL WHERE notice_id = %(s)s"):  # fmt: skip
            found = await _rows(request, sql + " LIMIT 1", s=subject)
            if found and found[0]["entity_id"] and ID_OK.match(found[0]["entity_id"]):
                entity = found[0]["entity_id"]
                break
    note_id = f"S{uuid.uuid4().hex[:15]}"
    try:
        ev = c.producer.build(
            NoticeAnswer,
            entity_id=entity,
            notice_id=note_id,
            action=NoticeAction.send,
            comment=text,
            actor=user.name,
            department=department,
            subject=subject,
            deadline=due,
        )
    except ValidationError as e:
        raise PageError(400, "内容不合规", "; ".join(x["msg"] for x in e.errors()) + "。本次督导单未发出。") from None
    await c.producer.send(ev, user.actor, office)
    return RedirectResponse(f"/supervision?sent={note_id}#notes", status_code=303)
