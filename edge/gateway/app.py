"""The gateway's FastAPI application: ``POST /v1/{kind}``, ``GET /healthz``, OpenAPI docs at ``/docs``.

One request, in this order (each refusal is cheap and says why):

1. body size: 413 beyond ``gateway_max_body_bytes`` (the declared length first, then while reading);
2. ``Authorization: Bearer <key>``: 401 for an unknown or disabled key; 403 for a kind the source may not send;
3. signature (``X-Timestamp``, ``X-Nonce``, ``X-Signature``; required when the source says so): 401 for a
   bad signature, a timestamp outside the window or a replayed nonce;
4. parse (one object, an array, NDJSON): 400 for malformed JSON (the body goes to the dead letters);
5. the source's rate: 429 with ``Retry-After``;
6. map, validate, fetch snapshots, produce events and dead letters, wait for Kafka: 202 all accepted,
   207 some refused, 400 none accepted, 503 Kafka did not acknowledge (nothing counts as accepted).

Run it with ``riskwatch gateway run`` (or ``start`` in the background); see docs/sources.md.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import math
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse

from edge.gateway.accept import Accepted, Acceptor, BodyError, Items, messages, parse_body
from edge.gateway.bus import Bus, BusDown
from edge.gateway.evidence import EvidenceError, SnapshotFetcher
from edge.gateway.keys import Source, SourceStore
from edge.gateway.limits import EventRate
from edge.matching import Matcher, StoreUnavailable, load_matcher
from riskwatch.domain.catalog import Catalog, load_catalog
from riskwatch.settings import Settings
from schemas.events import VideoDetection

log = logging.getLogger("riskwatch.edge.gateway")


class Kind(StrEnum):
    sensor = "sensor"
    video = "video"
    complaint = "complaint"
    registry = "registry"
    device = "device"


class MatcherCache:
    """The registry snapshot complaints without an ``entity_id`` are matched against: read through
    the worker's query port (off the event loop), at most every ``ttl`` seconds; while the registry
    cannot be read, the last snapshot (or none: such complaints are queued for the office)."""

    def __init__(self, settings: Settings, ttl: float = 60.0):
        self.settings, self.ttl = settings, ttl
        self._matcher: Matcher | None = None
        self._at = -1e18

    async def get(self) -> Matcher | None:
        if time.monotonic() - self._at >= self.ttl:
            self._at = time.monotonic()
            try:
                self._matcher = await asyncio.to_thread(load_matcher, self.settings)
            except StoreUnavailable as e:
                log.warning("registry not readable for matching (%s): complaints without entity_id are queued", e)
        return self._matcher


@dataclass
class Gateway:
    """What the routes share: settings, the source store, the acceptor, the producer, limits."""

    settings: Settings
    store: SourceStore
    acceptor: Acceptor
    bus: Bus
    rate: EventRate
    matchers: MatcherCache
    fetcher: SnapshotFetcher


def _refuse(status: int, error: str, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers=headers)


class Refused(Exception):
    def __init__(self, response: JSONResponse):
        self.response = response


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    too_big = _refuse(413, "请求体过大", f"body over {limit} bytes; split it into several requests")
    if declared.isdigit() and int(declared) > limit:
        raise Refused(too_big)
    buf = bytearray()
    async for chunk in request.stream():
        buf += chunk
        if len(buf) > limit:
            raise Refused(too_big)
    return bytes(buf)


def _authenticate(gw: Gateway, request: Request, kind: str, body: bytes) -> Source:
    auth = request.headers.get("authorization", "")
    scheme, _, key = auth.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise Refused(_refuse(401, "缺少密钥", "send the source key as `Authorization: Bearer <key>`"))
    src = gw.store.verify(key.strip())
    if src is None:
        raise Refused(_refuse(401, "密钥无效", "unknown key (rotated or mistyped?)"))
    if src.disabled:
        raise Refused(_refuse(401, "来源已停用", f"source {src.name} is disabled"))
    if kind not in src.kinds:
        raise Refused(
            _refuse(403, "无权提交此类数据", f"source {src.name} may send {', '.join(src.kinds)}, not {kind}")
        )
    sig = request.headers.get("x-signature")
    if sig is None and not src.require_signature:
        return src
    ts, nonce = request.headers.get("x-timestamp", ""), request.headers.get("x-nonce", "")
    if not (sig and ts and nonce):
        raise Refused(_refuse(401, "缺少签名", f"source {src.name} must sign: X-Timestamp, X-Nonce, X-Signature"))
    window = gw.settings.gateway_signature_window_seconds
    try:
        skew = abs(time.time() - float(ts))
    except ValueError:
        raise Refused(_refuse(401, "签名时间戳无效", "X-Timestamp must be unix seconds")) from None
    if skew > window:
        raise Refused(
            _refuse(401, "签名已过期", f"X-Timestamp is {skew:.0f} s from the gateway's clock (window {window} s)")
        )
    expected = hmac.new(key.strip().encode(), ts.encode() + b"\n" + nonce.encode() + b"\n" + body, hashlib.sha256)
    if not hmac.compare_digest(expected.hexdigest(), sig.strip().lower()):
        raise Refused(_refuse(401, "签名错误", "X-Signature is not hex HMAC-SHA256(key, timestamp\\nnonce\\nbody)"))
    if len(nonce) > 128 or not gw.store.remember_nonce(src.name, nonce, ttl=2 * window):
        raise Refused(_refuse(401, "重放请求", f"nonce {nonce[:40]!r} was already used within the window"))
    return src


async def _evidence(gw: Gateway, out: Accepted, source: str) -> None:
    """Fetch each snapshot once; the detection's evidence_ref becomes sha256:<hex> (or the URL on failure)."""
    swap: dict[int, VideoDetection] = {}
    for snap in out.snapshots:
        try:
            ref = await gw.fetcher.fetch(snap.url, snap.hosts)
        except EvidenceError as e:
            log.warning("source %s, event %s: snapshot not kept: %s", source, snap.event.event_id, e)
            ref = snap.url[:500]
        swap[id(snap.event)] = snap.event.model_copy(update={"evidence_ref": ref})
    out.events = [swap.get(id(e), e) for e in out.events]


