"""检查任务: the department's pending tasks and the joint inspection plans that include it; the
lead department enters the result (checklist, violations with severity, outcome), which produces
``events.inspection.<dept>`` and so completes the plan's tasks in the worker, as any inspection does.

整改令: the department's rectification orders (deadline, required actions, status); on an order's
page it reports the entity's rectification done (提交整改完成, with an attachment) and enters the
复查 result (合格 closes the order, 不合格 re-opens it with a new deadline)."""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from schemas.events import DisposalFeedback, InspectionResult
from schemas.vocabulary import ORDER_STATUS_ZH
from streams.engine.identity import sender_topic
from web.deps import CSRF_REFUSED, PageError, check_csrf, csrf_ok, ctx, render, require_user
from web.orders import ORDER_HISTORY_SQL, ORDER_OPEN, load_order, orders_of
from web.routes.alert import ID, STALLED_SECONDS, store_attachment
from web.routes.inbox import nav_counts
from web.users import User

router = APIRouter()
CHECKLIST = (
    "证照公示",
    "原料进货查验台账",
    "从业人员健康证明",
    "生产经营环境卫生",
    "设施设备运行维护",
    "安全生产责任落实",
)

PLANS_SQL = """
SELECT p.inspection_id AS inspection_id, p.entity_id AS entity_id, p.entity_name AS entity_name, p.township AS township,
       p.lead AS lead, p.departments AS departments, p.item_ids AS item_ids, p.due AS due, p.joint AS joint,
       p.task_ids AS task_ids, p.sources AS sources, p.planned_at AS planned_at,
       i.done_at AS done_at, i.outcome AS outcome, i.done_at >= p.planned_at AS done
FROM (SELECT * FROM {db}.inspection_plans FINAL WHERE {where}) AS p
LEFT JOIN (SELECT entity_id, max(occurred_at) AS done_at, argMax(outcome, occurred_at) AS outcome
           FROM {db}.events_inspection FINAL
           WHERE entity_id IN (SELECT entity_id FROM {db}.inspection_plans FINAL WHERE {where})
           GROUP BY entity_id) AS i ON i.entity_id = p.entity_id
ORDER BY done, p.due
LIMIT 300"""

TASKS_SQL = """
SELECT t.task_id AS task_id, t.entity_id AS entity_id, r.name AS entity_name, r.township AS township,
       t.department AS department,
       t.due AS due, t.item_id AS item_id, t.kind AS kind, t.ref AS ref, t.note AS note,
       i.done_at >= t.occurred_at AS done
FROM (SELECT * FROM {db}.events_task FINAL WHERE {where}) AS t
LEFT JOIN (SELECT entity_id, name, township FROM {db}.registry FINAL) AS r ON r.entity_id = t.entity_id
LEFT JOIN (SELECT entity_id, arrayJoin(departments) AS department, max(occurred_at) AS done_at
           FROM {db}.events_inspection FINAL GROUP BY entity_id, department) AS i
    ON i.entity_id = t.entity_id AND i.department = t.department
ORDER BY done, t.due
LIMIT 300"""


def _scope(user: User) -> tuple[str, str, dict]:
    if user.sees_all:
        return "1", "1", {}
    return "has(departments, %(dept)s)", "department = %(dept)s", {"dept": user.dept}


@router.get("/tasks")
async def tasks(request: Request, user: User = Depends(require_user)):
    c = ctx(request)
    pw, tw, params = _scope(user)
    plans = await c.reader.rows(PLANS_SQL.replace("{where}", pw), **params)
    tasks = await c.reader.rows(TASKS_SQL.replace("{where}", tw), **params)
    orders = await orders_of(request, tw, **params)
    request.state.nav_counts = await nav_counts(request, user)
    return render(request, "tasks.html", plans=plans, tasks=tasks, orders=orders)


async def _plan(request: Request, user: User, inspection_id: str) -> dict:
    if not ID.match(inspection_id):
        raise PageError(404, "检查计划不存在", "计划编号无效。")
    rows = await ctx(request).reader.rows(PLANS_SQL.replace("{where}", "inspection_id = %(i)s"), i=inspection_id)
    if not rows:
        raise PageError(404, "检查计划不存在", f"没有编号为 {inspection_id} 的检查计划。")
    p = rows[0]
    if not user.sees_all and user.dept not in p["departments"]:
        raise PageError(403, "无权查看", "本部门不参加该检查。")
    return p


