"""Workbench security on a real app process and the real broker: CSRF, body limits, login
throttling, server-side sessions, attachments, ``?wait=``, public pages. Issue #18's workbench
flaws each have a test here that attacks a running ``riskwatch web run`` and is refused.

The data the workbench reads comes from a stand-in for the worker's ``/query`` (the real embedded
engine with the product's migrations and two alerts: ``tests/webtools.py``, ``serve_store``), so
no worker is started. The app trusts 127.0.0.1 as its reverse proxy, so each test can speak as a
different client address (``X-Forwarded-For``). Alert-level refusals on a real worker's alerts
(403/404/400/413 with nothing produced) are in tests/test_web_browser.py.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid

import httpx
import orjson
import pytest

from riskwatch.tools.runner import settings_env
from tests.webtools import REPO, csrf_of, login, start_store, start_web
from web.throttle import LoginThrottle

PHONE = re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)")
ID_NUMBER = re.compile(r"(?<!\d)\d{17}[\dXx](?!\d)")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("websec-store")
    proc, port = start_store(tmp)
    yield tmp, port
    proc.terminate()
    proc.wait(20)


@pytest.fixture(scope="module")
def web(broker, store, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("websec")
    from kafka.admin import KafkaAdminClient, NewTopic

    s = broker.model_copy(
        update=dict(topic_prefix=f"t{uuid.uuid4().hex[:8]}.", web_port=store[1], workbench_trusted_proxy="127.0.0.1")
    )
    admin = KafkaAdminClient(**s.kafka_kwargs())
    # the worker would have created them: the workbench writes to the user's department's topic
    feedback = [s.topic(f"events.feedback.{d}") for d in ("amr", "police", "taskforce")]
    admin.create_topics([NewTopic(t, 1, 1) for t in feedback])
    w = start_web(s, tmp)
    yield w
    w.stop()
    admin.delete_topics(feedback)
    admin.close()


def client(web, ip: str, user: str | None = None, **headers) -> httpx.Client:
    """A client speaking as ``ip`` (through the trusted proxy), logged in as ``user`` if given."""
    c = httpx.Client(base_url=web.url, follow_redirects=False, timeout=30, headers={"x-forwarded-for": ip, **headers})
    if user:
        assert login(c, user, web.passwords[user]).status_code == 303
    return c


def cli(web, *args: str) -> str:
    env = {**os.environ, **settings_env(web.settings), "PYTHONPATH": str(REPO)}
    r = subprocess.run(
        [sys.executable, "-m", "riskwatch.cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    return r.stdout


def raw(web, head: str, chunks=(), cookie: str = "") -> tuple[int, int]:
    """Send a request head (and body chunks while the server has not answered); returns the status and
    how many body bytes were sent before the answer came."""
    port = int(web.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        extra = f"Cookie: {cookie}\r\n" if cookie else ""
        sock.sendall((head.replace("\n", "\r\n").rstrip("\r\n") + "\r\n" + extra + "\r\n").encode())
        sent = 0
        sock.settimeout(0.05)
        for chunk in chunks:
            try:
                got = sock.recv(65536)
                if got:
                    return int(got.split(b" ", 2)[1]), sent
            except TimeoutError:
                pass
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
        sock.settimeout(10)
        got = sock.recv(65536)
        return int(got.split(b" ", 2)[1]), sent


def test_form_posts_without_a_valid_csrf_token_are_refused(web):
    c = client(web, "10.0.1.1")
    r = c.post("/login", data={"username": "amr", "password": web.passwords["amr"]})
    assert r.status_code == 403 and "CSRF" in r.text
    assert c.get("/inbox").status_code == 303  # not logged in
    assert login(c, "amr", web.passwords["amr"]).status_code == 303
    for data in ({"action": "acknowledged"}, {"action": "acknowledged", "csrf_token": "forged"}):
        r = c.post("/alerts/A-amr-1/feedback", data=data)
        assert r.status_code == 403 and "本次操作未提交" in r.text
    # an upload's token travels in the form's URL: without it, refused before the body is read
    r = c.post(
        "/alerts/A-amr-1/feedback",
        data={"action": "disposed", "csrf_token": csrf_of(c.get("/inbox").text)},
        files={"attachment": ("r.pdf", b"%PDF-1.4", "application/pdf")},
    )
    assert r.status_code == 403
    assert c.post("/logout", data={}).status_code == 403  # logout is a form post too
    from kafka import KafkaConsumer, TopicPartition

    kc = KafkaConsumer(**web.settings.kafka_kwargs())
    tp = TopicPartition(web.settings.topic("events.feedback.amr"), 0)
    assert kc.end_offsets([tp])[tp] == 0  # nothing was produced
    kc.close()


# --- flaw 1: bodies were parsed (uploads to disk) before the size, CSRF and login checks ---------------
def test_bodies_over_the_limit_are_refused_before_they_are_read(web):
    big, form_limit = 50 * 1024 * 1024, web.settings.workbench_max_form_bytes
    multipart = "Content-Type: multipart/form-data; boundary=x"
    # a declared length over the limit: 413 at once, nothing of the body sent, with or without a session
    for path, ctype in (
        ("/login", "Content-Type: application/x-www-form-urlencoded"),
        ("/logout", ""),
        ("/alerts/A-amr-1/feedback", multipart),
        ("/public", ""),
        ("/no/such/route", ""),
    ):
        head = f"POST {path} HTTP/1.1\nHost: x\nContent-Length: {big}\n{ctype}"
        assert raw(web, head) == (413, 0), path
    amr = client(web, "10.0.2.1", "amr")
    cookie = "; ".join(f"{k}={v}" for k, v in amr.cookies.items())
    tok = csrf_of(amr.get("/inbox").text)
    head = f"POST /alerts/A-amr-1/feedback?csrf_token={tok} HTTP/1.1\nHost: x\nContent-Length: {big}\n{multipart}"
    assert raw(web, head, cookie=cookie) == (413, 0)
    # a streamed (chunked) body is counted: refused once past the limit, the rest never read
    chunk = b"4000\r\n" + b"a" * 0x4000 + b"\r\n"
    status, sent = raw(
        web,
        "POST /login HTTP/1.1\nHost: x\nTransfer-Encoding: chunked\nContent-Type: application/x-www-form-urlencoded",
        [chunk] * 512,
        cookie=cookie,
    )
    assert status == 413 and sent < 8 * form_limit, sent
    # an upload within the limit: login, then the CSRF token, are checked before any of the body is read
    head = f"POST /alerts/A-amr-1/feedback HTTP/1.1\nHost: x\nContent-Length: {1 << 20}\n{multipart}"
    assert raw(web, head) == (303, 0)  # no session: to the login page
    assert raw(web, head.replace("feedback", "feedback?csrf_token=forged"), cookie=cookie) == (403, 0)
    # through the app (httpx): the page says why
    r = amr.post(
        f"/alerts/A-amr-1/feedback?csrf_token={tok}",
        data={"action": "disposed", "result": "x"},
        files={
            "attachment": (
                "r.pdf",
                b"%PDF-" + b"0" * (web.settings.workbench_max_upload_bytes + 65536 + 1),
                "application/pdf",
            )
        },
    )
    assert r.status_code == 413 and "附件不能超过" in r.text
    r = amr.post(
        "/alerts/A-amr-1/feedback", data={"csrf_token": tok, "action": "in_progress", "comment": "长" * form_limit}
    )
    assert r.status_code == 413 and "本次操作未提交" in r.text


# --- flaw 2: argon2 verification ran on the event loop ---------------------------------------------------
def test_password_checks_do_not_stall_other_requests(web):
    from argon2 import PasswordHasher

    h = PasswordHasher()
    digest = h.hash("x")
    t = time.perf_counter()
    for _ in range(3):
        h.verify(digest, "x")
    one = (time.perf_counter() - t) / 3
    n, lat, done = 16, [], threading.Event()

    def attempt(i: int) -> None:
        login(client(web, f"10.0.3.{i}"), "police", "wrong-password-x")

    def probe() -> None:
        with httpx.Client(base_url=web.url, timeout=30) as c:
            while not done.is_set():
                t0 = time.perf_counter()
                c.get("/healthz")
                lat.append(time.perf_counter() - t0)
                time.sleep(0.01)

    p = threading.Thread(target=probe)
    p.start()
    t0 = time.perf_counter()
    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    total = time.perf_counter() - t0
    done.set()
    p.join()
    # on the event loop, n checks of `one` seconds each would hold /healthz for most of `total`
    assert len(lat) >= 5 and max(lat) < max(3 * one, total / 4), (max(lat), one, total)


# --- flaw 3: 20 failures from anywhere locked a username for everyone -------------------------------------
def test_failures_from_elsewhere_cannot_lock_a_user_out_and_the_office_unlocks(web):
    attacker = client(web, "10.0.4.66")
    for _ in range(5):
        r = login(attacker, "emergency", "wrong-password")
        assert r.status_code in (401, 429) and "用户名或密码错误" in r.text
    assert r.status_code == 429 and "每次失败等待时间加倍" in r.text
    r = login(attacker, "emergency", web.passwords["emergency"])  # now even the right password must wait
    assert r.status_code == 429 and "后再试" in r.text and 25 <= int(r.headers["retry-after"]) <= 31
    t = LoginThrottle(web.settings.workbench_dir / "state.sqlite")  # the state file, as another process sees it
    assert 0 < t.wait("emergency", "10.0.4.66") <= 30 and t.wait("emergency", "10.0.4.7") == 0
    for i in range(30):  # many addresses guessing: the owner is still not locked out
        login(client(web, f"10.0.5.{i}"), "emergency", "wrong-password")
    assert login(client(web, "10.0.4.7"), "emergency", web.passwords["emergency"]).status_code == 303
    # per address: 20 failures from one address over any accounts delay every account from it
    sprayer = client(web, "10.0.6.6")
    for i in range(20):
        login(sprayer, f"nobody{i}", "wrong-password")
    assert login(sprayer, "police", web.passwords["police"]).status_code == 429
    assert login(client(web, "10.0.6.7"), "police", web.passwords["police"]).status_code == 303
    # the delay survives a restart (it is in the state file), and the office unlocks the account
    guesser = client(web, "10.0.4.99")
    for _ in range(5):
        login(guesser, "taskforce", "wrong-password")
    web.restart()
    assert (web.settings.workbench_dir / "state.sqlite").stat().st_mode & 0o777 == 0o600
    assert login(client(web, "10.0.4.99"), "taskforce", web.passwords["taskforce"]).status_code == 429
    assert "unlocked taskforce" in cli(web, "users", "unlock", "taskforce")
    assert login(client(web, "10.0.4.99"), "taskforce", web.passwords["taskforce"]).status_code == 303


def test_throttle_delay_doubles_and_is_forgotten():
    now = [0.0]
    t = LoginThrottle(None, clock=lambda: now[0])
    for _n in range(5):
        assert t.wait("u", "1.2.3.4") == 0
        t.failure("u", "1.2.3.4")
    waits = []
    for _ in range(4):
        waits.append(t.wait("u", "1.2.3.4"))
        now[0] += waits[-1]
        t.failure("u", "1.2.3.4")
    assert waits == [30, 60, 120, 240] and t.wait("u", "5.6.7.8") == 0
    for _ in range(10):
        now[0] += 10_000
        t.failure("u", "1.2.3.4")
    now[0] += 3601
    assert t.wait("u", "1.2.3.4") == 0  # an hour without failures: forgotten


# --- flaw 4: logout did not end the session, and there was no idle timeout --------------------------------
def test_sessions_end_at_logout_disable_and_idle(web):
    c = client(web, "10.0.7.1", "amr")
    stolen = dict(c.cookies)
    cookie = [h for h in c.get("/login").headers.get_list("set-cookie")]  # logged in: no new cookie
    assert not cookie and c.get("/inbox").status_code == 200
    assert c.post("/logout", data={"csrf_token": csrf_of(c.get("/inbox").text)}).status_code == 303
    replay = client(web, "10.0.7.1")
    replay.cookies.update(stolen)
    r = replay.get("/inbox")  # the cookie from before the logout is worthless now
    assert r.status_code == 303 and r.headers["location"].startswith("/login")
    # `riskwatch users disable` (another process) ends the account's sessions at once
    from web.users import UserStore

    UserStore(web.settings.workbench_dir / "users.json").add(
        "temp-1", role="dept", dept="amr", name="临时", password="p" * 12
    )
    t1 = client(web, "10.0.7.2")
    assert login(t1, "temp-1", "p" * 12).status_code == 303 and t1.get("/inbox").status_code == 200
    assert "its sessions have ended" in cli(web, "users", "disable", "temp-1")
    assert t1.get("/inbox").status_code == 303
    # idle: a session unused for 30 minutes ends (its last use moved back, as if 31 minutes passed)
    idle = client(web, "10.0.7.3", "police")
    assert idle.get("/inbox").status_code == 200
    db = sqlite3.connect(web.settings.workbench_dir / "state.sqlite")
    db.execute("UPDATE sessions SET last_seen = last_seen - 31 * 60")
    db.commit()
    db.close()
    assert idle.get("/inbox").status_code == 303
    # the cookie holds a random id only; the file holds its hash, not the id
    c = client(web, "10.0.7.4", "leader")
    value = c.cookies["rw_session"].split(".")[0]
    data = orjson.loads(base64.b64decode(value + "=="))
    assert set(data) == {"sid"}
    db = sqlite3.connect(web.settings.workbench_dir / "state.sqlite")
    keys = {k for (k,) in db.execute("SELECT key FROM sessions")}
    db.close()
    assert data["sid"] not in keys and hashlib.sha256(data["sid"].encode()).hexdigest() in keys


def test_cookie_flags_secure_behind_tls_proxy(web):
    c = client(web, "10.0.8.1")
    r = login(c, "amr", web.passwords["amr"])
    cookie = [h for h in r.headers.get_list("set-cookie") if h.startswith("rw_session=")][0].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie and "max-age=28800" in cookie
    assert "secure" not in cookie  # plain HTTP on loopback
    c = client(web, "10.0.8.2", **{"x-forwarded-proto": "https"})  # the trusted proxy terminated TLS
    r = login(c, "amr", web.passwords["amr"])
    cookie = [h for h in r.headers.get_list("set-cookie") if h.startswith("rw_session=")][0].lower()
    assert "; secure" in cookie
    assert "csrf_token" not in c.get("/public/items/1").text  # public pages carry no session form


# --- flaw 5: /attachments/{sha} trusted any history row mentioning the hash ------------------------------
def _exec(store, sql: str) -> None:
    assert httpx.post(f"http://127.0.0.1:{store[1]}/exec", content=sql.encode(), timeout=30).json() == {"ok": True}


def test_attachment_is_authorised_by_the_alert_it_was_uploaded_to(web, store):
    amr, police = client(web, "10.0.9.1", "amr"), client(web, "10.0.9.2", "police")
    page = amr.get("/alerts/A-amr-1")
    assert page.status_code == 200
    action = re.search(r'action="(/alerts/A-amr-1/feedback\?csrf_token=[^"]+)"', page.text).group(1)
    pdf = b"%PDF-1.4 amr's disposal report " + uuid.uuid4().hex.encode()
    sha = hashlib.sha256(pdf).hexdigest()
    r = amr.post(
        action.replace("&amp;", "&"),
        data={"action": "disposed", "result": "已整改", "verdict": "not_confirmed"},
        files={"attachment": ("report.pdf", pdf, "application/pdf")},
    )
    assert r.status_code == 303, r.text[:500]
    assert amr.get(f"/attachments/{sha}").content == pdf
    # police writes the hash into a comment on its own alert (the history row the old check trusted)
    tok = csrf_of(police.get("/alerts/A-police-1").text)
    r = police.post(
        "/alerts/A-police-1/feedback",
        data={"csrf_token": tok, "action": "in_progress", "comment": f"见 附件 sha256:{sha}"},
    )
    assert r.status_code == 303
    _exec(
        store,
        "INSERT INTO riskwatch.alert_history (alert_id, at, from_status, to_status, actor, comment, seq, kind) "
        f"VALUES ('A-police-1', now64(3), 'firing', 'disposing', 'police/李四', '处置中(见 附件 sha256:{sha})', 1, "
        f"'feedback')",
    )
    assert police.get(f"/attachments/{sha}").status_code == 403
    assert client(web, "10.0.9.3", "taskforce").get(f"/attachments/{sha}").content == pdf  # the office sees every alert
    assert amr.get(f"/attachments/{'0' * 64}").status_code == 404


# --- flaw 6: ?wait= searched other departments' dead letters ---------------------------------------------
def test_wait_looks_only_at_the_users_own_events(web, store):
    amr, police = client(web, "10.0.10.1", "amr"), client(web, "10.0.10.2", "police")
    tok = csrf_of(amr.get("/alerts/A-amr-1").text)
    r = amr.post("/alerts/A-amr-1/feedback", data={"csrf_token": tok, "action": "in_progress", "comment": "核查中"})
    assert r.status_code == 303
    event = re.search(r"wait=([^&]+)", r.headers["location"]).group(1)
    payload = base64.b64encode(orjson.dumps({"event_id": event, "department": "amr", "comment": "核查中"})).decode()
    reason = "amr 的反馈未受理:内部理由 " + uuid.uuid4().hex[:8]
    _exec(
        store,
        "INSERT INTO riskwatch.dead_letters (topic, partition, offset, key, payload, error, received_at) VALUES "
        f"('{web.settings.topic('events.feedback.amr')}', 0, 1, NULL, '{payload}', '{reason}', now64(3))",
    )
    assert reason in amr.get(r.headers["location"]).text  # the user's own refusal is shown
    for who, alert in ((police, "A-police-1"), (amr, "A-amr-1")):  # another user's or an unknown event id: ignored
        other = event if who is police else "web-" + uuid.uuid4().hex
        page = who.get(f"/alerts/{alert}?wait={other}&since=0")
        assert page.status_code == 200 and reason not in page.text and 'id="refused"' not in page.text
        assert 'id="waiting"' not in page.text
    log = (store[0] / "ch.queries").read_text()
    assert log.count("dead_letters") == 1  # only amr's own wait reached the dead letters


# --- flaw 7: /public/spot-checks ran a three-table FINAL join per anonymous request ------------------------
def test_public_pages_are_cached_and_rate_limited(web, store):
    before = (store[0] / "ch.queries").read_text().count("events_task FINAL")
    for i in range(20):  # 20 visitors from 20 addresses within the cache's minute: one read
        assert client(web, f"10.0.11.{i}").get("/public/spot-checks").status_code == 200
    assert (store[0] / "ch.queries").read_text().count("events_task FINAL") - before <= 1
    one = client(web, "10.0.12.1")
    # a burst of 30, then 429: asked until refused, as the bucket refills 2 per second while the requests
    # run (35 requests at more than ~70 ms each, on a busy machine, were never refused)
    answers = []
    for _ in range(300):
        answers.append(one.get("/public"))
        if answers[-1].status_code == 429:
            break
    refused = answers[-1]
    assert answers[0].status_code == 200 and len(answers) > 30
    assert refused.status_code == 429 and "访问过于频繁" in refused.text
    assert 1 <= int(refused.headers["retry-after"]) <= 2
    # held until the next token was due, so a retry at once is served (how long the hold was depends on
    # how much of a token the bucket held: anything from nothing to half a second)
    assert one.get("/public").status_code == 200
    assert client(web, "10.0.12.2").get("/public").status_code == 200  # other visitors unaffected


def test_public_pages_show_no_private_data_and_set_no_cookie(web):
    c = client(web, "10.0.13.1")
    pages = ["/public", "/public/spot-checks", *[f"/public/items/{i}" for i in range(1, 9)]]
    for p in pages:
        r = c.get(p)
        assert r.status_code == 200, p
        assert "set-cookie" not in r.headers, p
        html = r.text
        assert not PHONE.search(html) and not ID_NUMBER.search(html), p
        assert "风险分" not in html and "预警编号" not in html and "/alerts/" not in html, p
    assert "待县确认" in c.get("/public/items/1").text and "待补充" not in c.get("/public/items/1").text
    assert c.get("/public/items/99").status_code == 404
    r = c.get("/inbox")
    assert r.status_code == 303 and r.headers["location"] == "/login?next=/inbox"
    assert "content-security-policy" in {k.lower() for k in r.headers}


def test_the_data_service_being_down_is_said(broker, tmp_path_factory):
    s = broker.model_copy(update=dict(topic_prefix=f"t{uuid.uuid4().hex[:8]}.", web_port=1))
    w = start_web(s, tmp_path_factory.mktemp("websec-down"), accounts={"amr": ("dept", "amr", "张三")})
    try:
        r = w.client("amr").get("/inbox")
        assert r.status_code == 503 and "数据暂不可用" in r.text and "riskwatch worker" in r.text
    finally:
        w.stop()
