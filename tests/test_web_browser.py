"""The workbench in a real Chromium, on the real broker, a real worker and the real ClickHouse engine.

Flow of issue #10: sensor readings raise an item-1 alert; amr logs in, finds it in the inbox, opens
it, acknowledges it with a comment; the page shows 已签收 once the worker processed it;
``alert_history`` holds the feedback with the user as actor; police (not a receiver) does not see
it, gets 403 for its URL and for a forged action, and nothing is produced. Screenshots go to
var/screenshots/."""

from __future__ import annotations

import orjson
import pytest

from riskwatch.tools.runner import wait_for
from tests import factories as F
from tests.webtools import browser_login, chromium, csrf_of, screenshot, start_web, wait_text

pytestmark = pytest.mark.timeout(420)


@pytest.fixture
def web(pipeline, tmp_path):
    w = start_web(pipeline.settings, tmp_path)
    yield w
    w.stop()


@pytest.fixture
def browser(tmp_path):
    d = chromium(tmp_path)
    yield d
    d.quit()


def _feedback_msgs(p) -> list[dict]:
    return [orjson.loads(v) for _, v in p.read_topic("events.feedback")]


def test_department_acknowledges_alert_in_browser_and_non_receiver_is_refused(pipeline, web, browser):
    from selenium.webdriver.common.by import By

    p = pipeline
    w = p.start_worker(web_public_url=web.url)
    p.send("events.registry", F.registered("E-food", kind="food_producer", name="舞泉镇鑫源食品有限公司"))
    c = F.complaint("E-food", category="hygiene")
    c["text"] = "后厨有老鼠<script>alert(1)</script> 联系电话13812345678"
    p.send("events.complaint", c)
    for v in (11.0, 11.5, 11.8):
        p.send("events.sensor", F.sensor("E-food", v))
    p.flush()
    alert = wait_for(lambda: w.query("SELECT alert_id, departments FROM riskwatch.alerts FINAL "
                                     "WHERE entity_id = 'E-food' AND item_id = 1 AND status = 'firing'"), 90, "the item-1 alert")[0]
    aid = alert["alert_id"]
    assert set(alert["departments"]) >= {"amr", "emergency", "eco"} and "police" not in alert["departments"]
    sent = [orjson.loads(v) for _, v in p.read_topic("alerts.amr")]
    assert any(m["alert_id"] == aid and m["url"] == f"{web.url}/alerts/{aid}" for m in sent)

    # amr: inbox → alert page → 签收 with a comment
    browser_login(browser, web, "amr")
    link = wait_text(browser, "#inbox a.alert-link", "", timeout=30, refresh=True)
    rows = browser.find_elements(By.CSS_SELECTOR, f'#inbox tr[data-alert-id="{aid}"]')
    assert rows, "the alert is listed in amr's inbox"
    screenshot(browser, "inbox")
    rows[0].find_element(By.CSS_SELECTOR, "a.alert-link").click()
    wait_for(lambda: f"/alerts/{aid}" in browser.current_url, 30, "the alert page")
    assert "待签收" in browser.find_element(By.ID, "alert-status").text
    page = browser.page_source
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert(1)" not in page  # escaped
    assert "13812345678" not in page  # masked
    screenshot(browser, "alert")
    before = len(_feedback_msgs(p))
    browser.find_element(By.ID, "ack-comment").send_keys("已安排执法人员现场核查")
    browser.find_element(By.ID, "btn-ack").click()
    wait_for(lambda: "wait=" in browser.current_url, 30, "the action to be submitted")
    # the page says it waits for the worker, then shows the new state (it refreshes itself)
    wait_text(browser, "#alert-status", "已签收", timeout=90)
    assert browser.find_elements(By.ID, "confirmed")
    amr_row = browser.find_element(By.CSS_SELECTOR, '#receivers tr[data-dept="amr"]')
    assert "已签收" in amr_row.text and "张三" in amr_row.text
    screenshot(browser, "alert_acknowledged")
    hist = w.query(f"SELECT actor, comment FROM riskwatch.alert_history FINAL WHERE alert_id = '{aid}' AND kind = 'feedback'")
    assert [h["actor"] for h in hist] == ["amr/张三"] and "已安排执法人员现场核查" in hist[0]["comment"]
    fb = _feedback_msgs(p)
    assert len(fb) == before + 1 and fb[-1]["department"] == "amr" and fb[-1]["user"] == "张三"

    # the dossier and the public service manual
    browser.get(f"{web.url}/entities/E-food")
    wait_text(browser, "h1", "舞泉镇鑫源食品有限公司", timeout=30)
    screenshot(browser, "dossier")
    browser.get(f"{web.url}/public/items/1")
    wait_text(browser, "h1", "食品生产企业综合监管", timeout=30)
    screenshot(browser, "public_manual")

    # police: not a receiver — not listed, 403 on the URL, 403 on a forged action, nothing produced
    browser_login(browser, web, "police")
    assert not browser.find_elements(By.CSS_SELECTOR, f'#inbox tr[data-alert-id="{aid}"]')
    browser.get(f"{web.url}/alerts/{aid}")
    assert "无权查看" in browser.find_element(By.TAG_NAME, "h1").text
    police = web.client("police")
    assert police.get(f"/alerts/{aid}").status_code == 403
    tok = csrf_of(police.get("/inbox").text)
    r = police.post(f"/alerts/{aid}/feedback", data={"csrf_token": tok, "action": "acknowledged", "comment": "x"})
    assert r.status_code == 403
    p.flush()
    assert len(_feedback_msgs(p)) == before + 1  # nothing produced for police
