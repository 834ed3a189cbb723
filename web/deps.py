"""Shared state and the dependencies every router uses: who is logged in, CSRF, rendering."""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import Depends, Request
from fastapi.templating import Jinja2Templates

from riskwatch.domain.catalog import Catalog
from riskwatch.settings import Settings
from schemas.vocabulary import (
    ACTOR_ZH,
    COMPLAINT_CATEGORY_ZH,
    COMPLAINT_CHANNEL_ZH,
    DEPARTMENT_ANSWER_ZH,
    INSPECTION_OUTCOME_ZH,
    LEVELS_DESC,
    OPEN_STATUSES,
    SEVERITY_ZH,
    TRANSITION_KIND_ZH,
    USER_ROLE_ZH,
    VIDEO_CLASS_ZH,
    AlertStatus,
    Level,
    TransferState,
    labels,
)
from web.data import Reader, ts
from web.produce import Producer
from web.records import Records
from web.sessions import Session, SessionStore
from web.texts import signal_zh
from web.users import LoginThrottle, User, UserStore

HERE = Path(__file__).parent
LOCAL = ZoneInfo("Asia/Shanghai")
OPEN = OPEN_STATUSES


@dataclass
class Ctx:
    settings: Settings
    catalog: Catalog
    users: UserStore
    reader: Reader
    producer: Producer
    templates: Jinja2Templates
    sessions: SessionStore  # server-side sessions (web/sessions.py)
    records: Records  # who submitted which event, which alert an attachment belongs to
    throttle: LoginThrottle = field(default_factory=LoginThrottle)
    started: float = field(default_factory=time.time)
    credit: Any = None  # fusion credit config (half_life_days, tiers)
    rules: Any = None  # threshold rules (limits drawn on the evidence chart)
    transfer: Any = None  # case-transfer policy (lifecycle.yaml transfer: accept_hours)


class PageError(Exception):
    """A refusal or failure shown as a page with the right status code."""

    def __init__(self, status: int, title: str, message: str):
        super().__init__(message)
        self.status, self.title, self.message = status, title, message


class LoginRequired(Exception):
    pass


def ctx(request: Request) -> Ctx:
    return request.app.state.ctx


def session_of(request: Request) -> tuple[Session | None, User | None]:
    """This request's server-side session and its user (both None when not logged in), read once per request.
    A session whose account was disabled or changed since is deleted; a stale cookie is cleared."""
    cached = getattr(request.state, "session", None)
    if cached is not None:
        return cached
    c = ctx(request)
    sess = c.sessions.get(request.session.get("sid", ""))
    u = c.users.get(sess.username) if sess is not None else None
    if sess is not None and (u is None or u.disabled or u.generation != sess.generation):
        c.sessions.revoke(sess.sid)
        sess = None
    if sess is None:
        u = None
        if "sid" in request.session:
            request.session.clear()
    request.state.session = (sess, u)
    return sess, u


def current_user(request: Request) -> User | None:
    return session_of(request)[1]


def require_user(request: Request) -> User:
    u = current_user(request)
    if u is None:
        raise LoginRequired()
    return u


def require_taskforce(user: User = Depends(require_user)) -> User:
    if not user.sees_all:
        raise PageError(403, "无权访问", "此页面仅限专班办公室和县领导查看。")
    return user


def csrf_token(request: Request) -> str:
    """The session's CSRF token (server-side once logged in; in the signed cookie for the login form)."""
    sess, _ = session_of(request)
    if sess is not None:
        return sess.csrf
    tok = request.session.get("csrf")
    if not tok:
        tok = request.session["csrf"] = secrets.token_urlsafe(32)
    return tok


def csrf_ok(request: Request, sent: object) -> bool:
    sess, _ = session_of(request)
    tok = sess.csrf if sess is not None else request.session.get("csrf")
    return isinstance(tok, str) and bool(tok) and isinstance(sent, str) and secrets.compare_digest(sent, tok)


CSRF_REFUSED = ("表单已失效", "表单校验失败(缺少或过期的 CSRF 令牌)。请刷新页面后重新提交;本次操作未提交。")


async def check_csrf(request: Request) -> None:
    """Synchronizer token: the form's ``csrf_token`` must equal the session's."""
    form = await request.form()
    if not csrf_ok(request, form.get("csrf_token")):
        raise PageError(403, *CSRF_REFUSED)


# --- template helpers ------------------------------------------------------------------------------
def fmt_dt(v: Any, fmt: str = "%Y-%m-%d %H:%M") -> str:
    d = ts(v)
    if d is None:
        return "—"
    if d.tzinfo is None:
        d = d.replace(tzinfo=LOCAL)
    return d.astimezone(LOCAL).strftime(fmt)


def countdown(v: Any) -> dict:
    """``{"text", "overdue"}`` for a deadline: 剩余 2小时15分 / 已超期 1天3小时."""
    d = ts(v)
    if d is None:
        return {"text": "—", "overdue": False}
    if d.tzinfo is None:
        d = d.replace(tzinfo=LOCAL)
    secs = (d - datetime.now(UTC)).total_seconds()
    a = abs(int(secs)) // 60
    days, hours, mins = a // 1440, (a % 1440) // 60, a % 60
    text = f"{days}天{hours}小时" if days else f"{hours}小时{mins}分" if hours else f"{mins}分钟"
    return {"text": ("已超期 " if secs < 0 else "剩余 ") + text, "overdue": secs < 0}


def make_templates() -> Jinja2Templates:
    t = Jinja2Templates(directory=str(HERE / "templates"))  # autoescape on for .html
    t.env.filters["dt"] = fmt_dt
    t.env.filters["regex_sha"] = lambda s: re.findall(r"附件 sha256:([0-9a-f]{64})", s or "")
    t.env.globals.update(
        STATUS_ZH=labels(AlertStatus),
        LEVEL_ZH=labels(Level),
        TRANSFER_ZH=labels(TransferState),
        STATUSES=tuple(AlertStatus),
        LEVELS_DESC=LEVELS_DESC,
        OPEN=OPEN,
        FEEDBACK_ZH=DEPARTMENT_ANSWER_ZH,
        ROLE_ZH=USER_ROLE_ZH,
        OUTCOME_ZH=INSPECTION_OUTCOME_ZH,
        SEVERITY_ZH=SEVERITY_ZH,
        CATEGORY_ZH=COMPLAINT_CATEGORY_ZH,
        COMPLAINT_CHANNEL_ZH=COMPLAINT_CHANNEL_ZH,
        ACTOR_ZH=ACTOR_ZH,
        VIDEO_ZH=VIDEO_CLASS_ZH,
        TRANSITION_KIND_ZH=TRANSITION_KIND_ZH,
        countdown=countdown,
        signal_zh=signal_zh,
    )
    t.env.filters["signal_zh"] = signal_zh
    return t


def render(request: Request, name: str, status_code: int = 200, **context):
    c = ctx(request)
    user = current_user(request)
    context.setdefault("user", user)
    context.setdefault("nav_counts", getattr(request.state, "nav_counts", None))
    return c.templates.TemplateResponse(
        request,
        name,
        {
            "csrf": "" if context.get("public") else csrf_token(request),
            "catalog": c.catalog,
            "dept_name": lambda code: c.catalog.departments[code].name if code in c.catalog.departments else code,
            **context,
        },
        status_code=status_code,
    )