router = APIRouter()


@router.get("/healthz", include_in_schema=False)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.post(
    "/v1/{kind}",
    status_code=202,
    summary="Send events (one JSON object, a JSON array, or NDJSON)",
    responses={
        202: {"description": "Every event accepted and acknowledged by Kafka"},
        207: {"description": "Some items refused: `results` names each refused item's field path"},
        400: {"description": "Nothing accepted (malformed JSON, or every item refused)"},
        401: {"description": "Unknown or disabled key; bad, expired or replayed signature"},
        403: {"description": "The source may not send this kind"},
        413: {"description": "Body over the configured limit"},
        429: {"description": "The source's rate limit: retry after `Retry-After` seconds"},
        503: {"description": "Kafka did not acknowledge: nothing was accepted; retry (same event_id)"},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"type": ["object", "array"]}},
                "application/x-ndjson": {"schema": {"type": "string"}},
            },
        }
    },
)
async def ingest(request: Request, kind: Kind = PathParam(description="Event kind")) -> JSONResponse:
    """Events of one kind from one source. ``source`` is set from the key, never from the body."""
    gw: Gateway = request.app.state.gateway
    try:
        body = await _read_body(request, gw.settings.gateway_max_body_bytes)
        src = _authenticate(gw, request, kind.value, body)
    except Refused as r:
        return r.response
    try:
        items = parse_body(body, request.headers.get("content-type", "application/json"))
        n = len(items.values)
        wait = gw.rate.take(src.name, n, src.rate)
        if wait > 0:
            return _refuse(
                429,
                "提交过于频繁",
                f"source {src.name} is limited to {src.rate:g} events/s",
                {"Retry-After": str(max(1, math.ceil(wait)))},
            )
        matcher = await gw.matchers.get() if kind is Kind.complaint else None
        out = gw.acceptor.accept(src, kind.value, items, matcher)
    except BodyError as e:
        dead = gw.acceptor.dead(src.name, kind.value, 0, body, [{"loc": "", "msg": str(e)}])
        try:
            await gw.bus.send_all([dead])
        except BusDown as down:
            return _refuse(503, "消息总线不可用", str(down), {"Retry-After": "5"})
        return _refuse(400, "请求体无法解析", str(e))
    if out.snapshots:
        await _evidence(gw, out, src.name)
    msgs = messages(kind.value, out.events, src.name) + out.queued + out.dead
    try:
        await gw.bus.send_all(msgs)
    except BusDown as e:
        log.warning("source %s: %d events NOT accepted: %s", src.name, len(out.events), e)
        return _refuse(503, "消息总线不可用", f"{e}; nothing was accepted, retry the same events", {"Retry-After": "5"})
    status = 202 if not out.refused else (400 if not out.accepted else 207)
    return JSONResponse(
        {
            "source": src.name,
            "accepted": out.accepted,
            "refused": out.refused,
            "events": len(out.events),
            "queued": sum(len(r.queued) for r in out.results),
            "results": [r.as_json() for r in out.results],
        },
        status_code=status,
    )


def create_app(settings: Settings, catalog: Catalog | None = None, store: SourceStore | None = None) -> FastAPI:
    """The gateway app; ``store`` defaults to ``<gateway_dir>/sources.sqlite``."""
    cat = catalog or load_catalog(settings.catalog_path)
    gw = Gateway(
        settings=settings,
        store=store or SourceStore.at(settings.gateway_dir),
        acceptor=Acceptor(
            cat,
            max_age=timedelta(hours=settings.gateway_max_age_hours),
            extra_hosts=tuple(settings.gateway_snapshot_extra_hosts),
        ),
        bus=Bus(settings),
        rate=EventRate(),
        matchers=MatcherCache(settings),
        fetcher=SnapshotFetcher(
            Path(settings.workbench_dir),
            settings.gateway_snapshot_max_bytes,
            settings.gateway_snapshot_timeout_seconds,
        ),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        await gw.bus.close()
        await gw.fetcher.close()

    app = FastAPI(
        title="riskwatch ingest gateway",
        description="Vendors post events here with their source key. See docs/sources.md.",
        version="1",
        lifespan=lifespan,
    )
    app.state.gateway = gw
    app.state.started_at = datetime.now(UTC)
    app.include_router(router)
    return app


__all__ = ["Items", "create_app"]