@router.get("/tasks/{inspection_id}")
async def plan_page(
    request: Request, inspection_id: str, user: User = Depends(require_user), wait: str = "", t: int = 0
):
    c = ctx(request)
    p = await _plan(request, user, inspection_id)
    waiting = None
    if wait and ID.match(wait):
        got = await c.reader.one("SELECT count() AS n FROM {db}.events_inspection WHERE event_id = %(e)s", e=wait)
        refused = await c.reader.one(
            "SELECT any(error) AS error FROM {db}.dead_letters WHERE topic = %(t)s "
            "AND position(base64Decode(payload), %(e)s) > 0",
            e=wait,
            t=c.settings.topic(sender_topic(InspectionResult.topic, user.dept)),
        )
        if refused and refused["error"]:
            raise PageError(400, "检查结果未受理", f"处理引擎未受理本次结果:{refused['error']}")
        if not (got and got["n"]):
            waiting = wait
        else:  # stored: read the plan again, it may have changed since the read above
            p = await _plan(request, user, inspection_id)
    request.state.nav_counts = await nav_counts(request, user)
    return render(
        request,
        "plan.html",
        p=p,
        checklist=CHECKLIST,
        waiting=waiting,
        stalled=bool(waiting) and time.time() - t > STALLED_SECONDS,
        can_enter=user.can_act and user.dept == p["lead"] and not p["done"],
    )


@router.post("/tasks/{inspection_id}/result", dependencies=[Depends(check_csrf)])
async def enter_result(request: Request, inspection_id: str, user: User = Depends(require_user)):
    c = ctx(request)
    p = await _plan(request, user, inspection_id)
    if not user.can_act or user.dept != p["lead"]:
        raise PageError(
            403, "只有牵头部门可以录入", f"该检查由{c.catalog.departments[p['lead']].name}牵头,只有牵头部门录入结果。"
        )
    if p["done"]:
        raise PageError(400, "已录入", "该检查的结果已经录入。")
    form = await request.form()
    outcome = str(form.get("outcome", ""))
    checklist = {
        k: form.get(f"check_{i}") == "yes" for i, k in enumerate(CHECKLIST) if form.get(f"check_{i}") in ("yes", "no")
    }
    violations = []
    for i in range(3):
        code, sev, desc = (str(form.get(f"v{i}_{k}", "")).strip() for k in ("code", "severity", "description"))
        if code or desc:
            violations.append({"code": code or f"V{i + 1}", "severity": sev, "description": desc})
    try:
        ev = c.producer.build(
            InspectionResult,
            entity_id=p["entity_id"],
            inspection_id=inspection_id,
            item_id=(p["item_ids"] or [0])[0],
            departments=list(p["departments"]),
            inspectors=[user.actor],
            checklist=checklist,
            violations=violations,
            outcome=outcome,
        )
    except ValidationError as e:
        raise PageError(
            400,
            "检查结果不完整",
            "请检查:"
            + "; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors())
            + "。本次结果未提交。",
        ) from None
    await c.producer.send(ev, user.actor, user.dept)
    return RedirectResponse(f"/tasks/{inspection_id}?wait={ev.event_id}&t={int(time.time())}", status_code=303)


# --- 整改令 and 复查 (streams/engine/orders.py) ---------------------------------------------------
# A claim (整改完成) is ``events.feedback.<dept>`` with status ``rectified`` and the order id in
# ``alert_id``; a 复查 result is ``events.inspection.<dept>`` with ``order_id``. Only the order's
# department may send either (the worker refuses others as dead letters: identity.py, orders.py).
@router.get("/orders/{order_id}")
async def order_page(request: Request, order_id: str, user: User = Depends(require_user), wait: str = "", seq: int = 0):
    c = ctx(request)
    o = await load_order(request, user, order_id)
    waiting = refused = None
    submitted = c.records.submission(user.username, order_id, wait) if wait and ID.match(wait) else None
    if submitted is not None:  # only this user's own event
        dead = await c.reader.one(
            "SELECT any(error) AS error FROM {db}.dead_letters WHERE topic IN %(t)s "
            "AND position(base64Decode(payload), %(e)s) > 0",
            e=wait,
            t=[c.settings.topic(sender_topic(k.topic, user.dept)) for k in (DisposalFeedback, InspectionResult)],
        )
        done = await c.reader.one("SELECT max(seq) AS s FROM {db}.alert_history WHERE alert_id = %(o)s", o=order_id)
        if dead and dead["error"]:
            refused = dead["error"]
        elif not (done and (done["s"] or 0) > seq):
            waiting = wait
        else:
            o = await load_order(request, user, order_id)
    history = await c.reader.rows(ORDER_HISTORY_SQL, o=order_id)
    request.state.nav_counts = await nav_counts(request, user)
    mine = user.can_act and user.dept == o["department"] and o["open"]
    return render(
        request,
        "order.html",
        o=o,
        history=history,
        waiting=waiting,
        refused=refused,
        stalled=bool(waiting) and submitted is not None and time.time() - submitted > STALLED_SECONDS,
        ORDER_STATUS_ZH=ORDER_STATUS_ZH,
        can_claim=mine and o["status"] != "claimed",
        can_recheck=mine,
        max_upload=c.settings.workbench_max_upload_bytes,
    )


