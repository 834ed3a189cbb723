"""Public pages (no login): what the county tells the public (§二(三), §三(三)).

* ``/public``: the eight items, each with its service manual (six elements, the current published
  version and its date, older versions listed) and a short policy explanation in plain Chinese;
* ``/public/cases``: typical cases (典型案例) the office published from closed alerts (masked text);
* ``/public/monthly``: the month's supervision information: warnings by item and level, resolved red
  alerts as one-line summaries (item, signal, dates: no entity, title or personal data), and the
  month's 双随机 results;
* ``/public/spot-checks``: the published 双随机 results (entity, date, departments, outcome).

Nothing behind the login appears here (no alert ids, scores, complaint text, inspectors, personal
data): the SQL these pages run selects no entity id, name or text except the spot-checked entity's
name, which 双随机、一公开 publishes by law (``web/publish_queries.py``).

Anonymous traffic cannot load the worker: every public page is rate-limited per client address
(``workbench_public_rate_per_minute``, a small 429 before routing: ``web/ratelimit.py``) and each
page is rendered at most once per ``workbench_public_cache_seconds`` (60 s) whatever the number of
visitors (``web/cache.py``); the office's publishing empties the cache so a new version shows at once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from riskwatch.domain.catalog import MANUAL_ELEMENTS, Item
from schemas.vocabulary import LEVELS_DESC
from web.cache import Cached
from web.data import StoreDown
from web.deps import LOCAL, PageError, ctx, render
from web.publications import ManualVersion, Publications
from web.publish_queries import MONTH_COUNTS_SQL, MONTH_RED_SQL, MONTH_SPOT_SQL, SPOT_SQL, month_bounds
from web.sqlite import state_path
from web.texts import signal_zh

router = APIRouter()
MANUAL_FIELDS = MANUAL_ELEMENTS
__all__ = ["SPOT_SQL", "router", "publications", "published_manual", "forget_pages"]


def publications(request: Request) -> Publications:
    """The app's publication store (manual versions, typical cases), in the workbench state file."""
    st = request.app.state
    if getattr(st, "publications", None) is None:
        st.publications = Publications(state_path(ctx(request).settings.workbench_dir))
    return st.publications


def today() -> str:
    return datetime.now(LOCAL).strftime("%Y-%m-%d")


@dataclass(slots=True, frozen=True)
class PublishedManual:
    """The version of an item's manual the public sees, and the earlier published ones."""

    version: int  # 0: the data file's version (riskwatch/data/manuals/<id>.yaml)
    effective: str
    elements: dict[str, dict[str, str]]  # field -> {"text", "confirm"}
    note: str
    history: list[tuple[int, str, str]]  # (version, effective date, note), newest first, without the shown one


def published_manual(
    item: Item, pubs: Publications, dept_name: Callable[[str], str], version: int | None = None, on: str | None = None
) -> PublishedManual | None:
    """The newest version in effect on ``on`` (today), or ``version`` if it is in effect; None if it is not."""
    on = on or today()
    base = PublishedManual(
        0,
        item.manual.published,
        {k: {"text": e.text, "confirm": e.confirm} for k, e in item.manual.elements(dept_name).items()},
        "初始版本",
        [],
    )
    saved: list[ManualVersion] = [v for v in pubs.manual_versions(item.id) if v.effective <= on]
    shown = [base] + [PublishedManual(v.version, v.effective, v.elements, v.note, []) for v in reversed(saved)]
    pick = shown[-1] if version is None else next((m for m in shown if m.version == version), None)
    if pick is None:
        return None
    history = [(m.version, m.effective, m.note) for m in reversed(shown) if m.version != pick.version]
    return PublishedManual(pick.version, pick.effective, pick.elements, pick.note, history)


def forget_pages(request: Request) -> None:
    """Drop every cached public page (after the office published something)."""
    request.app.state.public_pages = {}


async def cached_page(request: Request, key: str, build: Callable[[], Awaitable[bytes]]) -> HTMLResponse:
    """The page for ``key`` rendered at most once per cache period."""
    st = request.app.state
    pages: dict[str, Cached] = getattr(st, "public_pages", None) or {}
    st.public_pages = pages
    if key not in pages:
        if len(pages) > 500:  # keys are bounded (items, versions, months): this only guards odd traffic
            pages.clear()
        pages[key] = Cached(ctx(request).settings.workbench_public_cache_seconds)
    cache = pages[key]
    reads = cache.reads
    body = await cache.get(build)
    return HTMLResponse(
        body, headers={"Cache-Status": f"riskwatch-workbench; {'fwd=miss' if cache.reads != reads else 'hit'}"}
    )


def page(request: Request, name: str, **context: Any) -> bytes:
    return bytes(render(request, name, public=True, user=None, **context).body)


