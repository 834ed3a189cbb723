"""专班办公室: open alerts by department (overdue, escalated), each department's response times
(督促反馈 table: median and p90 time to 签收 and to 处置, overdue rate), and deciding entities of a
kind without an item (an ``events.registry`` update assigning a kind that an item covers)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse
from pydantic import ValidationError

from schemas.events import EntityEvent
from web.deps import PageError, check_csrf, ctx, render, require_taskforce
from web.routes.alert import ID
from web.routes.inbox import nav_counts
from web.users import User

router = APIRouter()

# escalated: from the audit trail's notify rows (a merge keeps only the latest revision of ``alerts``)
OPEN_SQL = """
SELECT dept, count() AS open, countIf(status = 'firing') AS unacked,
       countIf(dispose_due < now64(3)) AS overdue,
       countIf(alert_id IN (SELECT alert_id FROM {db}.alert_history
                            WHERE kind = 'notify' AND startsWith(comment, 'escalate → '))) AS escalated
FROM {db}.alerts FINAL ARRAY JOIN departments AS dept
WHERE status IN ('firing', 'acknowledged', 'disposing')
GROUP BY dept ORDER BY open DESC"""

# One row per (alert, receiving department) of alerts that fired in the period: time from firing to
# the department's first 签收 and first 处置完毕 (alert_history kind='feedback', actor dept[/user]),
# overdue = acknowledged after the first acknowledgement deadline, or not at all and past it.
RESPONSE_SQL = """
WITH fired AS (
    SELECT alert_id, min(at) AS t0 FROM {db}.alert_history FINAL
    WHERE kind = 'status' AND to_status = 'firing' AND at >= now() - toIntervalDay(%(days)s) GROUP BY alert_id),
receivers AS (
    SELECT alert_id, dept FROM {db}.alerts FINAL ARRAY JOIN departments AS dept
    WHERE alert_id IN (SELECT alert_id FROM fired)),
due AS (
    SELECT alert_id, min(ack_due) AS first_ack_due FROM {db}.alerts
    WHERE ack_due IS NOT NULL AND alert_id IN (SELECT alert_id FROM fired)
    GROUP BY alert_id),
fb AS (
    SELECT alert_id, splitByChar('/', actor)[1] AS dept,
           minIf(at, comment LIKE 'acknowledged%%' OR comment LIKE 'in_progress%%' OR comment LIKE 'disposed%%') AS ack,
           minIf(at, comment LIKE 'disposed%%') AS disp
    FROM {db}.alert_history FINAL WHERE kind = 'feedback' AND alert_id IN (SELECT alert_id FROM fired)
    GROUP BY alert_id, dept)
SELECT r.dept AS dept, count() AS alerts,
       countIf(fb.ack > f.t0) AS acked,
       round(quantileIf(0.5)(dateDiff('second', f.t0, fb.ack) / 60, fb.ack > f.t0), 1) AS ack_p50_min,
       round(quantileIf(0.9)(dateDiff('second', f.t0, fb.ack) / 60, fb.ack > f.t0), 1) AS ack_p90_min,
       countIf(fb.disp > f.t0) AS disposed,
       round(quantileIf(0.5)(dateDiff('second', f.t0, fb.disp) / 3600, fb.disp > f.t0), 2) AS disp_p50_h,
       round(quantileIf(0.9)(dateDiff('second', f.t0, fb.disp) / 3600, fb.disp > f.t0), 2) AS disp_p90_h,
       round(countIf(d.first_ack_due IS NOT NULL
                     AND ((fb.ack > f.t0 AND fb.ack > d.first_ack_due)
                          OR (NOT fb.ack > f.t0 AND now() > d.first_ack_due)))
             / count(), 3) AS overdue_rate
FROM receivers AS r
INNER JOIN fired AS f ON f.alert_id = r.alert_id
LEFT JOIN fb ON fb.alert_id = r.alert_id AND fb.dept = r.dept
LEFT JOIN due AS d ON d.alert_id = r.alert_id
GROUP BY dept ORDER BY alerts DESC"""

# Open alerts on which a department answered 非本部门 (not_ours) after the office's last decision
# (改派, comment 'reassign...'): the office decides who handles them.
NOT_OURS_SQL = """
SELECT a.alert_id AS alert_id, a.title AS title, a.entity_name AS entity_name, a.level AS level, a.level_zh AS level_zh,
       a.status AS status, a.departments AS departments, h.depts AS refused_by, h.reasons AS reasons, h.refused_at AS at
