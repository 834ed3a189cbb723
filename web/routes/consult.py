"""专班办公室 · 议事会商 (/taskforce/consultations): the office convenes a consultation on alerts or on a theme,
invites departments (each notified through Alertmanager, like an alert) and sets the agenda; afterwards it records
the minutes and the decisions. Each decision becomes an ``InspectionTask`` of its owner department with a deadline
(``events.task.taskforce``, ``ref`` = the consultation id): the department's task list shows it and the worker
follows it with the same 督促 as every task.

Both steps are office records on ``office.decisions`` (:mod:`streams.engine.office`, table ``consultations``), sealed
into the office's audit chain. :func:`of_alert` and :func:`of_entity` give the one line the alert page and the
dossier show.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse

from schemas.events import LOCAL_TZ, InspectionTask
from schemas.privacy import mask_pii
from streams.engine import office as O
from web.deps import Ctx, PageError, check_csrf, ctx, render
from web.routes.alert import ID
from web.routes.judge import _build, _depts, publish
from web.routes.matching import require_office
from web.users import User

router = APIRouter()
log = logging.getLogger("riskwatch.web.consult")

LIST_SQL = "SELECT * FROM {db}.consultations FINAL ORDER BY seq DESC LIMIT 1 BY consultation_id LIMIT 100"
ONE_SQL = "SELECT * FROM {db}.consultations FINAL WHERE consultation_id = %(c)s ORDER BY seq DESC LIMIT 1"
ALERTS_SQL = "SELECT alert_id, entity_id, entity_name, title FROM {db}.alerts FINAL WHERE has(%(ids)s, alert_id)"
TASKS_SQL = """
SELECT task_id, department, due, note, ref FROM {db}.events_task FINAL WHERE ref = %(ref)s ORDER BY task_id"""
OF_ALERT_SQL = """
SELECT consultation_id, title, status, held_at, length(decisions) AS n FROM {db}.consultations FINAL
WHERE has(alert_ids, %(a)s) ORDER BY seq DESC LIMIT 1 BY consultation_id"""
OF_ENTITY_SQL = """
SELECT consultation_id, title, status, held_at, length(decisions) AS n FROM {db}.consultations FINAL
WHERE has(entity_ids, %(e)s) ORDER BY seq DESC LIMIT 1 BY consultation_id"""


def _record(row: dict[str, Any]) -> O.Consultation:
    """A stored row back as the record (the next version is sealed from it)."""
    decisions = [O.Decision.model_validate_json(d) for d in row["decisions"]]
    fields = {k: row[k] for k in O.Consultation.model_fields if k in row and k not in ("decisions", "type")}
    return O.Consultation.model_validate({**fields, "decisions": decisions})


async def of_alert(c: Ctx, alert_id: str) -> list[dict[str, Any]]:
    """Consultations on this alert (the alert page's one line)."""
    return await c.reader.rows(OF_ALERT_SQL, a=alert_id)


async def of_entity(c: Ctx, entity_id: str) -> list[dict[str, Any]]:
    """Consultations on this entity's alerts (the dossier's one line)."""
    return await c.reader.rows(OF_ENTITY_SQL, e=entity_id)


def invitation(c: Ctx, rec: O.Consultation, dept: str) -> dict[str, Any]:
    """The Alertmanager alert that invites ``dept`` (its own label set: sent once, routed to the department)."""
    link = f"{c.settings.web_public_url.rstrip('/')}/taskforce/consultations/{rec.consultation_id}"
    held = rec.held_at.astimezone(LOCAL_TZ).strftime("%Y-%m-%d %H:%M")
    text = f"专班办公室召集议事会商「{rec.title}」,时间 {held}。议程:{rec.agenda}"
    return {
        "labels": {
            "source": "riskwatch",
            "alertname": "riskwatch_consultation",
            "notification": "consultation",
            "department": dept,
            "consultation_id": rec.consultation_id,
            "alert_id": rec.consultation_id,
            "seq": str(rec.seq),
            "first_seen": rec.at.astimezone(UTC).isoformat(),
            "level": "blue",
            "item": "none",
            "township": "unknown",
        },
        "annotations": {
            "title": f"议事会商邀请:{rec.title}",
            "summary": mask_pii(text),
            "text": mask_pii(text),
            "department_name": c.catalog.dept_name(dept),
            "link": link,
        },
        "startsAt": datetime.now(UTC).isoformat(),
        "endsAt": (datetime.now(UTC) + timedelta(hours=c.settings.notify_hold_seconds / 3600)).isoformat(),
        "generatorURL": link,
    }


async def notify(c: Ctx, rec: O.Consultation) -> bool:
    """POST the invitations to Alertmanager; False (logged, shown on the page) when it did not take them."""
    url = c.settings.alertmanager_url.rstrip("/") + "/api/v2/alerts"
    try:
        async with httpx.AsyncClient(timeout=10) as h:
            r = await h.post(url, json=[invitation(c, rec, d) for d in rec.departments])
        return r.status_code == 200
    except httpx.HTTPError as e:
        log.warning("consultation %s: Alertmanager %s did not take the invitations: %s", rec.consultation_id, url, e)
        return False


@router.get("/taskforce/consultations")
async def page(request: Request, user: User = Depends(require_office)):
    c = ctx(request)
    rows = await c.reader.rows(LIST_SQL)
    for r in rows:
        r["decided"] = [orjson.loads(d) for d in r["decisions"]]
    return render(
        request,
        "consultations.html",
        rows=rows,
        alerts=request.query_params.get("alerts", ""),
        done=request.query_params.get("done", ""),
        notified=request.query_params.get("notified", ""),
    )


@router.get("/taskforce/consultations/{cid}")
async def one(request: Request, cid: str, user: User = Depends(require_office)):
    c = ctx(request)
    row = await _row(c, cid)
    return render(
        request,
        "consultation.html",
        r=row,
        decided=[orjson.loads(d) for d in row["decisions"]],
        alerts=await c.reader.rows(ALERTS_SQL, ids=list(row["alert_ids"])) if row["alert_ids"] else [],
        tasks=await c.reader.rows(TASKS_SQL, ref=cid),
        done=request.query_params.get("done", ""),
        notified=request.query_params.get("notified", ""),
    )


async def _row(c: Ctx, cid: str) -> dict[str, Any]:
    if not ID.match(cid):
        raise PageError(404, "会商不存在", "会商编号无效。")
    row = await c.reader.one(ONE_SQL, c=cid)
    if row is None:
        raise PageError(404, "会商不存在", f"没有会商 {cid}(刚提交的会商需几秒后可见)。")
    return row


def _when(s: str) -> datetime:
    try:
        t = datetime.fromisoformat(s.strip())
    except ValueError:
        raise PageError(400, "时间无效", f"时间「{s}」格式不对,本次提交未记录。") from None
    return t if t.tzinfo else t.replace(tzinfo=LOCAL_TZ)


@router.post("/taskforce/consultations", dependencies=[Depends(check_csrf)])
async def convene(
    request: Request,
    user: User = Depends(require_office),
    title: str = Form(""),
    theme: str = Form(""),
    alert_ids: str = Form(""),
    departments: list[str] = Form([]),
    agenda: str = Form(""),
    held_at: str = Form(""),
):
    c = ctx(request)
    if not title.strip() or not agenda.strip():
        raise PageError(400, "内容不完整", "请填写会商议题和议程,本次召集未提交。")
    ids = [a for a in dict.fromkeys(x.strip() for x in alert_ids.replace(",", ",").split(",")) if a]
    if any(not ID.match(a) for a in ids):
        raise PageError(400, "预警编号无效", "预警编号只能含字母、数字和 -_.:,本次召集未提交。")
    found = await c.reader.rows(ALERTS_SQL, ids=ids) if ids else []
    missing = set(ids) - {a["alert_id"] for a in found}
    if missing:
        raise PageError(400, "预警不存在", f"没有预警 {'、'.join(sorted(missing))},本次召集未提交。")
    if not ids and not theme.strip():
        raise PageError(400, "内容不完整", "会商需针对至少一条预警,或写明主题,本次召集未提交。")
    depts = _depts(c, departments)
    if not depts:
        raise PageError(400, "请选择部门", "请选择至少一个参会部门,本次召集未提交。")
    now = datetime.now(LOCAL_TZ)
    rec = O.Consultation(
        consultation_id=f"C-{now:%Y%m%d}-{uuid.uuid4().hex[:6]}",
        version=O.now_ms(),
        title=title.strip()[:200],
        theme=theme.strip()[:500],
        alert_ids=ids,
        entity_ids=list(dict.fromkeys(a["entity_id"] for a in found)),
        departments=depts,
        agenda=agenda.strip()[:4000],
        held_at=_when(held_at) if held_at.strip() else now + timedelta(days=1),
        actor=user.actor[:64],
        at=now,
    )
    rec = await publish(c, rec)
    ok = await notify(c, rec)
    return RedirectResponse(
        f"/taskforce/consultations?done={rec.consultation_id}&notified={'1' if ok else '0'}", status_code=303
    )


@router.post("/taskforce/consultations/{cid}/minutes", dependencies=[Depends(check_csrf)])
async def minutes(
    request: Request,
    cid: str,
    user: User = Depends(require_office),
    minutes: str = Form(""),
    decision_text: list[str] = Form([]),
    decision_dept: list[str] = Form([]),
    decision_due: list[str] = Form([]),
    decision_entity: list[str] = Form([]),
):
    """Minutes and decisions: each decision (text + owner department + deadline) becomes that department's task."""
    c = ctx(request)
    row = await _row(c, cid)
    if row["status"] == "concluded":
        raise PageError(409, "会商已结束", "该会商已记录纪要和决定;新的决定请另行召集会商。")
    if not minutes.strip():
        raise PageError(400, "请填写纪要", "请填写会商纪要,本次记录未提交。")
    rec = _record(row)
    n = max(len(decision_text), len(decision_dept), len(decision_due))
    pad = lambda xs: [*xs, *[""] * (n - len(xs))]  # noqa: E731
    decisions, tasks = [], []
    for i, (text, dept, due, ent) in enumerate(
        zip(pad(decision_text), pad(decision_dept), pad(decision_due), pad(decision_entity), strict=True), 1
    ):
        if not text.strip():
            continue
        _depts(c, [dept])
        if not dept:
            raise PageError(400, "请选择责任部门", f"决定 {i} 没有责任部门,本次记录未提交。")
        entity = ent.strip() or (rec.entity_ids[0] if rec.entity_ids else "")
        if not entity or not ID.match(entity):
            raise PageError(400, "缺少主体", f"决定 {i} 需要落到一个主体(任务按主体督办),本次记录未提交。")
        d = O.Decision(text=text.strip()[:500], department=dept, due=_when(due), task_id=f"{cid}-D{i}")
        decisions.append(d)
        tasks.append(
            _build(
                c,
                InspectionTask,
                entity_id=entity,
                task_id=d.task_id,
                department=dept,
                due=d.due,
                kind="plan",
                ref=cid,
                note=f"议事会商决定:{d.text}"[:500],
            )
        )
    if not decisions:
        raise PageError(400, "请填写决定", "会商至少形成一项决定(责任部门与期限),本次记录未提交。")
    for t in tasks:
        await c.producer.send(t, user.actor, dept=c.catalog.taskforce_office)
    done = rec.model_copy(
        update={
            "version": O.now_ms(),
            "status": "concluded",
            "minutes": minutes.strip()[:8000],
            "decisions": decisions,
            "actor": user.actor[:64],
            "at": datetime.now(LOCAL_TZ),
        }
    )
    await publish(c, done)
    return RedirectResponse(f"/taskforce/consultations/{cid}?done=minutes", status_code=303)
