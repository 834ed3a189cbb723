"""Complaints posted to the gateway that name a business instead of an ``entity_id`` (plain calls, no Kafka):
matched with their method and confidence, queued for the office when not confident, refused for a bad
credit-code check digit; a complaint naming only a township goes to the township's pseudo-entity."""

from __future__ import annotations

from datetime import datetime, timedelta

import orjson
import pytest

from edge.gateway.accept import Acceptor, parse_body
from edge.gateway.keys import Source
from edge.matching import Matcher, RegistryEntry
from riskwatch.domain.catalog import load_catalog
from schemas.events import LOCAL_TZ, Complaint, MatchQueueItem

CODE = "91411121MA4000000D"  # a valid check digit (stdnum.cn.uscc.calc_check_digit)
SRC = Source("hotline-12345", ("complaint",), "Asia/Shanghai", "", 100.0, False, False)


@pytest.fixture(scope="module")
def acceptor() -> Acceptor:
    return Acceptor(load_catalog())


@pytest.fixture(scope="module")
def matcher() -> Matcher:
    return Matcher(
        [
            RegistryEntry(CODE, "舞阳县某某食品有限公司", "舞泉镇", "人民路1号"),
            RegistryEntry("E-2", "舞阳县好味餐饮店", "吴城镇", "建设路8号"),
            RegistryEntry("E-3", "舞阳县好味餐饮分店", "吴城镇", "建设路9号"),
        ]
    )


def _complaint(eid: str, **extra) -> dict:
    at = (datetime.now(LOCAL_TZ) - timedelta(minutes=5)).isoformat()
    return {"event_id": eid, "occurred_at": at, "channel": "12345", "category": "hygiene", "text": "后厨脏乱", **extra}


def _post(acceptor: Acceptor, matcher: Matcher | None, *items: dict):
    return acceptor.accept(SRC, "complaint", parse_body(orjson.dumps(list(items)), "application/json"), matcher)


def test_named_business_is_matched_with_method_and_confidence(acceptor, matcher):
    out = _post(
        acceptor,
        matcher,
        _complaint("c1", subject={"name": "某某食品", "address": "人民路1号"}, township="舞泉镇"),
        _complaint("c2", subject={"credit_code": CODE}),
        _complaint("c3", township="舞泉镇"),
    )
    assert [r.status for r in out.results] == ["accepted"] * 3 and not out.queued
    got = {e.event_id: e for e in out.events}
    assert isinstance(got["c1"], Complaint) and got["c1"].entity_id == CODE
    assert got["c1"].match is not None and got["c1"].match.method.value == "name_address"
    assert got["c1"].match.confidence >= 0.85
    assert got["c2"].match is not None and (got["c2"].entity_id, got["c2"].match.method.value) == (CODE, "credit_code")
    assert got["c3"].entity_id == "township:wuquan"
    assert all(e.source == "hotline-12345" for e in out.events)


def test_unsure_match_goes_to_the_office_queue(acceptor, matcher):
    out = _post(acceptor, matcher, _complaint("c4", subject={"name": "好味餐饮"}, township="吴城镇"))
    assert out.results[0].status == "accepted" and out.results[0].queued == ["c4"] and not out.events
    (msg,) = out.queued
    item = MatchQueueItem.model_validate_json(msg.value)
    assert (msg.topic, msg.key, item.status, item.source) == ("events.unmatched", b"c4", "pending", "hotline-12345")
    assert {c.entity_id for c in item.candidates} >= {"E-2", "E-3"} and "entity_id" not in orjson.loads(item.event)


def test_registry_unreadable_queues_instead_of_refusing(acceptor):
    out = _post(acceptor, None, _complaint("c5", subject={"name": "某某食品"}))
    assert (
        out.results[0].queued == ["c5"]
        and "名录库暂不可读" in MatchQueueItem.model_validate_json(out.queued[0].value).reason
    )


def test_bad_input_is_refused_with_its_field(acceptor, matcher):
    out = _post(
        acceptor,
        matcher,
        _complaint("c6", subject={"credit_code": CODE[:-1] + "E"}),
        _complaint("c7"),
        _complaint("c8", subject={"name": "某某食品"}, category="no-such-category"),
    )
    assert [r.status for r in out.results] == ["refused"] * 3 and len(out.dead) == 3
    assert out.results[0].errors[0]["loc"] == "[0].subject.credit_code"
    assert out.results[1].errors[0]["loc"] == "[1].entity_id"
    assert out.results[2].errors[0]["loc"] == "[2].category"
