"""专班办公室 · 研判 (/taskforce/judge): one queue of what riskwatch could not route with confidence, and the
office's decisions on it.

The queue lists (limits and the routing-confidence bound in ``riskwatch/data/judging.yaml``):
unmatched complaints (``match_queue``, resolved on the matching page), entities of a kind without an item,
open alerts of low routing confidence (no item, a kind without an item, or the office as only receiver),
alerts a department answered 非本部门, and disputed 双告知 (table ``notices``, when it exists).

Each decision is an office record on ``office.decisions`` (the office's own topic; the worker's sink stores
it in ``judgements``), sealed into the office's audit chain (who, why; :mod:`streams.engine.office`):

- 派发: an ``InspectionTask`` per chosen department on ``events.task.taskforce`` (the office may assign any
  department; the task is then followed by the same 督促 as every task); on an alert also a 改派 (reassign)
  on ``events.feedback.taskforce``, which enters the alert's own history chain;
- 合并 into an existing alert (not closed): a 合并线索 (``merged``) on ``events.feedback.taskforce`` naming the clue
  and the reason, which enters the target alert's own history chain and is told to its receivers;
- 驳回 with a reason: the record;
- 定性: a new kind with its lead and cooperating departments, a version appended to ``kinds_local.yaml``
  (the worker applies it to the next batch), and the entity's registry update to that kind;
- 报市专班: a referral (``R-…``) awaiting the city office, whose answer arrives through the city link as a task
  on ``events.task.city`` with ``ref`` = the referral id.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from fastapi import APIRouter, Depends, FastAPI, Form, Request
from fastapi.responses import RedirectResponse
from pydantic import ValidationError

from riskwatch.domain.catalog import Catalog, load_catalog
from riskwatch.settings import DATA_DIR
from schemas.events import LOCAL_TZ, DisposalFeedback, EntityEvent, InspectionTask
from schemas.vocabulary import JUDGE_SUBJECT_ZH
from streams.engine import office as O
from web.deps import Ctx, PageError, check_csrf, ctx, render
from web.routes.alert import ID
from web.routes.matching import require_office, send_raw
from web.routes.taskforce import NOT_OURS_SQL
from web.users import User

# the office page's 非本部门 query, with the entity (a 派发 needs it)
DISPUTES_SQL = NOT_OURS_SQL.replace(
    "SELECT a.alert_id AS alert_id,", "SELECT a.alert_id AS alert_id, a.entity_id AS entity_id,"
)

router = APIRouter()
CODE = re.compile(r"^[a-z][a-z0-9_]{1,31}$")


@dataclass(frozen=True, slots=True)
class Judging:
    """``riskwatch/data/judging.yaml``."""

    no_item: bool = True
    unassigned_kinds: bool = True
    only_office: bool = True
    kinds: tuple[str, ...] = ()
    limits: tuple[tuple[str, int], ...] = ()
    answer_days: int = 10

    def limit(self, source: str) -> int:
        return dict(self.limits).get(source, 50)


def load_judging(path: Path | None = None) -> Judging:
    raw = yaml.safe_load((path or DATA_DIR / "judging.yaml").read_text(encoding="utf-8")) or {}
    lc = raw.get("low_confidence") or {}
    return Judging(
        no_item=bool(lc.get("no_item", True)),
        unassigned_kinds=bool(lc.get("unassigned_kinds", True)),
        only_office=bool(lc.get("only_office", True)),
        kinds=tuple(str(k) for k in lc.get("kinds") or ()),
        limits=tuple((str(k), int(v)) for k, v in (raw.get("limits") or {}).items()),
        answer_days=int((raw.get("city") or {}).get("answer_days", 10)),
    )


# --- the catalog with the office's kinds, for the workbench ------------------------------------------------------


class _Kinds:
    """The workbench's view of ``kinds_local.yaml``: swaps ``ctx.catalog`` (and the producer's) when it changes."""

    def __init__(self, c: Ctx) -> None:
        self.path = O.local_kinds_path(c.settings.catalog_path)
        self.base: Catalog = load_catalog(c.settings.catalog_path)
        self.seen: tuple[int, int] | None = None

    def refresh(self, c: Ctx) -> None:
        try:
            s = self.path.stat()
            sig: tuple[int, int] | None = (s.st_mtime_ns, s.st_size)
        except FileNotFoundError:
            sig = None
        if sig == self.seen:
            return
        self.seen = sig
        cat = O.with_local_kinds(self.base, O.current(O.load_versions(self.path))) if sig else self.base
        c.catalog = cat
        c.producer.catalog = cat


def install(app: FastAPI, c: Ctx) -> None:
    """The one call in ``web/app.py``: the 研判 routes, and every request sees the office's current kinds."""
    kinds = _Kinds(c)
    kinds.refresh(c)
    app.state.local_kinds = kinds

    @app.middleware("http")
    async def local_kinds(request: Request, call_next):
        kinds.refresh(c)
        return await call_next(request)

    app.include_router(router)


