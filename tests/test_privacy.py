"""mask_pii: personal numbers in complaint text are masked; ordinary numbers are not."""

from __future__ import annotations

import pytest

from schemas.privacy import mask_pii
from schemas.events import Complaint
from sinks.rows import COLUMNS, complaint_row


def test_realistic_complaint():
    text = "我是张三,电话13812345678,身份证410521199001011234,在舞泉镇某超市买到过期食品"
    assert mask_pii(text) == "我是张三,电话138****5678,身份证4105**********1234,在舞泉镇某超市买到过期食品"


@pytest.mark.parametrize(
    ("raw", "masked"),
    [
        ("联系方式：138 1234 5678", "联系方式：138****5678"),
        ("手机138-1234-5678，请回电", "手机138****5678，请回电"),
        ("+86 13912345678", "+86 139****5678"),
        ("+86-139-1234-5678", "+86-139****5678"),
        ("0086 15012345678", "0086 150****5678"),
        ("座机0395-1234567", "座机0395-*****67"),
        ("座机（0395）1234567", "座机（0395）*****67"),
        ("北京010-62345678转", "北京010-******78转"),
        ("身份证号41052119900101123X。", "身份证号4105**********123X。"),
        ("身份证号41052119900101123x", "身份证号4105**********123x"),
        ("两个号码18612345678和17712345678", "两个号码186****5678和177****5678"),
    ],
)
def test_masks_phone_and_id_numbers(raw, masked):
    assert mask_pii(raw) == masked


@pytest.mark.parametrize(
    "text",
    [
        "买了一箱牛奶价格128.50元，生产日期2026-11-01，保质期至2026年12月31日",
        "食品生产许可证SC10441102100123，营业执照91410521MA44XXXX1Y",
        "订单号202611271234567890123已付款",  # 21 digits: not an ID, not a phone
        "12315投诉，工单20261127001",
        "11:30在人民路3号楼1201室",
        "电梯编号31104105212019080001困人",
        "销售额12345678901元",  # 11 digits starting 12: no mobile prefix
        "服务热线400-123-4567",
    ],
)
def test_leaves_ordinary_numbers_alone(text):
    assert mask_pii(text) == text


def test_idempotent_and_empty():
    once = mask_pii("电话13812345678，身份证410521199001011234")
    assert mask_pii(once) == once
    assert mask_pii("") == ""


def test_complaint_rows_store_masked_text():
    c = Complaint(event_id="c1", entity_id="unknown", occurred_at="2026-11-20T09:00:00", source="12315", channel="12315",
                  category="food_poisoning", text="孩子吃了后呕吐，我的电话13812345678", location="舞泉镇人民路，店主电话0395-7654321")  # fmt: skip
    row = dict(zip(COLUMNS["events_complaint"], complaint_row(c)))
    assert row["text"] == "孩子吃了后呕吐，我的电话138****5678"
    assert row["location"] == "舞泉镇人民路，店主电话0395-*****21"