@router.get("/public")
async def manuals(request: Request):
    async def build() -> bytes:
        return page(request, "public_index.html", items=list(ctx(request).catalog.items.values()))

    return await cached_page(request, "index", build)


def _item(request: Request, item_id: int) -> Item:
    item = ctx(request).catalog.items.get(item_id)
    if item is None:
        raise PageError(404, "事项不存在", f"没有第 {item_id} 项监管事项。")
    return item


@router.get("/public/items/{item_id}")
async def manual(request: Request, item_id: int, version: int | None = None):
    item = _item(request, item_id)
    c = ctx(request)
    m = published_manual(item, publications(request), c.catalog.dept_name, version)
    if m is None:
        raise PageError(404, "版本不存在", f"第 {item_id} 项服务手册没有已发布的第 {version} 版。")

    async def build() -> bytes:
        return page(request, "public_manual.html", item=item, fields=MANUAL_ELEMENTS, m=m, latest=version is None)

    return await cached_page(request, f"manual:{item_id}:{version}", build)


@router.get("/public/items/{item_id}/policy")
async def policy(request: Request, item_id: int):
    item = _item(request, item_id)

    async def build() -> bytes:
        return page(request, "public_policy.html", item=item, paragraphs=item.manual.policy.split("\n"))

    return await cached_page(request, f"policy:{item_id}", build)


@router.get("/public/cases")
async def cases(request: Request):
    async def build() -> bytes:
        return page(request, "public_cases.html", cases=publications(request).cases())

    return await cached_page(request, "cases", build)


def _shift(ym: int, months: int) -> str:
    n = (ym // 100) * 12 + (ym % 100 - 1) + months
    return f"{n // 12:04d}-{n % 12 + 1:02d}"


@router.get("/public/monthly")
async def monthly(request: Request, month: str = ""):
    month = month or datetime.now(LOCAL).strftime("%Y-%m")
    b = month_bounds(month)
    if b is None:
        raise PageError(404, "月份无效", "请按 年-月 选择月份,例如 2026-12。")
    ym, label = b
    c = ctx(request)
    nxt = _shift(ym, 1)

    async def build() -> bytes:
        counts = await c.reader.rows(MONTH_COUNTS_SQL, ym=ym)
        red = await c.reader.rows(MONTH_RED_SQL, ym=ym)
        spots = await c.reader.rows(MONTH_SPOT_SQL, ym=ym)
        table: dict[int, dict[str, int]] = {}
        for r in counts:
            table.setdefault(int(r["item_id"]), {})[r["level"]] = int(r["n"])
        lines = [
            {
                "day": r["updated_at"],
                "item_id": int(r["item_id"]),
                "item_name": r["item_name"],
                "signal": signal_zh(r["rule"]).removeprefix("规则:"),
                "first_seen": r["first_seen"],
            }
            for r in red
        ]
        return page(
            request,
            "public_monthly.html",
            month=month,
            label=label,
            table=table,
            levels=LEVELS_DESC,
            red=lines,
            spots=spots,
            down=None,
            prev=_shift(ym, -1),
            next=nxt if nxt <= datetime.now(LOCAL).strftime("%Y-%m") else None,
        )

    try:
        return await cached_page(request, f"monthly:{month}", build)
    except StoreDown:  # kept a few seconds (web/cache.py), then asked again
        return render(
            request,
            "public_monthly.html",
            public=True,
            user=None,
            month=month,
            label=label,
            table={},
            levels=LEVELS_DESC,
            red=[],
            spots=[],
            down="监管信息暂时无法读取,请稍后再试。",
            prev=_shift(ym, -1),
            next=None,
        )


@router.get("/public/spot-checks")
async def spot_checks(request: Request):
    """The page is the same for every visitor: rendered once per cache period, from one read."""
    st = request.app.state
    if getattr(st, "spot_checks", None) is None:
        st.spot_checks = Cached(ctx(request).settings.workbench_public_cache_seconds)
    cache: Cached = st.spot_checks
    reads = cache.reads

    async def read_and_render() -> bytes:
        rows = await ctx(request).reader.rows(SPOT_SQL)
        return page(request, "public_spot_checks.html", rows=rows, down=None)

    try:
        body = await cache.get(read_and_render)
    except StoreDown:  # kept a few seconds (web/cache.py): a store that is down is not asked per visitor
        return render(
            request,
            "public_spot_checks.html",
            public=True,
            user=None,
            rows=[],
            down="抽查结果暂时无法读取,请稍后再试。",
        )
    return HTMLResponse(
        body, headers={"Cache-Status": f"riskwatch-workbench; {'fwd=miss' if cache.reads != reads else 'hit'}"}
    )