# --- the office chain head (one workbench process writes the office's records) -----------------------------------

_lock = asyncio.Lock()
_head: dict[str, tuple[int, str]] = {}
HEAD_SQL = """
SELECT seq, hash FROM (SELECT seq, hash FROM {db}.judgements FINAL
                       UNION ALL SELECT seq, hash FROM {db}.consultations FINAL)
ORDER BY seq DESC LIMIT 1"""


async def publish(c: Ctx, record: O.R) -> O.R:
    """Seal ``record`` into the office chain and produce it on ``office.decisions`` (acks=all)."""
    async with _lock:
        head = _head.get(c.settings.topic_prefix)
        if head is None:
            row = await c.reader.one(HEAD_SQL)
            head = (int(row["seq"]), str(row["hash"])) if row else (0, "")
        sealed = O.seal(record, *head)
        key = (sealed.judgement_id if isinstance(sealed, O.Judgement) else sealed.consultation_id).encode()
        await send_raw(c.producer, O.OFFICE_TOPIC, key, sealed.model_dump_json().encode())
        _head[c.settings.topic_prefix] = (sealed.seq, sealed.hash)
    return sealed


def _unassigned(cat: Catalog, judging: Judging) -> list[str]:
    covered = {k for it in cat.items.values() for k in it.objects}
    return sorted({*(k for k in cat.entity_kinds if k not in covered), *judging.kinds})


def _now() -> datetime:
    return datetime.now(LOCAL_TZ)


LOW_SQL = """
SELECT alert_id, title, entity_id, entity_name, entity_kind, item_id, level, level_zh, status, departments, first_seen
FROM {db}.alerts FINAL
WHERE status IN ('firing', 'acknowledged', 'disposing')
  AND ((%(no_item)s AND item_id IS NULL) OR (%(by_kind)s AND has(%(kinds)s, entity_kind))
       OR (%(only_office)s AND departments = [%(office)s]))
ORDER BY first_seen DESC LIMIT %(n)s"""
UNMATCHED_SQL = """
SELECT queue_id, event_topic, name, address, township, reason, at FROM {db}.match_queue FINAL
WHERE status = 'pending' ORDER BY at DESC LIMIT %(n)s"""
ENTITIES_SQL = """
SELECT entity_id, name, kind, township, address, updated_at FROM {db}.registry FINAL
WHERE status = 'active' AND has(%(kinds)s, kind) ORDER BY updated_at DESC LIMIT %(n)s"""
NOTICES_SQL = """
SELECT notice_id, department, kind, entity_id, text, answer, answered_by, answered_at FROM {db}.notices FINAL
WHERE status = 'disputed' ORDER BY answered_at DESC LIMIT %(n)s"""
JUDGED_SQL = """
SELECT * FROM {db}.judgements FINAL ORDER BY seq DESC LIMIT 1 BY judgement_id LIMIT 200"""
ANSWERS_SQL = """
SELECT ref, department, due, note, occurred_at FROM {db}.events_task FINAL WHERE has(%(refs)s, ref)"""


async def queue(c: Ctx, judging: Judging) -> dict[str, Any]:
    """The queue's sources, each without the items the office already decided."""
    kinds = _unassigned(c.catalog, judging)
    office = c.catalog.taskforce_office
    judged = await c.reader.rows(JUDGED_SQL)
    done = {(j["subject"], j["subject_id"]) for j in judged}
    low = await c.reader.rows(
        LOW_SQL,
        no_item=judging.no_item,
        by_kind=judging.unassigned_kinds,
        kinds=kinds,
        only_office=judging.only_office,
        office=office,
        n=judging.limit("alerts"),
    )
    try:
        disputed = await c.reader.rows(NOTICES_SQL, n=judging.limit("notices"))
    except Exception:  # noqa: BLE001 — the notices table comes with 双告知 (migration 15); absent: nothing disputed
        disputed = []
    referrals = [j["target"] for j in judged if j["action"] == "city"]
    answers = {a["ref"]: a for a in await c.reader.rows(ANSWERS_SQL, refs=referrals)} if referrals else {}
    now = _now()
    for j in judged:
        j["answer_task"] = answers.get(j["target"]) if j["action"] == "city" else None
        at = j["at"] if isinstance(j["at"], datetime) else datetime.fromisoformat(str(j["at"]))
        j["overdue"] = (
            j["action"] == "city"
            and not j["answer_task"]
            and now - at.astimezone(LOCAL_TZ) > timedelta(judging.answer_days)
        )
    return {
        "unmatched": await c.reader.rows(UNMATCHED_SQL, n=judging.limit("unmatched")),
        "entities": [
            e
            for e in await c.reader.rows(ENTITIES_SQL, kinds=kinds, n=judging.limit("entities"))
            if ("entity", e["entity_id"]) not in done
        ],
        "low": [a for a in low if ("alert", a["alert_id"]) not in done],
        "disputes": [d for d in await c.reader.rows(DISPUTES_SQL) if ("dispute", d["alert_id"]) not in done],
        "notices": [n for n in disputed if ("notice", f"{n['notice_id']}/{n['department']}") not in done],
        "judged": judged,
        "kinds": kinds,
    }


