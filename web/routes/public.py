"""Public pages (no login): the service manual of each item (§二(三)) from the catalog, with blanks
shown as 待补充, and the published 双随机 results (entity, date, departments, outcome) once the
inspection result exists. Nothing behind the login appears here: no alerts, scores, complaint
text, inspectors or personal data.

Anonymous traffic cannot load the worker: every public page is rate-limited per client address
(``workbench_public_rate_per_minute``, a small 429 before routing: ``web/ratelimit.py``) and the
spot-check page is read and rendered at most once per ``workbench_public_cache_seconds`` (60 s)
whatever the number of visitors (``web/cache.py``).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from web.cache import Cached
from web.data import StoreDown
from web.deps import PageError, ctx, render

router = APIRouter()
MANUAL_FIELDS = (
    ("implementing_body", "实施主体"),
    ("legal_basis", "法律依据"),
    ("measures", "监管措施"),
    ("standards", "监管标准"),
    ("procedure", "监管流程"),
    ("complaint_channel", "投诉举报渠道"),
)

SPOT_SQL = """
SELECT t.ref AS ref, any(r.name) AS entity_name, any(r.township) AS township, t.item_id AS item_id,
       min(i.occurred_at) AS inspected_at, groupUniqArray(t.department) AS departments,
       argMin(i.outcome, i.occurred_at) AS outcome
FROM (SELECT entity_id, item_id, department, ref, occurred_at FROM {db}.events_task FINAL
      WHERE kind = 'spot_check') AS t
INNER JOIN (SELECT entity_id, item_id, occurred_at, outcome FROM {db}.events_inspection FINAL) AS i
    ON i.entity_id = t.entity_id AND i.item_id = t.item_id
LEFT JOIN (SELECT entity_id, name, township FROM {db}.registry FINAL) AS r ON r.entity_id = t.entity_id
WHERE i.occurred_at >= t.occurred_at
GROUP BY t.entity_id, t.item_id, t.ref
ORDER BY inspected_at DESC
LIMIT 500"""


@router.get("/public")
async def manuals(request: Request):
    return render(request, "public_index.html", public=True, user=None, items=list(ctx(request).catalog.items.values()))


@router.get("/public/items/{item_id}")
async def manual(request: Request, item_id: int):
    c = ctx(request)
    item = c.catalog.items.get(item_id)
    if item is None:
        raise PageError(404, "事项不存在", f"没有第 {item_id} 项监管事项。")
    return render(request, "public_manual.html", public=True, user=None, item=item, fields=MANUAL_FIELDS)


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
        return render(request, "public_spot_checks.html", public=True, user=None, rows=rows, down=None).body

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