@router.post("/orders/{order_id}/claim")
async def claim(request: Request, order_id: str, user: User = Depends(require_user)):
    """提交整改完成, with evidence. As the alert page's upload: the CSRF token in the action URL is
    checked, and the order's department, before the body is parsed."""
    c = ctx(request)
    upload = request.headers.get("content-type", "").lower().startswith("multipart/form-data")
    if upload:
        if not csrf_ok(request, request.query_params.get("csrf_token")):
            raise PageError(403, *CSRF_REFUSED)
    else:
        await check_csrf(request)
    o = await load_order(request, user, order_id)
    if not user.can_act or user.dept != o["department"]:
        raise PageError(403, "无权提交", "只有负责该整改令的部门可以提交整改完成。")
    if o["status"] not in ORDER_OPEN or o["status"] == "claimed":
        raise PageError(400, "不能提交", f"该整改令当前状态为“{o['status_zh']}”,不能再次提交整改完成。")
    form = await request.form(max_files=1 if upload else 0, max_fields=8, max_part_size=64 * 1024)
    try:
        comment = form.get("comment")
        comment = comment.strip() if isinstance(comment, str) else ""
        if not comment:
            raise PageError(400, "请填写说明", "“整改情况说明”不能为空,本次操作未提交。")
        attachment = form.get("attachment")
        sha = (
            store_attachment(request, attachment) if isinstance(attachment, UploadFile) and attachment.filename else ""
        )
    finally:
        await form.close()
    return await _produce(
        c,
        user,
        o,
        "整改完成",
        DisposalFeedback,
        alert_id=order_id,
        department=user.dept,
        status="rectified",
        comment=comment,
        user=user.name,
        attachment_sha256=sha,
    )


@router.post("/orders/{order_id}/recheck", dependencies=[Depends(check_csrf)])
async def recheck(request: Request, order_id: str, user: User = Depends(require_user)):
    """录入复查结果: 合格 closes the order, 不合格 re-opens it (the worker decides, orders.py)."""
    c = ctx(request)
    o = await load_order(request, user, order_id)
    if not user.can_act or user.dept != o["department"] or not o["open"]:
        raise PageError(403, "不能录入", "只有负责该整改令的部门可以录入复查结果,且整改令未销号。")
    form = await request.form()
    outcome, comment = str(form.get("outcome", "")), str(form.get("comment", "")).strip()
    if outcome not in ("pass", "fail"):
        raise PageError(400, "请选择复查结论", "复查结论须为“合格”或“不合格”,本次操作未提交。")
    if outcome == "fail" and not comment:
        raise PageError(400, "请填写说明", "复查不合格时须写明仍未整改的问题,本次操作未提交。")
    item = o["item_id"] if o["item_id"] in c.catalog.items else min(c.catalog.items)
    violations = [{"code": "recheck", "severity": "serious", "description": comment}] if outcome == "fail" else []
    return await _produce(
        c,
        user,
        o,
        "复查结果",
        InspectionResult,
        inspection_id=f"RC-{order_id}-{int(time.time())}",
        item_id=item,
        departments=[user.dept],
        inspectors=[user.actor],
        violations=violations,
        outcome=outcome,
        order_id=order_id,
        checklist={"整改落实": outcome == "pass"},
    )


async def _produce(c, who: User, o: dict, what: str, model: type, **fields) -> RedirectResponse:
    try:
        ev = c.producer.build(model, entity_id=o["entity_id"], **fields)
    except ValidationError as e:
        raise PageError(
            400,
            "内容不合规",
            f"{what}未通过校验:"
            + "; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors())
            + "。本次操作未提交。",
        ) from None
    await c.producer.send(ev, who.actor, who.dept)
    c.records.submitted(who.username, o["order_id"], ev.event_id)
    if fields.get("attachment_sha256"):
        c.records.attached(fields["attachment_sha256"], o["order_id"], who.username)
    return RedirectResponse(f"/orders/{o['order_id']}?wait={ev.event_id}&seq={o['version']}", status_code=303)
