"""Flow 2 of issue #22 in a real Chromium, on the real broker, a real worker and the real ClickHouse
engine: an inspection with violations (限期整改) opens a 整改令 for amr; amr finds it on its task list,
reports the rectification done with a photo (提交整改完成); the 复查 fails: the order re-opens with a new
deadline and is escalated to the office; amr reports again, the 复查 passes and the order closes. The
order's history is its audit chain. Another department may not see or act on it. Screenshots go to
var/screenshots/ (orders_*.png)."""

from __future__ import annotations

import orjson
import pytest

from riskwatch.tools.runner import wait_for
from tests import factories as F
from tests.webtools import browser_login, csrf_of, screenshot, wait_text

pytestmark = pytest.mark.timeout(420)

PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"
    b"\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8N\x00\x00\x00\x00IEND\xaeB`\x82"
)


@pytest.fixture(scope="module")
def shared(web_stack, tmp_path_factory):
    """The browser modules' one pipeline, worker, app and browser (``web_stack``, tests/conftest.py): this
    module's flow uses an entity and an order of its own."""
    return (*web_stack, tmp_path_factory.mktemp("orderflow"))


def test_recheck_fails_and_reopens_then_passes_and_closes(shared):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    p, w, web, browser, tmp = shared
    p.send("events.registry", F.registered("E-rect", kind="food_producer", name="舞阳县鑫盛冷链食品厂"))
    p.flush()
    p.wait_consumed()
    insp = F.inspection("E-rect", outcome="pass_with_conditions", severity="serious")
    insp["violations"] = [
        {"code": "cold_chain.temp", "severity": "serious", "description": "冷库温度超过8℃"},
        {"code": "record.purchase", "severity": "minor", "description": "进货查验台账不全"},
    ]
    p.send("events.inspection.amr", insp)
    p.flush()
    oid = wait_for(
        lambda: w.query("SELECT order_id FROM riskwatch.rectification_orders FINAL WHERE entity_id = 'E-rect'"),
        90,
        "the order",
    )[0]["order_id"]

    # amr's task list shows the order, its actions and deadline
    browser_login(browser, web, "amr")
    browser.get(f"{web.url}/tasks")
    row = wait_text(browser, f'#orders tr[data-order="{oid}"]', "待整改", refresh=True)[0]
    assert "整改冷链设施" in row.text and "补全进货查验与台账记录" in row.text
    screenshot(browser, "orders_tasks")
    row.find_element(By.LINK_TEXT, "提交整改完成").click()
    assert "冷库温度超过8℃" in browser.find_element(By.TAG_NAME, "main").text

    # another department: neither the page nor a forged claim
    police = web.client("police")
    assert police.get(f"/orders/{oid}").status_code == 403
    tok = csrf_of(police.get("/inbox").text)
    r = police.post(f"/orders/{oid}/claim", data={"csrf_token": tok, "comment": "x"})
    assert r.status_code == 403

    photo = tmp / "rectified.png"
    photo.write_bytes(PNG)

    def claim(text: str) -> None:
        browser.find_element(By.ID, "claim-comment").send_keys(text)
        browser.find_element(By.ID, "claim-attachment").send_keys(str(photo))
        browser.find_element(By.ID, "btn-claim").click()
        wait_text(browser, "#order-state", "待复查")
        # the order's row may be stored before its history row: the page waits (no forms) until both are
        wait_text(browser, "#confirmed", "")

    def recheck(outcome: str, comment: str, expect: str) -> None:
        Select(browser.find_element(By.ID, "recheck-outcome")).select_by_value(outcome)
        if comment:
            browser.find_element(By.ID, "recheck-comment").send_keys(comment)
        browser.find_element(By.ID, "btn-recheck").click()
        wait_text(browser, "#order-state", expect)
        wait_text(browser, "#confirmed", "")  # as above

    claim("已更换冷库压缩机,补全台账")
    screenshot(browser, "orders_claimed")
    first_deadline = browser.find_element(By.ID, "order-deadline").text
    recheck("fail", "冷库温度仍为9.5℃", "复查不合格")
    assert browser.find_element(By.ID, "order-deadline").text != first_deadline  # a new deadline
    assert "复查不合格 1 次" in browser.find_element(By.ID, "order-state").text
    screenshot(browser, "orders_recheck_failed")
    escalations = wait_for(
        lambda: [
            n for _, v in p.read_topic("notices") if (n := orjson.loads(v))["kind"] == "escalate" and oid in n["text"]
        ],
        60,
        "the escalation to the office",
    )
    assert "taskforce" in escalations[0]["departments"]

    claim("已更换温控器,附温度记录")
    recheck("pass", "", "复查合格,已销号")
    hist = browser.find_element(By.ID, "order-history").text
    for step in ("待整改", "已提交整改,待复查", "复查不合格,重新整改", "复查合格,已销号"):
        assert step in hist
    screenshot(browser, "orders_closed")

    # the audit chain: each history row hashes the one before; the dossier lists the order
    rows = w.query(f"SELECT seq, prev_hash, hash FROM riskwatch.alert_history WHERE alert_id = '{oid}' ORDER BY seq")
    assert [r["seq"] for r in rows] == [1, 2, 3, 4, 5]
    assert all(b["prev_hash"] == a["hash"] for a, b in zip(rows, rows[1:], strict=False))
    browser.get(f"{web.url}/entities/E-rect")
    assert "复查合格,已销号" in browser.find_element(By.ID, "dossier-orders").text
    screenshot(browser, "orders_dossier")
