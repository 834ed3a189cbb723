"""What the public is told, in a real Chromium on the real broker, worker and ClickHouse engine (issue #23
flows "a manual edit published" and "a typical case published").

1. The office opens 信息发布, revises item 7's 咨询投诉渠道 (卫健委 leads it: a department number filled in,
   its 待县确认 note cleared), saves it as a new dated version; an anonymous visitor's public page shows
   the new version, its date, the new number, and the earlier version listed.
2. Sensor readings raise an item-1 alert; amr acknowledges and disposes of it, so it is resolved; the
   office picks it under 已办结的预警, writes the case with the entity's name and a mobile number in it,
   publishes it; the public 典型案例 page shows it with 某经营主体 and the number masked.

Screenshots: var/screenshots/publish_office, publish_manual_form, publish_manual_public, publish_case_form,
publish_case_public, public_monthly, public_policy, public_index."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from riskwatch.tools.runner import wait_for
from tests import factories as F
from tests.webtools import browser_login, screenshot, wait_text

pytestmark = pytest.mark.timeout(420)
TODAY = datetime.now(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m-%d")


@pytest.fixture(scope="module")
def shared(web_stack):
    """The browser modules' one pipeline, worker, app and browser (``web_stack``, tests/conftest.py): this
    module's flows use entities of their own, so they do not disturb each other or the other modules'."""
    return web_stack


def test_office_edits_a_manual_and_the_public_page_shows_the_new_dated_version(shared):
    from selenium.webdriver.common.by import By

    _, _, web, browser = shared
    browser_login(browser, web, "taskforce")
    browser.get(web.url + "/taskforce/publish")
    wait_text(browser, "#manuals", "涉医疗美容经营活动综合监管")
    screenshot(browser, "publish_office")
    browser.find_element(By.CSS_SELECTOR, 'a[href="/taskforce/publish/manuals/7"]').click()
    wait_text(browser, "h1", "修订服务手册")
    channel = browser.find_element(By.CSS_SELECTOR, 'textarea[name="complaint_channel"]')
    assert "12320" in channel.get_attribute("value")
    text = channel.get_attribute("value").replace(
        "县卫生健康委咨询电话:〔待县填写〕", "县卫生健康委咨询电话:0395-7212320"
    )
    channel.clear()
    channel.send_keys(text)
    browser.find_element(By.CSS_SELECTOR, 'input[name="complaint_channel_confirm"]').clear()
    browser.find_element(By.CSS_SELECTOR, 'input[name="note"]').send_keys("填写县卫生健康委咨询电话")
    screenshot(browser, "publish_manual_form")
    browser.find_element(By.ID, "save-manual").click()
    wait_text(browser, "#manual-saved", "已保存为第 2 版")

    browser.delete_all_cookies()  # an anonymous visitor
    browser.get(web.url + "/public/items/7")
    wait_text(browser, "#manual-version", f"第 2 版 · 发布日期 {TODAY} · 填写县卫生健康委咨询电话")
    page = browser.find_element(By.TAG_NAME, "main").text
    assert "0395-7212320" in page and "12320" in page
    assert "待县确认:各部门咨询电话" not in page  # the channel's open point was cleared; others remain
    assert "待县确认" in page
    assert "第 1 版 · 发布日期 2026-12-01" in browser.find_element(By.ID, "versions").text
    screenshot(browser, "publish_manual_public")
    browser.find_element(By.CSS_SELECTOR, 'a[href="/public/items/7/policy"]').click()
    wait_text(browser, "h1", "政策解读")
    assert "12320" in browser.find_element(By.TAG_NAME, "main").text
    screenshot(browser, "public_policy")
    browser.get(web.url + "/public")
    wait_text(browser, "#items", "特种设备综合监管")
    screenshot(browser, "public_index")


def test_office_publishes_a_typical_case_from_a_resolved_alert_masked(shared):
    from selenium.webdriver.common.by import By

    p, w, web, browser = shared
    eid, name = "E-PUB-1", "舞泉镇鑫源食品有限公司"
    p.send("events.registry", F.registered(eid, kind="food_producer", name=name))
    p.flush()
    p.wait_consumed()
    for v in (11.0, 11.5, 11.8):
        p.send("events.sensor", F.sensor(eid, v))
    p.flush()
    aid = wait_for(
        lambda: w.query(f"SELECT alert_id FROM riskwatch.alerts FINAL WHERE entity_id = '{eid}' AND status = 'firing'"),
        90,
        "the item-1 alert",
    )[0]["alert_id"]
    for status in ("acknowledged", "disposed"):
        p.send("events.feedback.amr", F.feedback(eid, aid, "amr", status))
        p.flush()
        p.wait_consumed()
    wait_for(
        lambda: w.query(f"SELECT 1 FROM riskwatch.alerts FINAL WHERE alert_id = '{aid}' AND status = 'resolved'"),
        90,
        "the alert resolved",
    )

    browser_login(browser, web, "taskforce")
    browser.get(web.url + "/taskforce/publish")
    wait_text(browser, "#closed-alerts", name, timeout=30, refresh=True)
    browser.find_element(By.CSS_SELECTOR, f'a.write-case[href="/taskforce/publish/cases/new?alert={aid}"]').click()
    wait_text(browser, "h1", "编写典型案例")
    title = browser.find_element(By.CSS_SELECTOR, 'input[name="title"]')
    title.clear()
    title.send_keys(f"{name}冷库超温预警联合处置")
    body = browser.find_element(By.CSS_SELECTOR, 'textarea[name="text"]')
    body.send_keys(f"\n现场核查:{name}冷库压缩机故障,负责人(电话13812345678)当日更换设备,县市场监管局复查合格。")
    screenshot(browser, "publish_case_form")
    browser.find_element(By.ID, "publish-case").click()
    wait_text(browser, "#case-published", "典型案例已发布")
    screenshot(browser, "publish_office")

    browser.delete_all_cookies()
    browser.get(web.url + "/public/cases")
    wait_text(browser, "article.case h2", "某经营主体冷库超温预警联合处置")
    page = browser.find_element(By.TAG_NAME, "main").text
    assert name not in page and eid not in page and aid not in page and "13812345678" not in page
    assert "138****5678" in page and f"发布日期 {TODAY}" in page and "食品生产企业综合监管" in page
    screenshot(browser, "publish_case_public")
    browser.get(web.url + "/public/monthly")
    wait_text(browser, "#monthly-counts", "食品生产企业综合监管")
    assert name not in browser.find_element(By.TAG_NAME, "main").text
    screenshot(browser, "public_monthly")
