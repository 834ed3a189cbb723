"""专班办公室 · 导入 (/taskforce/imports): the office uploads the same Excel/CSV exports as
``riskwatch import`` and sees the same report (refused rows with row numbers and reasons, rows queued
for matching), downloadable as the same CSV. Uploads are limited like attachments
(``workbench_max_upload_bytes``; the CSRF token rides in the form's action URL and is checked before
the body is read). ``source`` is ``import:<layout>:<login>``. Office accounts only."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from aiokafka.errors import KafkaError
from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse
from starlette.datastructures import UploadFile

from edge.imports.layout import KINDS, load_layout
from edge.imports.run import MissingColumns, operator_source, run_import
from edge.imports.table import TableError
from edge.matching import ALIASES_SQL, REGISTRY_SQL, Matcher
from schemas.vocabulary import MATCH_METHOD_ZH
from web.deps import CSRF_REFUSED, PageError, csrf_ok, ctx, render
from web.produce import BusDown
from web.routes.matching import require_office
from web.users import User

router = APIRouter()
REPORT_NAME = re.compile(r"^[^/\\]{1,200}\.report\.csv$")


class _Collect:
    def __init__(self) -> None:
        self.records: list[tuple[str, bytes, bytes]] = []

    def send(self, topic: str, key: bytes, value: bytes) -> None:
        self.records.append((topic, key, value))

    def flush(self) -> None:
        pass


def _report_dir(request: Request) -> Path:
    return Path(ctx(request).settings.workbench_dir) / "imports"


def _layouts() -> list[tuple[str, str]]:
    return [(k, load_layout(k).title) for k in KINDS]


@router.get("/taskforce/imports")
async def page(request: Request, user: User = Depends(require_office)):
    s = ctx(request).settings
    return render(
        request, "imports.html", layouts=_layouts(), max_upload=s.workbench_max_upload_bytes, rep=None, kind=""
    )


async def _send_all(request: Request, records: list[tuple[str, bytes, bytes]]) -> None:
    producer = ctx(request).producer
    p = await producer._ensure()
    try:
        futs = [await p.send(producer.settings.topic(t), value=v, key=k) for t, k, v in records]
        await asyncio.wait_for(asyncio.gather(*futs), producer.timeout + len(records) / 1000)
    except (TimeoutError, KafkaError, OSError) as e:
        raise BusDown(f"消息总线(Kafka)未确认写入:{type(e).__name__}(重新上传同一文件不会产生重复)") from None


@router.post("/taskforce/imports")
async def upload(request: Request, user: User = Depends(require_office)):
    if not csrf_ok(request, request.query_params.get("csrf_token")):  # before the body is read
        raise PageError(403, *CSRF_REFUSED)
    c = ctx(request)
    limit = c.settings.workbench_max_upload_bytes
    form = await request.form(max_files=1, max_fields=8, max_part_size=64 * 1024)
    try:
        kind = str(form.get("kind") or "")
        dry_run = form.get("dry_run") == "1"
        up = form.get("file")
        if kind not in KINDS:
            kinds = "、".join(load_layout(k).title for k in KINDS)
            raise PageError(400, "请选择导入类型", f"请选择导入类型({kinds}),本次导入未执行。")
        if not isinstance(up, UploadFile) or not up.filename:
            raise PageError(400, "请选择文件", "请选择要导入的 .xlsx 或 .csv 文件,本次导入未执行。")
        data = up.file.read(limit + 1)
        if len(data) > limit:
            raise PageError(413, "文件过大", f"导入文件不能超过 {limit // (1024 * 1024)} MB,本次导入未执行。")
        filename = Path(up.filename).name
    finally:
        await form.close()
    matcher = Matcher([])
    if kind != "registry":
        matcher = Matcher.from_rows(await c.reader.rows(REGISTRY_SQL), await c.reader.rows(ALIASES_SQL))
    sink = _Collect()
    layout = load_layout(kind)
    try:
        rep = await asyncio.to_thread(
            run_import,
            data,
            filename,
            kind,
            catalog=c.catalog,
            matcher=matcher,
            source=operator_source(layout.name, user.username),
            dry_run=dry_run,
            sender=None if dry_run else sink,
            settings=c.settings,
            report_dir=_report_dir(request),
        )
    except (MissingColumns, TableError) as e:
        raise PageError(400, "文件不符合版式", f"{filename}:{e}(版式:{layout.title}),未导入任何行。") from None
    if sink.records:
        await _send_all(request, sink.records)
    return render(
        request,
        "imports.html",
        layouts=_layouts(),
        max_upload=limit,
        rep=rep,
        kind=kind,
        kind_title=layout.title,
        METHOD_ZH=MATCH_METHOD_ZH,
    )


@router.get("/taskforce/imports/reports/{name}")
async def report(request: Request, name: str, user: User = Depends(require_office)):
    p = _report_dir(request) / name
    if not REPORT_NAME.match(name) or not p.is_file():
        raise PageError(404, "报告不存在", "导入报告不存在或已清理。")
    return FileResponse(p, media_type="text/csv; charset=utf-8", filename=name)
