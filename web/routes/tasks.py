"""检查任务: the department's pending tasks and the joint inspection plans that include it; the
lead department enters the result (checklist, violations with severity, outcome), which produces
``events.inspection.<dept>`` and so completes the plan's tasks in the worker, as any inspection does."""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse
from pydantic import ValidationError

from schemas.events import InspectionResult
from streams.engine.identity import sender_topic
from web.deps import PageError, check_csrf, ctx, render, require_user
from web.routes.alert import ID, STALLED_SECONDS
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
    request.state.nav_counts = await nav_counts(request, user)
    return render(request, "tasks.html", plans=plans, tasks=tasks)


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
