"""专班办公室 · 信息发布: the office edits the service manuals and publishes typical cases (§二(三), §三(三)).

* ``/taskforce/publish``: each item's manual (the version the public sees, versions scheduled for a
  later date), the closed alerts the office may write up, and the published typical cases;
* ``/taskforce/publish/manuals/{item_id}``: edit the six elements and their 待县确认 notes; each save is a
  new version with its publication (effective) date; the public page shows the newest version in effect;
* ``/taskforce/publish/cases/new?alert=<id>``: write a typical case from a resolved or closed alert;
  on publishing, the alert's entity name and id are replaced by 某经营主体 and the text goes through
  :func:`schemas.privacy.mask_pii` (phone, ID, bank card numbers, e-mail).

Every publication is a row of the workbench's hashed publication log (``web/publications.py``) naming
the user. Only the office acts (role taskforce); leaders may look. Forms carry the CSRF token; all
text is escaped by the templates.
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse

from riskwatch.domain.catalog import MANUAL_ELEMENTS, Item
from schemas.privacy import mask_pii
from web.data import StoreDown
from web.deps import PageError, check_csrf, ctx, render, require_taskforce
from web.publish_queries import ALERT_SQL, CLOSED_SQL
from web.routes.alert import ID
from web.routes.inbox import nav_counts
from web.routes.public import forget_pages, publications, published_manual, today
from web.texts import signal_zh
from web.users import User

router = APIRouter()
MAX_TEXT, MAX_CONFIRM, MAX_NOTE, MAX_TITLE = 8000, 500, 200, 100
ANON = "某经营主体"


def _date(v: object) -> str | None:
    s = v.strip() if isinstance(v, str) else ""
    try:
        return datetime.strptime(s, "%Y-%m-%d").strftime("%Y-%m-%d")
    except ValueError:
        return None


def _item(request: Request, item_id: int) -> Item:
    item = ctx(request).catalog.items.get(item_id)
    if item is None:
        raise PageError(404, "事项不存在", f"没有第 {item_id} 项监管事项。")
    return item


def _actor(user: User) -> None:
    if not user.can_act:
        raise PageError(403, "只读账号", "县领导账号只能查看,不能发布。")


async def _nav(request: Request, user: User) -> None:
    """The navigation counts; the manual pages work without ClickHouse, so a store that is down shows none."""
    try:
        request.state.nav_counts = await nav_counts(request, user)
    except StoreDown:
        request.state.nav_counts = None


def redact(text: str, alert: dict) -> str:
    """The case text as published: the alert's entity name and id replaced, then personal numbers masked."""
    for s in (alert.get("entity_name") or "", alert.get("entity_id") or ""):
        if len(s) >= 2:
            text = text.replace(s, ANON)
    return mask_pii(text)


@router.get("/taskforce/publish")
async def office(request: Request, user: User = Depends(require_taskforce)):
    c = ctx(request)
    pubs = publications(request)
    manuals = []
    for item in c.catalog.items.values():
        shown = published_manual(item, pubs, c.catalog.dept_name)
        saved = pubs.manual_versions(item.id)
        manuals.append((item, shown, [v for v in saved if v.effective > today()]))
    try:
        closed, down = await c.reader.rows(CLOSED_SQL), None
    except StoreDown as e:
        closed, down = [], str(e)
    await _nav(request, user)
    return render(
        request,
        "publish.html",
        manuals=manuals,
        closed=closed,
        down=down,
        cases=pubs.cases(),
        published_case=request.query_params.get("case"),
    )


@router.get("/taskforce/publish/manuals/{item_id}")
async def edit_manual(request: Request, item_id: int, user: User = Depends(require_taskforce)):
    c = ctx(request)
    item = _item(request, item_id)
    pubs = publications(request)
    saved = pubs.manual_versions(item_id)
    shown = published_manual(item, pubs, c.catalog.dept_name)
    assert shown is not None
    # the form starts from the newest saved version (also one scheduled for later), else the one in effect
    elements = saved[0].elements if saved else shown.elements
    await _nav(request, user)
    return render(
        request,
        "publish_manual.html",
        item=item,
        fields=MANUAL_ELEMENTS,
        elements=elements,
        shown=shown,
        saved=saved,
        today=today(),
        error=None,
        note="",
        effective=today(),
        just_saved=request.query_params.get("saved"),
    )


