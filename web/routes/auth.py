"""Login and logout.

Login: the throttle first (``web/throttle.py``: a growing delay per account and address and per
address, no lock for everyone), then the argon2 check in a worker thread (a few tens of ms of CPU
that must not stall every other request on the event loop; at most ``VERIFY_THREADS`` at a time),
then a new server-side session (``web/sessions.py``) whose random id is the only thing the cookie
carries. Logout deletes that session: the old cookie is worthless at once.
"""

from __future__ import annotations

import logging

import anyio
from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse

from web.deps import check_csrf, ctx, current_user, render, session_of

router = APIRouter()
log = logging.getLogger("riskwatch.web.auth")
VERIFY_THREADS = anyio.CapacityLimiter(2)


def _safe_next(nxt: str) -> str:
    return nxt if nxt.startswith("/") and not nxt.startswith("//") and "\\" not in nxt else "/inbox"


def _wait_zh(seconds: float) -> str:
    s = int(seconds) + 1
    return f"{s} 秒" if s < 120 else f"{s // 60 + 1} 分钟"


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
    left = c.throttle.wait(username, ip)
    if left > 0:
        log.warning("login refused: %s from %s must wait %.0fs", username, ip, left)
        r = render(
            request,
            "login.html",
            429,
            next=_safe_next(next),
            error=f"登录失败次数过多,请 {_wait_zh(left)}后再试。如需立即解锁,请联系专班办公室。",
        )
        r.headers["Retry-After"] = str(int(left) + 1)
        return r
    user = await anyio.to_thread.run_sync(c.users.verify, username, password, limiter=VERIFY_THREADS)
    if user is None:
        c.throttle.failure(username, ip)
        left = c.throttle.wait(username, ip)
        log.warning("login failed: %s from %s (%d)", username, ip, c.throttle.failures(username, ip))
        msg = "用户名或密码错误。" + (f"请 {_wait_zh(left)}后再试(每次失败等待时间加倍)。" if left > 0 else "")
        return render(request, "login.html", 429 if left > 0 else 401, next=_safe_next(next), error=msg)
    c.throttle.success(username, ip)
    old, _ = session_of(request)
    if old is not None:
        c.sessions.revoke(old.sid)
    request.session.clear()  # a fresh session id (and CSRF token) at login: no fixation
    request.session["sid"] = c.sessions.create(user.username, user.generation)
    log.info("login: %s (%s) from %s", user.username, user.actor, ip)
    return RedirectResponse(_safe_next(next), status_code=303)


@router.post("/logout", dependencies=[Depends(check_csrf)])
async def logout(request: Request):
    sess, u = session_of(request)
    if sess is not None:
        ctx(request).sessions.revoke(sess.sid)
        log.info("logout: %s", u.username if u else sess.username)
    request.session.clear()
    request.state.session = (None, None)
    return RedirectResponse("/login", status_code=303)


@router.get("/")
async def home(request: Request):
    return RedirectResponse("/inbox" if current_user(request) else "/public", status_code=303)
