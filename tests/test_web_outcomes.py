"""Disposal outcomes in a real Chromium, on the real broker, a real worker and the real ClickHouse engine (issue #22
flows 1 and 3): amr disposes one alert as 属实 with 责令整改 and another as 误报 with its reason; the alert pages show
the outcomes, ``events_feedback`` holds them, the office's 预警准确率 page counts them. Screenshots go to
var/screenshots/ (outcome_form, outcome_confirmed, outcome_false_alarm, precision)."""

from __future__ import annotations

import pytest

from riskwatch.tools.runner import wait_for
from tests import factories as F
from tests.webtools import browser_login, chromium, screenshot, start_web, wait_text

pytestmark = pytest.mark.timeout(420)


@pytest.fixture(scope="module")
def shared(broker, tmp_path_factory):

    from streams.runtime.topics import delete_topics
    from tests.conftest import Pipeline, isolated_settings

    tmp = tmp_path_factory.mktemp("outcomes")
    s = isolated_settings(broker, tmp)
    p = Pipeline(s, tmp)
    web = start_web(s, tmp)
    worker = p.start_worker(web_public_url=web.url)
    browser = chromium(tmp)
    yield p, worker, web, browser
    browser.quit()
    web.stop()
    p.close()
    delete_topics(s, [s.topic_prefix, s.app_id + "-"])


def _alert(p, w, entity_id: str, name: str) -> str:
    p.send("events.registry", F.registered(entity_id, kind="food_producer", name=name))
    p.flush()
    p.wait_consumed()
    for v in (11.0, 11.5, 11.8):
        p.send("events.sensor", F.sensor(entity_id, v))
    p.flush()
    row = wait_for(
        lambda: w.query(
            "SELECT alert_id FROM riskwatch.alerts FINAL "
            f"WHERE entity_id = '{entity_id}' AND item_id = 1 AND status = 'firing' AND has(departments, 'amr')"
        ),
        90,
        f"the item-1 alert of {entity_id}",
    )[0]
    p.wait_consumed()
    return row["alert_id"]


def _dispose(browser, web, aid: str, result: str) -> None:
    from selenium.webdriver.common.by import By

    browser.get(f"{web.url}/alerts/{aid}")
    wait_text(browser, "#alert-status", "待签收", timeout=30)
    browser.find_element(By.CSS_SELECTOR, 'form textarea[name="result"]').send_keys(result)


def test_outcome_confirmed_with_rectification_and_a_false_alarm_with_its_reason(shared):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    p, w, web, browser = shared
    a1 = _alert(p, w, "E-out1", "舞泉镇丰收冷链食品有限公司")
    a2 = _alert(p, w, "E-out2", "舞泉镇康源食品有限公司")
    browser_login(browser, web, "amr")

    # flow 1 (outcome): 属实 with 责令整改
    _dispose(browser, web, a1, "现场核查冷库温度超标属实")
    browser.find_element(By.ID, "verdict-confirmed").click()
    browser.find_element(By.ID, "measure-rectify").click()
    browser.find_element(By.ID, "rectify-note").send_keys("3日内维修冷库制冷机组并报送温度记录")
    screenshot(browser, "outcome_form")
    browser.find_element(By.ID, "btn-disposed").click()
    wait_for(lambda: "wait=" in browser.current_url, 30, "the action to be submitted")
    wait_text(browser, "#alert-status", "已解除", timeout=90)
    wait_text(browser, "#outcomes", "属实", timeout=90, refresh=True)
    text = browser.find_element(By.ID, "outcomes").text
    assert "责令整改" in text and "3日内维修冷库制冷机组" in text
    screenshot(browser, "outcome_confirmed")
    hist = w.query(f"SELECT comment FROM riskwatch.alert_history FINAL WHERE alert_id = '{a1}' AND kind = 'feedback'")
    assert any("【核查结果】属实;措施:责令整改(3日内维修冷库制冷机组" in h["comment"] for h in hist)

    # flow 3: 误报 with its reason
    _dispose(browser, web, a2, "现场温度计读数正常,系探头故障")
    browser.find_element(By.ID, "verdict-false_alarm").click()
    Select(browser.find_element(By.ID, "false-reason")).select_by_value("sensor_fault")
    browser.find_element(By.ID, "btn-disposed").click()
    wait_for(lambda: "wait=" in browser.current_url, 30, "the action to be submitted")
    wait_text(browser, "#outcomes", "误报", timeout=90, refresh=True)
    assert "设备故障" in browser.find_element(By.ID, "outcomes").text
    screenshot(browser, "outcome_false_alarm")
    rows = wait_for(
        lambda: w.query(
            "SELECT alert_id, verdict, false_reason, measures FROM riskwatch.events_feedback FINAL "
            f"WHERE alert_id IN ('{a1}', '{a2}') AND status = 'disposed'"
        ),
        60,
        "the outcome rows",
    )
    got = {r["alert_id"]: (r["verdict"], r["false_reason"], list(r["measures"])) for r in rows}
    assert got == {a1: ("confirmed", "", ["rectify"]), a2: ("false_alarm", "sensor_fault", [])}

    # a 误报 without a reason is refused by the app, nothing produced
    amr = web.client("amr")
    from tests.webtools import csrf_of

    a3 = _alert(p, w, "E-out3", "舞泉镇永兴食品厂")
    tok = csrf_of(amr.get(f"/alerts/{a3}").text)
    r = amr.post(
        f"/alerts/{a3}/feedback",
        data={"csrf_token": tok, "action": "disposed", "result": "误报", "verdict": "false_alarm"},
    )
    assert r.status_code == 400 and "误报须选择原因" in r.text

    # the office's precision page counts both
    browser_login(browser, web, "taskforce")
    browser.get(f"{web.url}/taskforce/precision")
    wait_text(browser, "#precision-rule", "rule.sensor.cold_chain_temp", timeout=30)
    row = browser.find_element(By.CSS_SELECTOR, "#precision-rule tbody tr").text
    assert row.split()[:6] == ["rule.sensor.cold_chain_temp", "3", "1", "0", "1", "1"], row
    assert "50%" in row
    screenshot(browser, "precision")
