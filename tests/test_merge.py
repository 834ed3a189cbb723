"""The task-force office's 合并 (DisposalFeedback status=merged, 专班研判合并) through the engine, pure Python:
the clue leaves a row on the target alert's own chain (office actor, the clue masked, status unchanged) and
its receivers are told (one revision, notification ``merged``); a department may not send it (identity: only
on the office's topic; the lifecycle refuses anyone else too); a closed alert refuses it. The workbench's
合并 with the real worker is in tests/test_web_office.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson

from riskwatch.domain.catalog import load_catalog
from riskwatch.domain.county import load_county
from riskwatch.domain.lifecycle import load_lifecycle
from schemas.events import DeadLetter, DisposalFeedback, EntityEvent, SensorReading
from streams.engine.dispatch import Processor
from streams.engine.ingest import Decoder
from streams.engine.state import EntityState
from tests import factories as F

COUNTY = load_county()
T = datetime(2026, 12, 5, 8, tzinfo=UTC)
CLUE = "专班研判合并:未匹配投诉 Q-7a1:同一地址,投诉人电话 13812345678"


def _fb(n: int, alert_id: str, dept: str, status: str, **kw) -> DisposalFeedback:
    return DisposalFeedback.model_validate(
        dict(
            event_id=f"f{n}",
            entity_id="E1",
            occurred_at=T + timedelta(minutes=n),
            source="workbench",
            alert_id=alert_id,
            department=dept,
            status=status,
            **kw,
        ),
        context={"catalog": COUNTY.catalog},
    )


def _alert(p: Processor) -> tuple[EntityState, str]:
    st = EntityState()
    p.process(
        EntityEvent(
            event_id="r1",
            entity_id="E1",
            occurred_at=T,
            source="amr",
            action="registered",
            name="舞泉镇鑫源食品有限公司",
            kind="food_producer",
            township="舞泉镇",
        ),
        st,
        ("events.registry", 0, 0),
    )
    for i in range(3):
        out = p.process(
            SensorReading(
                event_id=f"s{i}",
                entity_id="E1",
                occurred_at=T,
                source="iot",
                device_id="d1",
                channel="cold_chain_temp",
                value=9.8,
                unit="C",
            ),
            st,
            ("events.sensor", 0, i),
        )
    return st, out.alerts[0].alert_id


def test_a_merged_clue_is_a_row_on_the_target_and_its_receivers_are_told() -> None:
    p = Processor.from_county(COUNTY, clock=lambda: T.timestamp())
    st, aid = _alert(p)
    assert p.process(_fb(1, aid, "eco", "not_ours", comment="非本局"), st, ("f", 0, 1)).rejected is None
    out = p.process(_fb(2, aid, "taskforce", "merged", comment=CLUE, user="王五"), st, ("f", 0, 2))
    assert out.rejected is None
    [row, notify] = out.transitions
    assert (row["kind"], row["actor"], row["from_status"], row["to_status"]) == (
        "feedback",
        "taskforce/王五",
        "firing",
        "firing",
    )
    assert row["comment"].startswith("merged(合并线索) 专班研判合并:未匹配投诉 Q-7a1:同一地址")
    assert "13812345678" not in row["comment"]  # the clue is masked like every comment on the chain
    # one revision to the departments still working it (eco refused it: not told), through alerts.<dept>
    [a] = out.alerts
    assert a.notification == "merged" and a.recipients == ["amr", "emergency"] and a.status == "firing"
    assert "新线索并入本预警:未匹配投诉 Q-7a1" in a.message and "13812345678" not in a.message
    assert (notify["kind"], notify["comment"]) == ("notify", "merged → amr,emergency")


def test_only_the_office_merges_and_a_closed_alert_refuses() -> None:
    p = Processor.from_county(COUNTY, clock=lambda: T.timestamp())
    st, aid = _alert(p)
    out = p.process(_fb(1, aid, "amr", "merged", comment=CLUE), st, ("f", 0, 1))
    assert (out.rejected or "").startswith("只有专班办公室可以合并线索") and not out.alerts and not out.transitions
    out = p.process(_fb(2, aid, "taskforce", "merged", comment=" "), st, ("f", 0, 2))
    assert (out.rejected or "").startswith("合并须写明线索和理由")
    # disposed, resolved, closed after the grace: the alert has left the state, a merge is a dead letter
    assert p.process(_fb(3, aid, "amr", "disposed"), st, ("f", 0, 3)).rejected is None
    p.tick("E1", st, (T + timedelta(days=2)).timestamp())
    out = p.process(_fb(4, aid, "taskforce", "merged", comment=CLUE), st, ("f", 0, 4))
    assert (out.rejected or "").startswith(f"feedback for unknown or already closed alert '{aid}'")


def test_the_lifecycle_records_a_merge_on_a_pending_alert_and_refuses_a_closed_one() -> None:
    lc = load_lifecycle(catalog=load_catalog())
    st, _ = lc.open("a1", "E1", "rule.x", 1, "orange", ["amr"], at=0.0)
    assert st.status == "pending"
    res = lc.merge(st, "taskforce", 60.0, CLUE)
    assert res.accepted and not res.notifications  # nobody has heard of it yet: the row waits for the firing
    assert st.transitions[-1].kind == "feedback" and st.transitions[-1].actor == "taskforce"
    st.status = "closed"
    assert (lc.merge(st, "taskforce", 90.0, CLUE).rejected or "").startswith("预警 a1 已关闭")


def test_merged_is_accepted_only_on_the_offices_topic() -> None:
    dec = Decoder(COUNTY.catalog)
    body = {**F.feedback("E1", "a1", "amr", "merged"), "comment": CLUE}
    out = dec.decode("events.feedback.amr", 0, 0, b"E1", orjson.dumps(body))
    assert isinstance(out, DeadLetter)
    assert "'merged' (合并线索)" in out.error and "events.feedback.taskforce" in out.error and "'amr'" in out.error
    office = orjson.dumps({**body, "department": "taskforce"})
    assert isinstance(dec.decode("events.feedback.taskforce", 0, 1, b"E1", office), DisposalFeedback)