@router.get("/taskforce/judge")
async def page(request: Request, user: User = Depends(require_office)):
    c = ctx(request)
    judging = load_judging()
    q = await queue(c, judging)
    local = O.load_versions(O.local_kinds_path(c.settings.catalog_path))
    return render(
        request,
        "judge.html",
        **q,
        judging=judging,
        local=list(reversed(local)),
        fields={"food": "食品", "drug": "药品", "industrial": "工业产品", "special_equipment": "特种设备"},
        actions=O.ACTIONS,
        subject_zh=JUDGE_SUBJECT_ZH,
        done=request.query_params.get("done", ""),
    )


def _depts(c: Ctx, values: list[str]) -> list[str]:
    out = [d for d in dict.fromkeys(v.strip() for v in values) if d]
    bad = [d for d in out if d not in c.catalog.departments]
    if bad:
        raise PageError(400, "部门无效", f"未知部门 {', '.join(bad)},本次研判未提交。")
    return out


def _reason(reason: str) -> str:
    reason = reason.strip()
    if len(reason) < 2:
        raise PageError(400, "请写明理由", "每项研判决定都要写明理由(记入审计链),本次研判未提交。")
    return reason[:2000]


@router.post("/taskforce/judge/act", dependencies=[Depends(check_csrf)])
async def act(
    request: Request,
    user: User = Depends(require_office),
    subject: str = Form(""),
    subject_id: str = Form(""),
    entity_id: str = Form(""),
    action: str = Form(""),
    departments: list[str] = Form([]),
    target: str = Form(""),
    due_days: int = Form(3),
    reason: str = Form(""),
):
    """派发 / 合并 / 驳回 / 报市专班 of one queue item."""
    c = ctx(request)
    if subject not in JUDGE_SUBJECT_ZH or action not in ("dispatch", "merge", "reject", "city"):
        raise PageError(400, "请求有误", "研判对象或决定无效,本次研判未提交。")
    if not subject_id or len(subject_id) > 120 or (entity_id and not ID.match(entity_id)):
        raise PageError(400, "请求有误", "研判对象编号无效,本次研判未提交。")
    why = _reason(reason)
    depts = _depts(c, departments)
    jid = f"J-{uuid.uuid4().hex[:12]}"
    status = "done"
    if action == "dispatch":
        if not depts:
            raise PageError(400, "请选择部门", "派发需要至少选择一个部门,本次研判未提交。")
        if not entity_id:
            raise PageError(400, "尚无主体", "未匹配的投诉请先在「主体匹配」页确定主体,再派发。")
        due = _now() + timedelta(days=max(1, min(due_days, 90)))
        tasks = []
        for d in depts:
            t = _build(
                c,
                InspectionTask,
                entity_id=entity_id,
                task_id=f"{jid}-{d}",
                department=d,
                due=due,
                kind="alert" if subject in ("alert", "dispute") else "plan",
                ref=subject_id[:200],
                note=f"专班研判派发:{why}"[:500],
            )
            tasks.append(t)
        if subject in ("alert", "dispute"):  # the alert's receivers change, in its own history chain
            fb = _build(
                c,
                DisposalFeedback,
                entity_id=entity_id,
                alert_id=subject_id,
                department=c.catalog.taskforce_office,
                status="reassign",
                assign_to=depts,
                comment=f"专班研判派发:{why}"[:2000],
            )
            await c.producer.send(fb, user.actor, dept=c.catalog.taskforce_office)
        for t in tasks:
            await c.producer.send(t, user.actor, dept=c.catalog.taskforce_office)
        target = ",".join(t.task_id for t in tasks)
    elif action == "merge":
        target = target.strip()
        row = (
            await c.reader.one(
                "SELECT alert_id, entity_id, status FROM {db}.alerts FINAL WHERE alert_id = %(a)s", a=target
            )
            if ID.match(target)
            else None
        )
        if row is None:
            raise PageError(400, "预警不存在", f"没有预警「{target}」可以合并进去,本次研判未提交。")
        if row["status"] == "closed":
            raise PageError(400, "预警已关闭", f"预警「{target}」已关闭,不能再合并线索,本次研判未提交。")
        if subject in ("alert", "dispute") and subject_id == target:
            raise PageError(400, "请求有误", "不能把预警合并到它自己,本次研判未提交。")
        # the target alert's own history records the merge, and its receivers are told (专班研判合并)
        fb = _build(
            c,
            DisposalFeedback,
            entity_id=row["entity_id"],
            alert_id=target,
            department=c.catalog.taskforce_office,
            status="merged",
            comment=f"专班研判合并:{JUDGE_SUBJECT_ZH[subject]} {subject_id}:{why}"[:2000],
            user=user.name[:64],
        )
        await c.producer.send(fb, user.actor, dept=c.catalog.taskforce_office)
    elif action == "city":
        target, status = f"R-{jid[2:]}", "awaiting_city"
    else:
        target = ""
    rec = O.Judgement(
        judgement_id=jid,
        version=O.now_ms(),
        subject=subject,
        subject_id=subject_id,
        entity_id=entity_id,
        action=action,
        departments=depts,
        target=target,
        reason=why,
        status=status,
        actor=user.actor[:64],
        at=_now(),
    )
    sealed = await publish(c, rec)
    if action == "city":  # the city link takes office.city to the city office (masked like every copy)
        await send_raw(c.producer, O.CITY_TOPIC, target.encode(), sealed.model_dump_json().encode())
    return RedirectResponse(f"/taskforce/judge?done={jid}", status_code=303)


