"""Login (argon2 check, throttle: 5 failures lock the account for 15 minutes per IP) and logout."""

from __future__ import annotations

import logging
import time

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse

from web.deps import check_csrf, ctx, current_user, render

router = APIRouter()
log = logging.getLogger("riskwatch.web.auth")


def _safe_next(nxt: str) -> str:
    return nxt if nxt.startswith("/") and not nxt.startswith("//") and "\\" not in nxt else "/inbox"


@router.get("/login")
async def login_page(request: Request, next: str = "/inbox"):
    if current_user(request):
        return RedirectResponse(_safe_next(next), status_code=303)
    return render(request, "login.html", next=_safe_next(next), error=None)


@router.post("/login", dependencies=[Depends(check_csrf)])
async def login(request: Request, username: str = Form(""), password: str = Form(""), next: str = Form("/inbox")):
    c = ctx(request)
    ip = request.client.host if request.client else "?"
    username = username.strip()[:64]
    left = c.throttle.locked_for(username, ip)
    if left > 0:
        log.warning("login refused: %s from %s is locked (%.0fs left)", username, ip, left)
        return render(
            request,
            "login.html",
            429,
            next=_safe_next(next),
            error=f"连续登录失败次数过多,账号已锁定,请 {int(left // 60) + 1} 分钟后再试。",
        )
    user = c.users.verify(username, password)
    if user is None:
        n = c.throttle.failure(username, ip)
        log.warning("login failed: %s from %s (%d)", username, ip, n)
        left = c.throttle.locked_for(username, ip)
        msg = (
            "连续 5 次登录失败,账号已锁定 15 分钟。"
            if left > 0
            else f"用户名或密码错误(再错 {c.throttle.limit - n} 次将锁定 15 分钟)。"
        )
        return render(request, "login.html", 429 if left > 0 else 401, next=_safe_next(next), error=msg)
    c.throttle.success(username, ip)
    request.session.clear()  # a fresh session (and CSRF token) at login: no fixation
    request.session.update(
        u=user.username, g=user.generation, exp=time.time() + c.settings.workbench_session_hours * 3600
    )
    log.info("login: %s (%s) from %s", user.username, user.actor, ip)
    return RedirectResponse(_safe_next(next), status_code=303)


@router.post("/logout", dependencies=[Depends(check_csrf)])
async def logout(request: Request):
    request.session.clear()
    return RedirectResponse("/login", status_code=303)


@router.get("/")
async def home(request: Request):
    return RedirectResponse("/inbox" if current_user(request) else "/public", status_code=303)
