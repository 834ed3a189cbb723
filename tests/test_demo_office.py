"""The demo's office steps (riskwatch/tools/demo_office.py) on a small pipeline with a real worker: an alert confirmed
with 责令整改 whose order goes through a failed and a passed 复查, an open alert labelled 误报, the precision table,
a 双告知 confirmed and one disputed, a 会商 whose decision becomes a task, a non-empty 研判 queue, and (when the
credit import is in the checkout) an imported tier export changing the live draw."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from rich.console import Console

from riskwatch.tools.demo_office import _uscc, office_steps
from riskwatch.tools.runner import wait_for
from tests import factories as F


def test_uscc_codes_are_valid():
    from stdnum.cn import uscc

    assert all(uscc.is_valid(_uscc(n)) for n in (1, 2, 999))


def test_office_steps_through_the_worker(pipeline, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # var/demo/ (the credit export, the import report) under the test's directory
    p = pipeline
    w = p.start_worker(lifecycle_clock="event", lifecycle_tick_seconds=0.5)
    t0 = datetime.now(UTC) - timedelta(hours=2)
    for eid, name in (("E-od1", "舞泉镇鑫源食品有限公司"), ("E-od2", "舞泉镇万家冷链食品厂")):
        p.send("events.registry", F.registered(eid, name=name, at=t0))
    for eid, dev in (("E-od1", "d1"), ("E-od2", "d2")):
        for i, v in enumerate((9.5, 9.6, 9.8)):
            p.send("events.sensor", F.sensor(eid, v, at=t0 + timedelta(minutes=10 + i), device=dev))
    p.flush()
    alerts = wait_for(
        lambda: (
            w.query(
                "SELECT alert_id, entity_id, lead_department FROM riskwatch.alerts FINAL "
                "WHERE status = 'firing' ORDER BY entity_id"
            )
            if len(w.query("SELECT alert_id FROM riskwatch.alerts FINAL WHERE status = 'firing'") or []) >= 2
            else None
        ),
        90,
        "two firing alerts",
    )
    a = alerts[0]  # the simulated departments' 属实 + 责令整改, as they report it
    for status in ("acknowledged", "disposed"):
        fb = F.feedback(a["entity_id"], a["alert_id"], a["lead_department"], status)
        fb["occurred_at"] = (t0 + timedelta(minutes=30)).isoformat()
        if status == "disposed":
            fb["outcome"] = {"verdict": "confirmed", "measures": ["rectify"], "rectify_note": "维修冷库制冷机组"}
        p.send(f"events.feedback.{a['lead_department']}", fb)
    p.flush()
    wait_for(lambda: w.query("SELECT order_id FROM riskwatch.rectification_orders FINAL"), 60, "the order")

    lines = office_steps(p.settings, w, Console(width=160), p.catalog)
    text = "\n".join(lines)
    print(text)
    assert "did not complete" not in text
    order = next(x for x in lines if x.startswith("整改令 RO-"))
    assert order.endswith("issued → claimed → reopened → claimed → closed")
    assert "整改复查 by the simulated departments: 1 orders claimed, 复查 合格 0, 不合格 1" in text
    assert any(x.startswith("误报 false alarms labelled: 1 (设备故障 1)") for x in lines)
    assert any(x.strip().startswith("rule.sensor") for x in lines)  # a row of the precision table
    notices = next(x for x in lines if x.startswith("双告知"))
    assert "2 open, 认领 1, 有异议 1, silent 0; now confirmed 1, disputed 1" in notices
    assert any(x.startswith("议事会商 C-") and "decision → task C-" in x for x in lines)
    queue = next(x for x in lines if x.startswith("研判 queue"))
    assert "双告知异议 1" in queue and not queue.startswith("研判 queue: 0")
    try:
        from riskwatch.domain.planning import live_entities  # noqa: F401 — the credit branch
    except ImportError:
        assert any(x.startswith("信用: the credit import") for x in lines)
    else:
        assert any(x.startswith("信用 credit:") for x in lines)
        assert any(x.startswith("双随机 draw") for x in lines)
