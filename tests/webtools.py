"""Helpers for the workbench tests: the app as a real ``riskwatch web run`` process, accounts, an
HTTP client with a logged-in session, and a headless Debian Chromium driven by Selenium."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path

import httpx

from riskwatch.settings import Settings
from riskwatch.tools.runner import settings_env, wait_for
from web.users import UserStore

REPO = Path(__file__).resolve().parents[1]
SCREENSHOTS = REPO / "var" / "screenshots"
ACCOUNTS = {  # username: (role, dept, name)
    "amr": ("dept", "amr", "张三"),
    "police": ("dept", "police", "李四"),
    "taskforce": ("taskforce", "", "王五"),
    "emergency": ("dept", "emergency", "赵六"),
    "leader": ("leader", "", "县领导"),
}


@dataclass
class Web:
    settings: Settings
    url: str
    proc: subprocess.Popen
    log: Path
    passwords: dict[str, str] = field(default_factory=dict)

    def client(self, user: str | None = None) -> httpx.Client:
        c = httpx.Client(base_url=self.url, follow_redirects=False, timeout=30)
        if user:
            login(c, user, self.passwords[user])
        return c

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def restart(self) -> None:
        """Stop the app process and start a new one on the same settings, directory and port."""
        self.stop()
        self.proc = _spawn(self.settings, self.log, self.url)


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert m, "no CSRF token in the page"
    return m.group(1)


def login(c: httpx.Client, user: str, password: str) -> httpx.Response:
    tok = csrf_of(c.get("/login").text)
    return c.post("/login", data={"username": user, "password": password, "csrf_token": tok, "next": "/inbox"})


def start_web(settings: Settings, tmp: Path, accounts=ACCOUNTS) -> Web:
    from tests.conftest import free_port

    port = free_port()
    s = settings.model_copy(
        update=dict(workbench_port=port, workbench_dir=tmp / "web", web_public_url=f"http://127.0.0.1:{port}")
    )
    store = UserStore(s.workbench_dir / "users.json")
    pw = {}
    for u, (role, dept, name) in accounts.items():
        pw[u] = store.add(u, role=role, dept=dept, name=name)[1]
    log = tmp / "web.log"
    url = f"http://127.0.0.1:{port}"
    return Web(s, url, _spawn(s, log, url), log, pw)


def _spawn(s: Settings, log: Path, url: str) -> subprocess.Popen:
    env = {**os.environ, **settings_env(s), "PYTHONPATH": str(REPO)}
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "riskwatch.cli.main", "web", "run"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )

    def up() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"riskwatch web run exited: {log.read_text()[-2000:]}")
        try:
            return httpx.get(url + "/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(up, 60, "the workbench to answer /healthz", interval=0.3)
    return proc


def chromium(tmp: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    o = webdriver.ChromeOptions()
    o.binary_location = "/usr/bin/chromium"
    for a in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp / 'chromium-profile'}",
        "--window-size=1360,1000",
        "--lang=zh-CN",
    ):
        o.add_argument(a)
    d = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=o)
    d.set_page_load_timeout(60)
    return d


def screenshot(driver, name: str) -> Path:
    """Full-page PNG under var/screenshots (the window is grown to the page's height first)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    h = driver.execute_script("return Math.max(document.body.scrollHeight, 800)")
    driver.set_window_size(1360, min(int(h) + 40, 4000))
    p = SCREENSHOTS / f"{name}.png"
    driver.save_screenshot(str(p))
    driver.set_window_size(1360, 1000)
    return p


def browser_login(driver, web: Web, user: str) -> None:
    from selenium.webdriver.common.by import By

    driver.delete_all_cookies()
    driver.get(web.url + "/login")
    driver.find_element(By.ID, "username").send_keys(user)
    driver.find_element(By.ID, "password").send_keys(web.passwords[user])
    driver.find_element(By.ID, "login").click()
    wait_for(lambda: "/inbox" in driver.current_url, 30, f"{user} to reach the inbox")


def wait_text(driver, css: str, text: str, timeout: float = 90.0, refresh: bool = False):
    from selenium.webdriver.common.by import By

    def seen():
        if refresh:
            driver.refresh()
        els = driver.find_elements(By.CSS_SELECTOR, css)
        return els if any(text in e.text for e in els) else None

    try:
        # a refresh is a page load (and the public pages allow 120 a minute): once a second; a look is cheap
        return wait_for(seen, timeout, f"{text!r} in {css}", interval=1.0 if refresh else 0.25)
    except Exception:
        screenshot(driver, "failed_wait")
        (SCREENSHOTS / "failed_wait.html").write_text(driver.page_source)
        raise


# --- a stand-in for the worker's data service: the real engine, two alerts ---------------------------
STORE_ALERTS = {"A-amr-1": ["amr"], "A-police-1": ["police"]}


def serve_store(path: str, port: int) -> None:
    """Child process: an embedded ClickHouse (the product's migrations) holding one open alert per
    entry of ``STORE_ALERTS``, answering the worker's ``POST /query`` (read-only, as the worker does)
    and, for the tests only, ``POST /exec`` (a write, e.g. a dead letter)."""
    import threading
    from datetime import datetime, timedelta
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import orjson

    from sinks.clickhouse import INSERT_SETTINGS, make_client
    from sinks.migrations import migrate
    from sinks.query import execute_readonly
    from sinks.rows import COLUMNS, alert_row
    from tests import factories as F

    client = make_client(f"chdb://{path}")
    migrate(client, "riskwatch")
    now = datetime.now(UTC)
    rows = [
        alert_row(
            F.alert(
                aid,
                now,
                lead_department=depts[0],
                departments=depts,
                ack_due=now + timedelta(hours=2),
                dispose_due=now + timedelta(days=1),
            )
        )
        for aid, depts in STORE_ALERTS.items()
    ]
    client.insert("alerts", rows, column_names=list(COLUMNS["alerts"]), database="riskwatch", settings=INSERT_SETTINGS)
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_POST(self):
            sql = self.rfile.read(int(self.headers.get("content-length", 0))).decode()
            try:
                with lock:
                    if self.path == "/exec":
                        client.command(sql)
                        body = {"ok": True}
                    else:
                        with open(f"{path}.queries", "a") as f:
                            f.write(" ".join(sql.split()) + "\n")
                        cols, out = execute_readonly(client, sql)
                        body = {"columns": cols, "rows": out}
            except Exception as e:  # noqa: BLE001
                body = {"error": str(e).splitlines()[0]}
            data = orjson.dumps(body, default=str)
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


def start_store(tmp: Path) -> tuple[subprocess.Popen, int]:
    from riskwatch.tools.runner import wait_for
    from tests.conftest import free_port

    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with open(tmp / "store.log", "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", f"from tests.webtools import serve_store; serve_store({str(tmp / 'ch')!r}, {port})"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )

    def up() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"store exited: {(tmp / 'store.log').read_text()[-2000:]}")
        try:
            return "rows" in httpx.post(f"http://127.0.0.1:{port}/query", content=b"SELECT 1", timeout=2).json()
        except httpx.HTTPError:
            return False

    wait_for(up, 90, "the stand-in data service", interval=0.3)
    return proc, port
