"""The workbench app: ``create_app(settings)`` → a FastAPI app (served by uvicorn).

Routers per area (``web/routes``): auth, inbox, alert, tasks, dossier, taskforce, public.
Sessions are kept on the server (``web/sessions.py``, in the state file ``web/sqlite.py``): the
cookie (Starlette's SessionMiddleware: itsdangerous-signed, HttpOnly, SameSite=Strict, Secure over
https or when ``workbench_cookie_secure``) carries only a random session id. Every request body is
limited before it is read (``web/limits.py``); ``X-Forwarded-*`` is believed only from
``workbench_trusted_proxy`` (``web/transport.py``).
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.sessions import SessionMiddleware

from riskwatch.domain.catalog import load_catalog
from riskwatch.settings import Settings
from web.data import Reader, StoreDown
from web.deps import HERE, Ctx, LoginRequired, PageError, make_templates, render
from web.limits import BodyLimit
from web.produce import BusDown, Producer
from web.ratelimit import PublicRateLimit
from web.records import Records
from web.sessions import SessionStore
from web.sqlite import state_path
from web.transport import SecureCookies
from web.users import LoginThrottle, UserStore

log = logging.getLogger("riskwatch.web")
SESSION_COOKIE = "rw_session"


def session_secret(directory: Path) -> str:
    """A random key kept under var/web (mode 0600), created on first start; never in git."""
    directory.mkdir(parents=True, exist_ok=True)
    p = directory / "session.key"
    if not p.exists():
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(48))
    return p.read_text().strip()


def create_app(settings: Settings, *, throttle: LoginThrottle | None = None) -> FastAPI:
    catalog = load_catalog(settings.catalog_path)
    wdir = Path(settings.workbench_dir)
    from detectors.fusion import load_fusion
    from detectors.rules import load_rules
    from riskwatch.domain.lifecycle import load_policy
    from riskwatch.settings import DATA_DIR

    state = state_path(wdir)
    throttle = throttle or LoginThrottle(
        state,
        free=settings.workbench_login_free_failures,
        ip_free=settings.workbench_login_ip_free_failures,
        cap=settings.workbench_login_max_delay_seconds,
    )
    sessions = SessionStore(
        state, idle=settings.workbench_idle_minutes * 60, lifetime=settings.workbench_session_hours * 3600
    )
    ctx = Ctx(
        settings=settings,
        catalog=catalog,
        users=UserStore(wdir / "users.json"),
        reader=Reader(settings),
        producer=Producer(settings, catalog),
        templates=make_templates(),
        throttle=throttle,
        credit=load_fusion(DATA_DIR / "fusion.yaml").credit,
        rules=load_rules(settings.rules_path),
        transfer=load_policy(settings.lifecycle_path).transfer,
        sessions=sessions,
        records=Records(state),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        await ctx.reader.close()
        await ctx.producer.close()

    app = FastAPI(title="riskwatch 工作台", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.ctx = ctx
    # body limit → Secure cookies → session cookie; the rate limit and proxy headers go outermost (below)
    app.add_middleware(
        SessionMiddleware,
        secret_key=session_secret(wdir),
        session_cookie=SESSION_COOKIE,
        max_age=int(settings.workbench_session_hours * 3600),
        same_site="strict",
        https_only=settings.workbench_cookie_secure,
    )
    app.add_middleware(SecureCookies, always=settings.workbench_cookie_secure)
    # inside the security-headers middleware: its 413 raised while the app reads the body is an HTTPException
    # there (BaseHTTPMiddleware would turn it into a parse error if it came from outside)
    app.add_middleware(
        BodyLimit, form_bytes=settings.workbench_max_form_bytes, upload_bytes=settings.workbench_max_upload_bytes
    )
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    from web.routes import (
        alert,
        auth,
        dossier,
        imports,
        inbox,
        matching,
        precision,
        public,
        supervision,
        taskforce,
        tasks,
    )

    for r in (auth, inbox, alert, tasks, dossier, taskforce, precision, supervision, matching, imports, public):
        app.include_router(r.router)
    app.include_router(__import__("web.routes.publish", fromlist=["router"]).router)

    __import__("web.routes.judge", fromlist=["install"]).install(app, ctx)
    app.include_router(__import__("web.routes.consult", fromlist=["router"]).router)

    @app.get("/healthz", include_in_schema=False)
    async def healthz():
        return {"ok": True}

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        t0 = time.perf_counter()
        resp = await call_next(request)
        resp.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - t0) * 1000:.1f}"
        resp.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
            "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        )
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("Referrer-Policy", "same-origin")
        if request.url.path.startswith(("/inbox", "/alerts", "/tasks", "/entities", "/taskforce")):
            resp.headers.setdefault("Cache-Control", "no-store")
        return resp

    # outermost last (after the security headers): proxy headers (trusted address only) → public rate limit →
    # security headers → body limit → Secure cookies → session; a rate-limit refusal costs no routing or page
    app.add_middleware(PublicRateLimit, per_minute=settings.workbench_public_rate_per_minute)
    if settings.workbench_trusted_proxy.strip():
        from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

        app.add_middleware(
            ProxyHeadersMiddleware,
            trusted_hosts=[h.strip() for h in settings.workbench_trusted_proxy.split(",") if h.strip()],
        )

    @app.exception_handler(LoginRequired)
    async def _login(request: Request, exc: LoginRequired):
        nxt = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={nxt}" if request.method == "GET" else "/login", status_code=303)

    @app.exception_handler(PageError)
    async def _page_error(request: Request, exc: PageError):
        return render(request, "error.html", exc.status, title=exc.title, message=exc.message)

    @app.exception_handler(StoreDown)
    async def _store_down(request: Request, exc: StoreDown):
        log.warning("%s %s: %s", request.method, request.url.path, exc)
        return render(
            request, "error.html", 503, title="数据暂不可用", message=f"{exc} 页面稍后自动恢复;如持续出现请联系运维。"
        )

    @app.exception_handler(BusDown)
    async def _bus_down(request: Request, exc: BusDown):
        return render(
            request, "error.html", 503, title="操作未提交", message=f"{exc}。本次操作没有记录,请稍后重新提交。"
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        titles = {
            404: "页面不存在",
            405: "不支持的操作",
            413: "内容过大",
            400: "请求有误",
            403: "无权访问",
            429: "访问过于频繁",
        }
        return render(
            request,
            "error.html",
            exc.status_code,
            title=titles.get(exc.status_code, "出错了"),
            message=str(exc.detail)
            if exc.detail and exc.status_code != 404
            else "您访问的页面不存在,请从导航重新进入。",
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        fields = ", ".join(".".join(str(x) for x in e["loc"][1:]) for e in exc.errors())
        return render(
            request, "error.html", 400, title="请求有误", message=f"表单内容不完整或格式不对({fields}),本次操作未提交。"
        )

    return app
