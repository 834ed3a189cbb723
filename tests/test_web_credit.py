"""联合信用监管 in a real Chromium, on the real broker, a real worker and the real ClickHouse engine.

An entity is registered, listed in the 严重违法失信名单 (and an older 经营异常名录 listing repaired) and
given an official tier through ``events.credit`` — the worker stores them in the ``credit`` table — then
its cold-chain readings raise an item-1 alert. The dossier shows the official tier beside riskwatch's
own assessment, the listing with each department's 联合惩戒 measures and the repair in the history; the
alert page reminds the receiving departments of their measures. Screenshots go to var/screenshots/."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from riskwatch.tools.runner import wait_for
from tests import factories as F
from tests.webtools import browser_login, screenshot, wait_text

pytestmark = pytest.mark.timeout(420)
ENTITY = "E-credit"


@pytest.fixture(scope="module")
def shared(web_stack):
    """The browser modules' one pipeline, worker, app and browser (``web_stack``, tests/conftest.py): this
    module's flows use entities of their own, so they do not disturb each other or the other modules'."""
    return web_stack


def _credit(event_id: str, kind: str, listed_on: str, **kw) -> dict:
    at = kw.pop("at", listed_on)
    return {
        "event_id": event_id,
        "entity_id": ENTITY,
        "occurred_at": datetime.fromisoformat(at).replace(tzinfo=UTC).isoformat(),
        "source": "import:credit:test",
        "kind": kind,
        "listed_on": listed_on,
        "authority": "舞阳县市场监督管理局",
        **kw,
    }


def test_listing_on_the_dossier_and_reminded_on_the_alert_page(shared):
    from selenium.webdriver.common.by import By

    p, w, web, browser = shared
    p.send("events.registry", F.registered(ENTITY, kind="food_producer", name="舞阳县诚信食品有限公司"))
    p.flush()
    p.wait_consumed()
    p.send("events.credit", _credit("c1", "tier", "2026-06-30", tier="C"))
    p.send("events.credit", _credit("c2", "serious_list", "2026-08-15", reason="提供虚假材料取得食品生产许可"))
    p.send("events.credit", _credit("c3", "abnormal_list", "2025-05-10", reason="未按规定公示年度报告"))
    p.send(
        "events.credit",
        _credit("c4", "abnormal_list", "2025-05-10", removed_on="2025-09-01", reason="已补报并公示年度报告",
                listed_reason="未按规定公示年度报告", at="2025-09-01"),
    )  # fmt: skip
    for v in (11.0, 11.5, 11.8):
        p.send("events.sensor", F.sensor(ENTITY, v))
    p.flush()
    aid = wait_for(
        lambda: w.query(
            f"SELECT alert_id FROM riskwatch.alerts FINAL WHERE entity_id = '{ENTITY}' AND item_id = 1 "
            "AND status = 'firing'"
        ),
        90,
        "the item-1 alert",
    )[0]["alert_id"]
    rows = wait_for(
        lambda: (
            (r := w.query(f"SELECT kind, removed_on FROM riskwatch.credit FINAL WHERE entity_id = '{ENTITY}'"))
            and len(r) == 3
            and r
        ),
        90,
        "the credit rows (the abnormal listing repaired: one row)",
    )
    assert sorted(r["kind"] for r in rows) == ["abnormal_list", "serious_list", "tier"]

    browser_login(browser, web, "amr")
    browser.get(f"{web.url}/entities/{ENTITY}")
    wait_text(browser, "#credit-lists", "严重违法失信名单", timeout=60, refresh=True)
    assert "信用风险较高(C类)" in browser.find_element(By.ID, "official-tier").text
    assert "riskwatch 自评" in browser.find_element(By.ID, "system-tier").text
    card = browser.find_element(By.ID, "credit").text
    assert "限制担任其他企业法定代表人、负责人" in card and "县发改委" in card and "待县确认" in card
    assert "县税务局(系统外单位)" in card
    history = browser.find_element(By.CSS_SELECTOR, "table.credit-history").text
    assert "2025-09-01" in history and "已补报并公示年度报告" in history and "仍在名单" in history
    assert "经营异常名录" not in browser.find_element(By.ID, "credit-lists").text  # repaired: not active
    screenshot(browser, "credit_dossier")

    browser.get(f"{web.url}/alerts/{aid}")
    wait_text(browser, "#credit-reminder", "联合惩戒提醒", timeout=30)
    rem = browser.find_element(By.ID, "credit-reminder").text
    assert "严重违法失信名单" in rem and "县市场监管局" in rem and "限制担任其他企业法定代表人" in rem
    assert "经营异常名录" not in rem
    screenshot(browser, "credit_alert")