@router.post("/taskforce/publish/manuals/{item_id}", dependencies=[Depends(check_csrf)])
async def save_manual(request: Request, item_id: int, user: User = Depends(require_taskforce)):
    _actor(user)
    c = ctx(request)
    item = _item(request, item_id)
    form = await request.form()
    elements: dict[str, dict[str, str]] = {}
    problems = []
    for key, label in MANUAL_ELEMENTS:
        text = str(form.get(key, "")).replace("\r\n", "\n").strip()
        confirm = str(form.get(f"{key}_confirm", "")).strip()
        if not text:
            problems.append(f"“{label}”不能为空")
        if len(text) > MAX_TEXT or len(confirm) > MAX_CONFIRM:
            problems.append(f"“{label}”过长")
        elements[key] = {"text": text, "confirm": confirm}
    effective = _date(form.get("effective"))
    note = str(form.get("note", "")).strip()
    if effective is None:
        problems.append("发布日期格式应为 年-月-日")
    if not note or len(note) > MAX_NOTE:
        problems.append(f"请填写修订说明(不超过 {MAX_NOTE} 字)")
    if problems:
        pubs = publications(request)
        return render(
            request,
            "publish_manual.html",
            400,
            item=item,
            fields=MANUAL_ELEMENTS,
            elements=elements,
            shown=published_manual(item, pubs, c.catalog.dept_name),
            saved=pubs.manual_versions(item_id),
            today=today(),
            error=";".join(problems) + "。本次修订未保存。",
            note=note,
            effective=str(form.get("effective", "")),
            just_saved=None,
        )
    assert effective is not None
    v = publications(request).save_manual(item_id, elements, effective, user.actor, note)
    forget_pages(request)
    return RedirectResponse(f"/taskforce/publish/manuals/{item_id}?saved={v.version}", status_code=303)


async def _closed_alert(request: Request, alert_id: str) -> dict:
    if not ID.match(alert_id):
        raise PageError(404, "预警不存在", "预警编号无效。")
    a = await ctx(request).reader.one(ALERT_SQL, a=alert_id)
    if a is None:
        raise PageError(404, "不能发布", f"预警 {alert_id} 不存在或尚未办结(已解除、已关闭的预警才能编为典型案例)。")
    return a


@router.get("/taskforce/publish/cases/new")
async def new_case(request: Request, alert: str = "", user: User = Depends(require_taskforce)):
    a = await _closed_alert(request, alert)
    signal = signal_zh(a["rule"]).removeprefix("规则:")
    title = f"{a['item_name'] or '综合监管'}:{signal}预警联合处置"
    draft = (
        f"系统监测发现{a['township']}{ANON}出现“{signal}”情况,发出{a['level_zh']}预警,"
        f"推送{a['item_name'] or '相关监管事项'}的牵头和配合部门。"
        "各部门按时签收,联合核查处置,问题已整改到位,预警已解除。"
    )
    await _nav(request, user)
    return render(request, "publish_case.html", a=a, title=title, text=draft, published=today(), error=None)


@router.post("/taskforce/publish/cases", dependencies=[Depends(check_csrf)])
async def publish_case(request: Request, user: User = Depends(require_taskforce)):
    _actor(user)
    form = await request.form()
    a = await _closed_alert(request, str(form.get("alert_id", "")))
    title = str(form.get("title", "")).strip()
    text = str(form.get("text", "")).replace("\r\n", "\n").strip()
    published = _date(form.get("published"))
    problems = []
    if not title or len(title) > MAX_TITLE:
        problems.append(f"标题不能为空且不超过 {MAX_TITLE} 字")
    if not text or len(text) > MAX_TEXT:
        problems.append("案例正文不能为空")
    if published is None:
        problems.append("发布日期格式应为 年-月-日")
    if problems:
        return render(
            request,
            "publish_case.html",
            400,
            a=a,
            title=title,
            text=text,
            published=str(form.get("published", "")),
            error=";".join(problems) + "。本次未发布。",
        )
    assert published is not None
    cs = publications(request).publish_case(
        a["alert_id"], a["item_id"], redact(title, a), redact(text, a), published, user.actor
    )
    forget_pages(request)
    return RedirectResponse(f"/taskforce/publish?case={cs.case_id}", status_code=303)
