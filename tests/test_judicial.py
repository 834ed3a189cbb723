"""行刑衔接: suspected crimes flagged by data become case transfers (案件移送) to the police with
the evidence bundle's hash; the police's answer drives the transfer's states. Pure processor
tests, the start-up check of the transfer config, `route test`, and one run on the real worker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from riskwatch.domain.county import load_county
from riskwatch.domain.routing import RoutingError, load_routing
from riskwatch.settings import DATA_DIR
from riskwatch.tools.runner import settings_env, wait_for
from schemas.events import Complaint, DisposalFeedback, EntityEvent, InspectionResult, Violation
from streams.engine.dispatch import Processor
from streams.engine.state import EntityState
from tests import factories as F

T0 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=10)


@pytest.fixture(scope="module")
def county():
    return load_county()


def _pharmacy(p, st, eid="P1"):
    p.process(
        EntityEvent(
            event_id=f"r-{eid}",
            entity_id=eid,
            occurred_at=T0 - timedelta(days=1),
            source="t",
            action="registered",
            name="舞泉镇康源大药房",
            kind="retail_pharmacy",
            township="舞泉镇",
            licence="L1",
        ),
        st,
        ("r", 0, 0),
    )


def _inspection(violations, outcome="fail", eid="P1", n=1):
    return InspectionResult(
        event_id=f"i{n}",
        entity_id=eid,
        occurred_at=T0 + timedelta(hours=n),
        source="t",
        inspection_id=f"I-{n}",
        item_id=2,
        departments=["amr"],
        violations=violations,
        outcome=outcome,
    )


def _feedback(aid, dept, status, comment, hours, eid="P1", n=1):
    return DisposalFeedback(
        event_id=f"f{n}",
        entity_id=eid,
        occurred_at=T0 + timedelta(hours=hours),
        source="t",
        alert_id=aid,
        department=dept,
        status=status,
        comment=comment,
    )


def test_counterfeit_drug_violation_is_transferred_to_police_with_the_bundle_hash(county):
    p, st = Processor.from_county(county), EntityState()
    _pharmacy(p, st)
    out = p.process(_inspection([Violation(code="D05", severity="critical", description="销售假药")]), st, ("i", 0, 1))
    bundle = out.evidence[0]["bundle_hash"]
    tr = next(a for a in out.alerts if a.notification == "case_transfer")
    assert tr.recipients == ["police"] and tr.transfer == "transferred" and tr.evidence_hash == bundle
    assert bundle in tr.message and "假药劣药" in tr.message
    rows = [t for t in out.transitions if t["kind"] == "transfer"]
    assert rows[0]["to_status"] == "transferred" and bundle in rows[0]["comment"]
    items = [json.loads(x) for x in out.evidence[0]["items"]]
    assert next(i for i in items if i["kind"] == "suspected_crime")["data"]["flags"] == ["violation:D05"]


def test_police_declining_returns_the_case_to_amr_with_the_reason(county):
    p, st = Processor.from_county(county), EntityState()
    _pharmacy(p, st)
    aid = p.process(_inspection([Violation(code="D05", severity="critical")]), st, ("i", 0, 1)).alerts[0].alert_id
    bad = p.process(_feedback(aid, "police", "declined", "", 5), st, ("f", 0, 1))
    assert bad.rejected and "reason" in bad.rejected  # a decline needs its reason
    out = p.process(_feedback(aid, "police", "declined", "涉案金额未达立案标准", 6, n=2), st, ("f", 0, 2))
    assert [(t["to_status"], t["actor"]) for t in out.transitions if t["kind"] == "transfer"] == [
        ("declined", "police"),
        ("returned", "system"),
    ]
    ret = next(a for a in out.alerts if a.notification == "transfer_returned")
    assert ret.recipients == ["amr"] and "涉案金额未达立案标准" in ret.message and ret.transfer == "returned"
    # the answer has been given: a second one is refused
    assert p.process(_feedback(aid, "police", "accepted", "", 7, n=3), st, ("f", 0, 3)).rejected


def test_transfer_deadline_urges_the_police_then_the_taskforce(county):
    p, st = Processor.from_county(county), EntityState()
    _pharmacy(p, st)
    out = p.process(
        _inspection(
            [Violation(code="X1", severity="serious", suspected_crime=True, description="疑似回收药")],
            outcome="pass_with_conditions",
        ),
        st,
        ("i", 0, 1),
    )
    assert any(a.notification == "case_transfer" for a in out.alerts)  # marked by the inspector, no rule needed
    t1 = (T0 + timedelta(hours=1)).timestamp()
    assert not [a for a in p.tick("P1", st, t1 + 71 * 3600).alerts if a.notification == "transfer_urge"]
    urge = [a for a in p.tick("P1", st, t1 + 73 * 3600).alerts if a.notification == "transfer_urge"]
    assert urge and urge[0].recipients == ["police"]
    again = [a for a in p.tick("P1", st, t1 + 98 * 3600).alerts if a.notification == "transfer_urge"]
    assert again and again[0].recipients == ["police", "taskforce"]
    ok = p.process(_feedback(urge[0].alert_id, "police", "accepted", "已立案", 100), st, ("f", 0, 1))
    assert any(a.notification == "transfer_accepted" and a.recipients == ["amr"] for a in ok.alerts)


def test_food_poisoning_cluster_goes_to_police_and_justice(county):
    p, st = Processor.from_county(county), EntityState()
    p.process(
        EntityEvent(
            event_id="r1",
            entity_id="C1",
            occurred_at=T0 - timedelta(days=1),
            source="t",
            action="registered",
            name="舞泉镇好味餐馆",
            kind="catering",
            township="舞泉镇",
            licence="JY1",
        ),
        st,
        ("r", 0, 0),
    )
    transfers = []
    for i in range(3):
        out = p.process(
            Complaint(
                event_id=f"c{i}",
                entity_id="C1",
                occurred_at=T0 + timedelta(hours=i),
                source="12315",
                channel="12315",
                category="food_poisoning",
                text="就餐后呕吐",
            ),
            st,
            ("c", 0, i),
        )
        transfers += [a for a in out.alerts if a.notification == "case_transfer"]
    assert len(transfers) == 1 and transfers[0].recipients == ["police", "justice"]


def test_unknown_transfer_department_is_refused_naming_the_line(tmp_path):
    text = (DATA_DIR / "routing.yaml").read_text(encoding="utf-8")
    bad = text.replace("  to: [police]", "  to: [polise]")
    f = tmp_path / "routing.yaml"
    f.write_text(bad, encoding="utf-8")
    line = next(n for n, x in enumerate(bad.splitlines(), 1) if "polise" in x)
    with pytest.raises(
        RoutingError, match=rf"routing.yaml line {line} \(case_transfer.to.0\): unknown department code 'polise'"
    ):
        load_routing(f)


def test_route_test_shows_the_transfer():
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "riskwatch.cli.main",
            "route",
            "test",
            "--entity-kind",
            "retail_pharmacy",
            "--level",
            "orange",
            "--suspected-crime",
            "violation:D05",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert "案件移送" in r.stdout and "police" in r.stdout and "县公安局" in r.stdout


@pytest.mark.timeout(300)
def test_counterfeit_drug_on_the_worker_transfer_decline_and_exported_evidence(pipeline, tmp_path):
    p = pipeline
    w = p.start_worker(lifecycle_clock="event", lifecycle_tick_seconds=0.5)
    p.send("events.registry", F.registered("E-drug", kind="retail_pharmacy", name="舞泉镇康源大药房"))
    # registry and inspections are different topics: no order between them unless the test waits
    # (an inspection of a not yet registered entity goes to the task-force office as 待专班研判)
    p.flush()
    p.wait_consumed()
    insp = F.inspection("E-drug", item_id=2)
    insp["violations"] = [{"code": "D05", "severity": "critical", "description": "销售假药"}]
    p.send("events.inspection.amr", insp)
    p.flush()
    police = wait_for(
        lambda: [orjson.loads(v) for _, v in p.read_topic("alerts.police")], 60, "the transfer to the police"
    )
    a = police[0]
    assert a["notification"] == "case_transfer" and a["evidence_hash"] and a["evidence_hash"] in a["message"]
    aid = a["alert_id"]
    fb = F.feedback("E-drug", aid, "police", "declined")
    fb["comment"] = "涉案金额未达立案标准,退回"
    p.send("events.feedback.police", fb)
    p.flush()
    back = wait_for(
        lambda: [
            x
            for x in (orjson.loads(v) for _, v in p.read_topic("alerts.amr"))
            if x["notification"] == "transfer_returned"
        ],
        60,
        "the case returned to amr",
    )
    assert "涉案金额未达立案标准" in back[0]["message"]
    p.wait_consumed()
    hist = wait_for(
        lambda: (
            (
                r := w.query(
                    f"SELECT seq, kind, to_status, actor, comment FROM riskwatch.alert_history FINAL "
                    f"WHERE alert_id = '{aid}' AND kind = 'transfer' ORDER BY seq"
                )
            )
            and len(r) == 3
            and r
        ),
        60,
        "the transfer's rows in alert_history",
    )
    assert [(r["to_status"], r["actor"]) for r in hist] == [
        ("transferred", "router"),
        ("declined", "police"),
        ("returned", "system"),
    ]
    assert "涉案金额未达立案标准" in hist[2]["comment"] and a["evidence_hash"] in hist[0]["comment"]

    # the bundle: exported from the running worker, verified on the way out and again
    env = {**os.environ, **settings_env(p.settings)}
    out = tmp_path / "export"
    r = subprocess.run(
        [sys.executable, "-m", "riskwatch.cli.main", "evidence", "export", aid, "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert a["evidence_hash"] in r.stdout
    r = subprocess.run(
        [sys.executable, "-m", "riskwatch.cli.main", "evidence", "verify", str(out), "--expect", a["evidence_hash"]],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    items = {json.loads(f.read_text(encoding="utf-8"))["kind"] for f in out.glob("items/*.json")}
    assert items == {"inspection", "explanation", "suspected_crime"}
