"""Entity matching (edge/matching.py): identifiers exact, names and addresses fuzzy, aliases, the
township pseudo-entity, and the queue below the threshold — never an ``unknown`` entity."""

from __future__ import annotations

import pytest
from stdnum.cn import uscc

from edge.matching import BadIdentifier, Candidates, Matched, Matcher, RegistryEntry, alias_key, normalise_name


def code(base: str) -> str:
    return base + uscc.calc_check_digit(base)


FOOD = code("91411121MA4000000")
DINER = code("92411121MA4000002")
REGISTRY = [
    RegistryEntry(FOOD, "舞阳县某某食品有限公司", "舞泉镇", "舞阳县舞泉镇人民路1号", "SC11041112100001"),
    RegistryEntry(DINER, "舞阳县老王饭店(个体)", "吴城镇", "吴城镇建设街8号", "JY24111210000002"),
    RegistryEntry("E-pharm", "舞阳县康宁大药房有限公司", "北舞渡镇", "北舞渡镇中心街20号", ""),
    RegistryEntry("E-pharm2", "舞阳县康宁大药房(莲花店)", "莲花镇", "莲花镇府前路3号", ""),
]


@pytest.fixture
def m() -> Matcher:
    return Matcher(REGISTRY)


def test_names_are_normalised():
    assert normalise_name("舞阳县某某食品有限公司") == "某某食品"
    assert normalise_name("舞阳县老王饭店(个体)") == "老王饭店"
    assert normalise_name("（河南省）舞阳县 某某食品 股份有限公司") == "某某食品"


def test_credit_code_matches_exactly_and_a_bad_check_digit_is_refused(m):
    r = m.match("完全不同的名字", "", FOOD, "", "")
    assert isinstance(r, Matched) and r.entity_id == FOOD
    assert (r.match.method.value, r.match.confidence) == ("credit_code", 1.0)
    bad = FOOD[:-1] + ("0" if FOOD[-1] != "0" else "1")
    with pytest.raises(BadIdentifier, match="校验位错误"):
        m.match("某某食品", "", bad, "", "")
    with pytest.raises(BadIdentifier, match="长度应为18位"):
        m.match("某某食品", "", "9141112", "", "")


def test_licence_matches_exactly(m):
    r = m.match("", "", "", "JY24111210000002", "")
    assert isinstance(r, Matched) and (r.entity_id, r.match.method.value) == (DINER, "licence")


def test_a_slightly_different_name_lands_on_the_right_entity_with_its_confidence(m):
    r = m.match("某某食品", "人民路1号", "", "", "舞泉镇")
    assert isinstance(r, Matched) and r.entity_id == FOOD
    assert r.match.method.value == "name_address" and 0.85 <= r.match.confidence <= 1.0
    r2 = m.match("舞阳某某食品厂", "人民路", "", "", "舞泉镇")
    assert isinstance(r2, Matched) and r2.entity_id == FOOD and r2.match.confidence < r.match.confidence
    r3 = m.match("老王饭店", "建设街", "", "", "吴城镇")
    assert isinstance(r3, Matched) and r3.entity_id == DINER


def test_below_threshold_or_ambiguous_gives_candidates(m):
    r = m.match("康宁大药房", "", "", "", "")  # two branches of one name: the office decides
    assert isinstance(r, Candidates) and {c.entity_id for c in r.candidates} >= {"E-pharm", "E-pharm2"}
    assert "人工确认" in r.reason
    r2 = m.match("王记饭店", "", "", "", "吴城镇")
    assert isinstance(r2, Candidates) and "低于阈值" in r2.reason
    assert r2.candidates[0].entity_id == DINER and 0.5 < r2.candidates[0].score < 0.85
    r3 = m.match("幸福超市", "光明路", "", "", "舞泉镇")
    assert isinstance(r3, Candidates) and r3.candidates == () and "没有相近" in r3.reason


def test_the_office_choice_is_remembered_as_an_alias(m):
    first = m.match("康宁大药房有限公司", "", "", "", "")
    assert isinstance(first, Candidates)
    m.remember(first.alias_key, "E-pharm")
    again = m.match("康宁大药房有限公司", "", "", "", "")
    assert isinstance(again, Matched) and (again.entity_id, again.match.method.value) == ("E-pharm", "alias")
    assert first.alias_key == alias_key("舞阳县康宁大药房有限公司", "") == "康宁大药房|"


def test_no_business_named_goes_to_the_township_pseudo_entity_never_unknown(m):
    r = m.match("", "", "", "", "舞泉镇")
    assert isinstance(r, Matched) and r.entity_id == "township:wuquan" and r.match.method.value == "township"
    r2 = m.match("", "", "", "", "火星乡")
    assert isinstance(r2, Candidates)  # queued for the office
    for name, tw in (("", ""), ("无名小店", "舞泉镇"), ("", "火星乡")):
        out = m.match(name, "", "", "", tw)
        assert not (isinstance(out, Matched) and out.entity_id == "unknown")


def test_from_store_rows():
    mm = Matcher.from_rows(
        [{"entity_id": "E1", "name": "甲食品有限公司", "township": "舞泉镇", "address": "", "licence": "L1"}],
        [{"alias_key": "乙|", "entity_id": "E1"}],
    )
    assert mm.match("乙").entity_id == "E1"  # type: ignore[union-attr]
    assert mm.match("", "", "", "L1").entity_id == "E1"  # type: ignore[union-attr]
