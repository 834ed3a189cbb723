"""Request body limits for every route, enforced before the app reads past them (ASGI middleware).

A declared ``Content-Length`` over the limit gets 413 at once, before routing, sessions, CSRF or
form parsing: nothing of the body is read. A body without a length (chunked) is counted as it
streams; the first chunk past the limit raises :class:`BodyTooLarge` (a 413 HTTPException) inside
whatever is reading it, so the form parser stops there. Two limits: attachment uploads
(``multipart/form-data`` to ``/alerts/<id>/feedback``, ``workbench_max_upload_bytes`` plus 64 KiB
of form fields) and everything else (``workbench_max_form_bytes``, 64 KiB: the largest form is a
few KB of text).

>>> lim = BodyLimit(None, form_bytes=65536, upload_bytes=1 << 20)
>>> lim.limit_for("POST", "/alerts/A1/feedback", "multipart/form-data; b=x")
1114112
>>> lim.limit_for("POST", "/login", "multipart/form-data; b=x")
65536
"""

from __future__ import annotations

import re

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

UPLOAD_PATH = re.compile(r"^(/alerts/[^/]+/feedback|/taskforce/imports)$")  # attachments, import files
FIELDS_ALLOWANCE = 64 * 1024  # the form fields sent with an attachment


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int, upload: bool):
        super().__init__(413, _message(limit, upload))


def _message(limit: int, upload: bool) -> str:
    if upload:
        return f"附件不能超过 {max(1, (limit - FIELDS_ALLOWANCE) // (1024 * 1024))} MB,本次操作未提交。"
    return f"提交的内容不能超过 {limit // 1024} KB,本次操作未提交。"


class BodyLimit:
    def __init__(self, app: ASGIApp, *, form_bytes: int, upload_bytes: int):
        self.app, self.form_bytes, self.upload_bytes = app, form_bytes, upload_bytes + FIELDS_ALLOWANCE

    def limit_for(self, method: str, path: str, content_type: str) -> int:
        if method == "POST" and content_type.startswith("multipart/form-data") and UPLOAD_PATH.match(path):
            return self.upload_bytes
        return self.form_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k: v for k, v in scope["headers"] if k in (b"content-length", b"content-type")}
        limit = self.limit_for(
            scope["method"], scope["path"], headers.get(b"content-type", b"").decode("latin-1").lower()
        )
        upload = limit == self.upload_bytes
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await _refuse(send, 413 if declared.isdigit() else 400, _message(limit, upload))
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit, upload)
            return message

        await self.app(scope, counted, send)


async def _refuse(send: Send, status: int, message: str) -> None:
    title = "内容过大" if status == 413 else "请求有误"
    body = (
        f'<!doctype html><html lang="zh-CN"><meta charset="utf-8"><title>{title}</title>'
        f"<h1>{title}</h1><p>{message}</p></html>"
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/html; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
                (b"x-content-type-options", b"nosniff"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
