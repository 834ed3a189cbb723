"""The task-force office's engine part (streams/engine/office.py): a 定性 routes the next alert of the kind to its
new lead at once (processor and decoder), versions of kinds_local.yaml, the office chain, the sink rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest

from riskwatch.domain.county import load_county
from schemas.events import EntityEvent, SensorReading
from sinks.rows import COLUMNS
from streams.engine import office as O
from streams.engine.dispatch import Processor
from streams.engine.ingest import Decoder
from streams.engine.state import EntityState

T0 = datetime(2026, 12, 5, 8, tzinfo=UTC)


def _registry(eid: str, kind: str, n: int = 0) -> EntityEvent:
    return EntityEvent(event_id=f"r{eid}{n}", entity_id=eid, occurred_at=T0, source="amr",
                       action="registered" if n == 0 else "updated", name="舞泉镇某某宠物店", kind=kind,
                       township="舞泉镇")  # fmt: skip


def _reading(eid: str, n: int, v: float) -> SensorReading:
    return SensorReading(event_id=f"s{eid}{n}", entity_id=eid, occurred_at=T0 + timedelta(minutes=n), source="iot",
                         device_id="d1", channel="cold_chain_temp", value=v, unit="C")  # fmt: skip


def _alert_departments(p: Processor, eid: str, st: EntityState, start: int) -> list[str]:
    for i in range(start, start + 6):
        out = p.process(_reading(eid, i, 9.8), st, ("events.sensor", 0, i))
        if out.alerts:
            return out.alerts[0].departments
    raise AssertionError("no alert")


def test_a_definition_routes_the_next_alert_of_the_kind_to_its_new_lead_at_once(tmp_path):
    county = load_county()
    p = Processor.from_county(county)
    dec = Decoder(county.catalog)
    path = tmp_path / "kinds_local.yaml"
    watch = O.KindsWatch(path, county.catalog, every=0.0)
    assert not watch.refresh(p, dec)  # no file: nothing to apply

    st = EntityState()
    p.process(_registry("E1", "new_business"), st, ("events.registry", 0, 0))
    assert _alert_departments(p, "E1", st, 1) == ["taskforce"]  # unassigned: the office decides

    O.append_version(path, O.LocalKind(code="new_business", name="新业态经营主体", lead="commerce",
                                       cooperating=("amr", "police"), by="taskforce/王五", reason="商务局牵头"),
                     county.catalog)  # fmt: skip
    assert watch.refresh(p, dec)
    assert p.catalog.items_for_kind("new_business")[0].lead == "commerce"
    st2 = EntityState()
    p.process(_registry("E2", "new_business"), st2, ("events.registry", 0, 20))
    assert _alert_departments(p, "E2", st2, 30)[:3] == ["commerce", "amr", "police"]

    # a brand-new kind: the decoder refuses it before the definition and accepts it right after
    raw = _registry("E3", "pet_grooming").model_dump_json().encode()
    assert type(dec.decode("events.registry", 0, 1, b"E3", raw)).__name__ == "DeadLetter"
    O.append_version(path, O.LocalKind(code="pet_grooming", name="宠物美容店", lead="agri", reason="农业农村局牵头"),
                     county.catalog)  # fmt: skip
    assert watch.refresh(p, dec)
    ev = dec.decode("events.registry", 0, 2, b"E3", raw)
    assert isinstance(ev, EntityEvent) and ev.kind == "pet_grooming"
    st3 = EntityState()
    p.process(ev, st3, ("events.registry", 0, 2))
    assert _alert_departments(p, "E3", st3, 40)[0] == "agri"


def test_every_definition_is_a_version_and_a_kind_with_an_item_is_refused(tmp_path):
    county = load_county()
    path = tmp_path / "kinds_local.yaml"
    k = O.LocalKind(code="catering", name="餐饮服务单位", lead="amr", reason="市场监管局牵头")
    assert O.append_version(path, k, county.catalog).version == 1
    again = O.LocalKind(code="catering", name="餐饮服务单位", lead="health", reason="改由卫健委牵头")
    assert O.append_version(path, again, county.catalog).version == 2
    versions = O.load_versions(path)
    assert [(v.version, v.lead) for v in versions] == [(1, "amr"), (2, "health")]
    assert [v.lead for v in O.current(versions)] == ["health"]
    assert "# 专班研判定性" in path.read_text(encoding="utf-8")
    with pytest.raises(ValueError, match="已有监管事项"):
        O.append_version(path, O.LocalKind(code="food_producer", name="x", lead="amr"), county.catalog)
    with pytest.raises(ValueError, match="未知部门"):
        O.append_version(path, O.LocalKind(code="kiosk", name="x", lead="nobody"), county.catalog)


def test_the_office_chain_links_every_record_and_shows_an_edit():
    at = T0
    j = O.Judgement(judgement_id="J-1", version=1, subject="alert", subject_id="A1", entity_id="E1", action="reject",
                    reason="重复线索,联系人 13812345678", actor="taskforce/王五", at=at)  # fmt: skip
    c = O.Consultation(consultation_id="C-1", version=2, title="冷链会商", departments=["amr", "commerce"],
                       agenda="议程", held_at=at, actor="taskforce/王五", at=at)  # fmt: skip
    j1 = O.seal(j, 0, "")
    c2 = O.seal(c, j1.seq, j1.hash)
    assert (j1.seq, c2.seq, c2.prev_hash) == (1, 2, j1.hash)
    assert O.verify([j1, c2]) == []
    forged = j1.model_copy(update={"reason": "改过的理由"})
    assert O.verify([forged, c2]) == ["office chain broken at seq 1 (Judgement)"]
    # the sink's rows fit the tables' columns, free text masked
    table, row = O.office_row(j1.model_dump_json().encode())
    assert table == "judgements" and len(row) == len(COLUMNS["judgements"])
    assert "13812345678" not in str(row)
    table, row = O.office_row(c2.model_dump_json().encode())
    assert table == "consultations" and len(row) == len(COLUMNS["consultations"])
    assert isinstance(O.parse(orjson.dumps(orjson.loads(c2.model_dump_json()))), O.Consultation)


def test_the_bulletin_has_a_section_of_the_periods_consultations(tmp_path):
    from datetime import date

    from reports import bulletin as B
    from riskwatch.settings import Settings

    held = datetime(2026, 11, 25, 15, tzinfo=UTC)
    decision = O.Decision(text="三日内对充电场所开展安全生产检查", department="emergency", due=held + timedelta(days=3))
    cols = ["consultation_id", "title", "theme", "held_at", "departments", "status", "decisions"]
    row = ["C-1", "充电场所消防隐患会商", "", held, ["fire", "emergency"], "concluded", [decision.model_dump_json()]]

    def query(sql: str):
        if ".consultations" in sql:
            assert "held_at >=" in sql
            return cols, [row]
        return ["alert_id"], []

    html, pdf = B.generate("week", None, tmp_path, settings=Settings(), query=query, until=date(2026, 11, 30))
    text = html.read_text(encoding="utf-8")
    assert "九、议事会商" in text and "充电场所消防隐患会商" in text
    assert "县应急管理局：三日内对充电场所开展安全生产检查（2026-11-28前）" in text
    assert pdf.stat().st_size > 1000


def test_the_queue_reads_the_disputes_with_their_entity_and_the_bound_from_data():
    from web.routes.judge import DISPUTES_SQL, load_judging

    assert "a.entity_id AS entity_id" in DISPUTES_SQL
    j = load_judging()
    assert j.no_item and j.only_office and j.limit("alerts") == 100 and j.answer_days == 10
