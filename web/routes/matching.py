"""专班办公室 · 主体匹配 (/taskforce/matching): events whose entity the edge could not match with
confidence (``match_queue``, from ``events.unmatched``). For each the office sees the candidates with
their scores and chooses one, or registers a new entity (an ``events.registry`` event). The choice
re-emits the original event (same ``event_id``) with that ``entity_id`` and ``match.method = office``,
and a resolution on ``events.unmatched`` that closes the item and remembers the name and address
(``match_aliases``): the next identical one matches with method ``alias``. Office accounts only."""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import datetime

import orjson
from aiokafka.errors import KafkaError
from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse
from pydantic import ValidationError

from edge.imports.rows import resolve
from edge.matching import check_credit_code
from schemas.events import LOCAL_TZ, EntityEvent, MatchQueueItem
from schemas.vocabulary import QUEUED_EVENT_ZH
from streams.engine.identity import kind_of
from web.deps import PageError, check_csrf, ctx, render, require_user
from web.produce import BusDown, Producer
from web.routes.alert import ID
from web.users import User

router = APIRouter()

PENDING_SQL = """
SELECT queue_id, version, event_topic, event, name, address, township, credit_code, licence, alias_key,
       candidate_ids, candidate_names, candidate_addresses, candidate_scores, reason, source, at
FROM {db}.match_queue FINAL WHERE status = 'pending' ORDER BY at DESC LIMIT 200"""
ONE_SQL = "SELECT * FROM {db}.match_queue FINAL WHERE queue_id = %(q)s"
ENTITY_SQL = "SELECT entity_id, name, township FROM {db}.registry FINAL WHERE entity_id = %(e)s AND status = 'active'"


def require_office(user: User = Depends(require_user)) -> User:
    """The task-force office's accounts only (not the leaders' read-only view, not departments)."""
    if user.role != "taskforce":
        raise PageError(403, "无权访问", "此页面仅限专班办公室使用。")
    return user


async def send_raw(producer: Producer, topic: str, key: bytes, value: bytes) -> None:
    """A record that is not an input event (a queue resolution), with the workbench's producer
    (``acks=all``, idempotent); raises :class:`BusDown` if the broker did not acknowledge it."""
    p = await producer._ensure()
    try:
        await asyncio.wait_for(p.send_and_wait(producer.settings.topic(topic), value=value, key=key), producer.timeout)
    except (TimeoutError, KafkaError, OSError) as e:
        raise BusDown(f"消息总线(Kafka)未确认写入:{type(e).__name__}") from None


def _item(row: dict) -> MatchQueueItem:
    return MatchQueueItem(
        queue_id=row["queue_id"],
        version=int(row["version"]),
        event_topic=row["event_topic"],
        event=row["event"],
        name=row["name"],
        address=row["address"],
        township=row["township"],
        credit_code=row["credit_code"],
        licence=row["licence"],
        alias_key=row["alias_key"],
        reason=row["reason"],
        source=row["source"],
        at=row["at"] if isinstance(row["at"], datetime) else datetime.fromisoformat(str(row["at"])),
    )


@router.get("/taskforce/matching")
async def page(request: Request, user: User = Depends(require_office)):
    c = ctx(request)
    items = []
    for r in await c.reader.rows(PENDING_SQL):
        try:
            ev = orjson.loads(r["event"])
        except orjson.JSONDecodeError:
            ev = {}
        cands = list(
            zip(r["candidate_ids"], r["candidate_names"], r["candidate_addresses"], r["candidate_scores"], strict=True)
        )
        items.append(
            {**r, "ev": ev, "kind_zh": QUEUED_EVENT_ZH.get(kind_of(r["event_topic"]), r["event_topic"]), "cands": cands}
        )
    return render(
        request,
        "matching.html",
        items=items,
        kinds=c.catalog.entity_kinds,
        done=request.query_params.get("done", ""),
        entity=request.query_params.get("entity", ""),
    )


async def _pending(request: Request, queue_id: str) -> MatchQueueItem:
    if not ID.match(queue_id):
        raise PageError(404, "记录不存在", "待匹配记录编号无效。")
    row = await ctx(request).reader.one(ONE_SQL, q=queue_id)
    if row is None:
        raise PageError(404, "记录不存在", f"没有待匹配记录 {queue_id}。")
    if row["status"] != "pending":
        raise PageError(409, "已处理", f"该记录已由 {row['resolved_by']} 匹配到主体 {row['resolved_entity_id']}。")
    return _item(row)


async def _resolve(request: Request, user: User, item: MatchQueueItem, entity_id: str) -> RedirectResponse:
    c = ctx(request)
    try:
        ev = resolve(item, entity_id, c.catalog)
    except ValidationError as ex:
        raise PageError(400, "内容不合规", "; ".join(x["msg"] for x in ex.errors()) + "。本次匹配未提交。") from None
    dept = item.event_topic.rsplit(".", 1)[1] if kind_of(item.event_topic) != item.event_topic else ""
    await c.producer.send(ev, user.actor, dept=dept)
    now = datetime.now(LOCAL_TZ)
    done = item.model_copy(
        update=dict(
            status="resolved",
            version=max(item.version + 1, int(now.timestamp() * 1000)),
            resolved_entity_id=entity_id,
            resolved_by=user.actor[:64],
            at=now,
        )
    )
    await send_raw(c.producer, MatchQueueItem.topic, item.queue_id.encode(), done.model_dump_json().encode())
    return RedirectResponse(f"/taskforce/matching?done={item.queue_id}&entity={entity_id}", status_code=303)


@router.post("/taskforce/matching/{queue_id}/choose", dependencies=[Depends(check_csrf)])
async def choose(request: Request, queue_id: str, user: User = Depends(require_office), entity_id: str = Form("")):
    item = await _pending(request, queue_id)
    entity_id = entity_id.strip()
    if not ID.match(entity_id) or await ctx(request).reader.one(ENTITY_SQL, e=entity_id) is None:
        raise PageError(400, "主体不存在", f"名录库中没有在业主体「{entity_id}」,本次匹配未提交。")
    return await _resolve(request, user, item, entity_id)


@router.post("/taskforce/matching/{queue_id}/register", dependencies=[Depends(check_csrf)])
async def register(
    request: Request,
    queue_id: str,
    user: User = Depends(require_office),
    name: str = Form(""),
    kind: str = Form(""),
    township: str = Form(""),
    address: str = Form(""),
    licence: str = Form(""),
    credit_code: str = Form(""),
):
    """A new entity for the registry (名录库 ``registered``), then the item resolved to it."""
    c = ctx(request)
    item = await _pending(request, queue_id)
    entity_id = f"new-{uuid.uuid5(uuid.NAMESPACE_URL, 'match:' + queue_id).hex[:16]}"
    if credit_code.strip():
        try:
            entity_id = check_credit_code(credit_code)
        except ValueError as e:
            raise PageError(400, "信用代码无效", f"{e},本次登记未提交。") from None
    if not re.sub(r"\s", "", name):
        raise PageError(400, "缺少名称", "请填写主体名称,本次登记未提交。")
    try:
        ev = c.producer.build(
            EntityEvent,
            entity_id=entity_id,
            action="registered",
            name=name,
            kind=kind,
            township=township,
            address=address,
            licence=licence,
            source=f"workbench:{user.actor}"[:200],
        )
    except ValidationError as ex:
        raise PageError(400, "内容不合规", "; ".join(x["msg"] for x in ex.errors()) + "。本次登记未提交。") from None
    await c.producer.send(ev, user.actor)
    return await _resolve(request, user, item, entity_id)
