"""Workbench security on a real app process and the real broker (no worker needed): CSRF,
login throttling, session cookie flags, public pages without private data, and the message
when the data service is down. Alert-level refusals (403/404/400/413 with nothing produced) are
in tests/test_web_browser.py, where a worker holds a real alert."""

from __future__ import annotations

import re
import uuid

import pytest

from tests.webtools import csrf_of, login, start_web
from web.users import LoginThrottle

PHONE = re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)")
ID_NUMBER = re.compile(r"(?<!\d)\d{17}[\dXx](?!\d)")


@pytest.fixture(scope="module")
def web(broker, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("websec")
    s = broker.model_copy(update=dict(topic_prefix=f"t{uuid.uuid4().hex[:8]}.", web_port=1))  # no worker: reads fail
    w = start_web(s, tmp)
    yield w
    w.stop()


def test_form_posts_without_a_valid_csrf_token_are_refused(web):
    c = web.client()
    r = c.post("/login", data={"username": "amr", "password": web.passwords["amr"]})
    assert r.status_code == 403 and "CSRF" in r.text
    assert c.get("/inbox").status_code == 303  # not logged in
    assert login(c, "amr", web.passwords["amr"]).status_code == 303
    for data in ({"action": "acknowledged"}, {"action": "acknowledged", "csrf_token": "forged"}):
        r = c.post("/alerts/A1/feedback", data=data)
        assert r.status_code == 403 and "本次操作未提交" in r.text
    assert c.post("/logout", data={}).status_code == 403  # logout is a form post too
    from kafka import KafkaConsumer

    kc = KafkaConsumer(**web.settings.kafka_kwargs())
    assert not kc.partitions_for_topic(web.settings.topic("events.feedback"))  # nothing was produced (no topic even)
    kc.close()


def test_five_wrong_passwords_lock_the_account_for_this_ip(web):
    c = web.client()
    for i in range(4):
        r = login(c, "emergency", "wrong-password")
        assert r.status_code == 401 and "用户名或密码错误" in r.text
    r = login(c, "emergency", "wrong-password")
    assert r.status_code == 429 and "锁定 15 分钟" in r.text
    r = login(c, "emergency", web.passwords["emergency"])  # the right password no longer helps
    assert r.status_code == 429 and "账号已锁定" in r.text
    assert login(web.client(), "police", web.passwords["police"]).status_code == 303  # other accounts unaffected


def test_lock_survives_an_app_restart_and_stays_per_account_and_ip(web):
    c = web.client()
    for _ in range(5):
        login(c, "leader", "wrong-password")
    web.restart()  # a new app process: the lock is in var/web/throttle.json, not in the old process
    assert (web.settings.workbench_dir / "throttle.json").stat().st_mode & 0o777 == 0o600
    r = login(web.client(), "leader", web.passwords["leader"])
    assert r.status_code == 429 and "账号已锁定" in r.text
    assert login(web.client(), "amr", web.passwords["amr"]).status_code == 303  # other accounts unaffected
    # per IP: the same account from another address (the file as a second process would see it)
    t = LoginThrottle(path=web.settings.workbench_dir / "throttle.json")
    assert t.locked_for("leader", "127.0.0.1") > 800 and t.locked_for("leader", "10.1.2.3") == 0


def test_throttle_window_and_unlock():
    now = [0.0]
    t = LoginThrottle(clock=lambda: now[0])
    for _ in range(5):
        t.failure("u", "1.2.3.4")
    assert t.locked_for("u", "1.2.3.4") == pytest.approx(900) and t.locked_for("u", "5.6.7.8") == 0
    now[0] += 901
    assert t.locked_for("u", "1.2.3.4") == 0


def test_session_cookie_flags_and_logout(web):
    c = web.client()
    r = login(c, "amr", web.passwords["amr"])
    cookie = [h for h in r.headers.get_list("set-cookie") if h.startswith("rw_session=")][0].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie and "max-age=28800" in cookie
    assert (
        "secure" not in cookie
    )  # plain HTTP on loopback by default; RISKWATCH_WORKBENCH_COOKIE_SECURE=true behind HTTPS
    page = c.get("/login?next=/inbox")
    assert page.status_code == 303  # logged in: the login page sends on
    assert "csrf_token" not in c.get("/public/items/1").text  # public pages carry no session form
    r = c.get("/inbox")  # the data service (worker) is down: said so, with what to do
    assert r.status_code == 503 and "数据暂不可用" in r.text and "riskwatch worker" in r.text
    tok = csrf_of(r.text)  # the navigation's logout form
    assert c.post("/logout", data={"csrf_token": tok}).status_code == 303
    r = c.get("/inbox")
    assert r.status_code == 303 and r.headers["location"].startswith("/login")


def test_public_pages_show_no_private_data_and_set_no_cookie(web):
    c = web.client()
    pages = ["/public", "/public/spot-checks", *[f"/public/items/{i}" for i in range(1, 9)]]
    for p in pages:
        r = c.get(p)
        assert r.status_code == 200, p
        assert "set-cookie" not in r.headers, p
        html = r.text
        assert not PHONE.search(html) and not ID_NUMBER.search(html), p
        assert "风险分" not in html and "预警编号" not in html and "/alerts/" not in html, p
    assert "待补充" in c.get("/public/items/1").text
    assert c.get("/public/items/99").status_code == 404
    r = c.get("/inbox")
    assert r.status_code == 303 and r.headers["location"] == "/login?next=/inbox"
    assert "Content-Security-Policy" in r.headers or "content-security-policy" in {k.lower() for k in r.headers}