FROM (SELECT alert_id, groupUniqArrayIf(splitByChar('/', actor)[1], comment LIKE 'not_ours%%') AS depts,
             groupArrayIf(comment, comment LIKE 'not_ours%%') AS reasons,
             maxIf(at, comment LIKE 'not_ours%%') AS refused_at,
             maxIf(at, comment LIKE 'reassign%%') AS decided
      FROM {db}.alert_history FINAL WHERE kind = 'feedback' AND (comment LIKE 'not_ours%%' OR comment LIKE 'reassign%%')
      GROUP BY alert_id HAVING refused_at > decided) AS h
INNER JOIN (SELECT * FROM {db}.alerts FINAL WHERE status IN ('firing', 'acknowledged', 'disposing')) AS a
    ON a.alert_id = h.alert_id
ORDER BY h.refused_at DESC LIMIT 100"""

UNASSIGNED_SQL = """
SELECT entity_id, name, kind, township, address, licence, lat, lon, updated_at FROM {db}.registry FINAL
WHERE status = 'active' AND has(%(kinds)s, kind) ORDER BY updated_at DESC LIMIT 50"""


def _unassigned_kinds(catalog) -> list[str]:
    covered = {k for it in catalog.items.values() for k in it.objects}
    return [k for k in catalog.entity_kinds if k not in covered]


@router.get("/taskforce")
async def office(request: Request, user: User = Depends(require_taskforce), days: int = 30):
    c = ctx(request)
    days = max(1, min(days, 3660))
    kinds = _unassigned_kinds(c.catalog)
    request.state.nav_counts = await nav_counts(request, user)
    return render(
        request,
        "taskforce.html",
        days=days,
        open_rows=await c.reader.rows(OPEN_SQL),
        not_ours=await c.reader.rows(NOT_OURS_SQL, days=days),
        response=await c.reader.rows(RESPONSE_SQL, days=days),
        unassigned=await c.reader.rows(UNASSIGNED_SQL, kinds=kinds) if kinds else [],
        unassigned_total=(
            await c.reader.one(
                "SELECT count() AS n FROM {db}.registry FINAL WHERE status = 'active' AND has(%(kinds)s, kind)",
                kinds=kinds,
            )
            or {"n": 0}
        )["n"]
        if kinds
        else 0,
        assignable=[
            (k, v.name, [it for it in c.catalog.items.values() if k in it.objects])
            for k, v in c.catalog.entity_kinds.items()
            if k not in kinds
        ],
    )


@router.post("/taskforce/entities/{entity_id}/assign", dependencies=[Depends(check_csrf)])
async def assign(request: Request, entity_id: str, user: User = Depends(require_taskforce), kind: str = Form("")):
    c = ctx(request)
    if not user.can_act:
        raise PageError(403, "只读账号", "县领导账号只能查看,不能研判。")
    if not ID.match(entity_id):
        raise PageError(404, "主体不存在", "主体编号无效。")
    e = await c.reader.one("SELECT * FROM {db}.registry FINAL WHERE entity_id = %(e)s", e=entity_id)
    if e is None:
        raise PageError(404, "主体不存在", f"名录库中没有主体 {entity_id}。")
    if kind in _unassigned_kinds(c.catalog) or kind not in c.catalog.entity_kinds:
        raise PageError(400, "请选择监管类别", "请选择一个已纳入监管事项的主体类别,本次研判未提交。")
    try:
        ev = c.producer.build(
            EntityEvent,
            entity_id=entity_id,
            action="updated",
            name=e["name"],
            kind=kind,
            township=e["township"],
            address=e["address"],
            licence=e["licence"],
            lat=e["lat"],
            lon=e["lon"],
            source=f"workbench:{user.actor}"[:200],
        )
    except ValidationError as ex:
        raise PageError(400, "内容不合规", "; ".join(x["msg"] for x in ex.errors()) + "。本次研判未提交。") from None
    await c.producer.send(ev, user.actor)
    return RedirectResponse(f"/taskforce?assigned={entity_id}", status_code=303)