def _build(c: Ctx, model, **fields):
    try:
        return c.producer.build(model, source="workbench:taskforce", **fields)
    except ValidationError as ex:
        raise PageError(400, "内容不合规", "; ".join(x["msg"] for x in ex.errors()) + "。本次研判未提交。") from None


@router.post("/taskforce/judge/define", dependencies=[Depends(check_csrf)])
async def define(
    request: Request,
    user: User = Depends(require_office),
    code: str = Form(""),
    name: str = Form(""),
    lead: str = Form(""),
    cooperating: list[str] = Form([]),
    field: str = Form("industrial"),
    entity_id: str = Form(""),
    reason: str = Form(""),
):
    """定性: a new kind (or a home for a kind without an item) with its lead and cooperating departments, in force at
    once; the entity it was decided for is moved to that kind in the registry."""
    c = ctx(request)
    code, name, why = code.strip(), name.strip(), _reason(reason)
    if not CODE.match(code):
        raise PageError(400, "类别代码无效", "类别代码用小写英文字母、数字和下划线(2–32 位,字母开头),本次定性未提交。")
    if not name or len(name) > 40:
        raise PageError(400, "缺少类别名称", "请填写类别的中文名称(不超过 40 字),本次定性未提交。")
    coop = [d for d in _depts(c, cooperating) if d != lead]
    _depts(c, [lead])
    if not lead:
        raise PageError(400, "请选择牵头部门", "定性需要一个牵头部门,本次定性未提交。")
    entity = None
    if entity_id:
        if not ID.match(entity_id):
            raise PageError(404, "主体不存在", "主体编号无效。")
        entity = await c.reader.one("SELECT * FROM {db}.registry FINAL WHERE entity_id = %(e)s", e=entity_id)
        if entity is None:
            raise PageError(404, "主体不存在", f"名录库中没有主体 {entity_id}。")
    path = O.local_kinds_path(c.settings.catalog_path)
    kinds: _Kinds = request.app.state.local_kinds
    kind = O.LocalKind(
        code=code,
        name=name,
        lead=lead,
        cooperating=tuple(coop),
        field=field,
        by=user.actor[:64],
        at=_now().isoformat(timespec="seconds"),
        reason=why,
    )
    try:
        stored = O.append_version(path, kind, kinds.base)
    except ValueError as e:
        raise PageError(400, "定性未提交", f"{e}。") from None
    kinds.refresh(c)
    if entity is not None:
        ev = _build(
            c,
            EntityEvent,
            entity_id=entity_id,
            action="updated",
            name=entity["name"],
            kind=code,
            township=entity["township"],
            address=entity["address"],
            licence=entity["licence"],
            lat=entity["lat"],
            lon=entity["lon"],
        )
        await c.producer.send(ev, user.actor)
    jid = f"J-{uuid.uuid4().hex[:12]}"
    rec = O.Judgement(
        judgement_id=jid,
        version=O.now_ms(),
        subject="entity",
        subject_id=entity_id or code,
        entity_id=entity_id,
        action="define",
        departments=[lead, *coop],
        target=f"{code} v{stored.version}",
        reason=why,
        actor=user.actor[:64],
        at=_now(),
    )
    await publish(c, rec)
    return RedirectResponse(f"/taskforce/judge?done={jid}", status_code=303)
