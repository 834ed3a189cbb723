"""mask_pii: personal numbers in complaint text are masked; ordinary numbers are not."""

from __future__ import annotations

import time
import unicodedata
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.events import Complaint
from schemas.privacy import _ID_WEIGHTS, _USCC_CHARS, _USCC_WEIGHTS, mask_pii
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
    c = Complaint(
        event_id="c1",
        entity_id="unknown",
        occurred_at="2026-11-20T09:00:00",
        source="12315",
        channel="12315",
        category="food_poisoning",
        text="孩子吃了后呕吐，我的电话13812345678",
        location="舞泉镇人民路，店主电话0395-7654321",
    )
    row = dict(zip(COLUMNS["events_complaint"], complaint_row(c), strict=True))
    assert row["text"] == "孩子吃了后呕吐，我的电话138****5678"
    assert row["location"] == "舞泉镇人民路，店主电话0395-*****21"


# --- the one masking function, property-tested: personal numbers in random Chinese text ----------------------

_FULL = str.maketrans({chr(c): chr(c + 0xFEE0) for c in range(0x21, 0x7F)})
CJK = st.text(
    alphabet=st.sampled_from(
        "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说"
        "产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制"
        "，。、：；！？（）【】“” "
    ),
    min_size=1,
    max_size=30,
)
SEP = st.sampled_from(["", " ", "-"])


@st.composite
def mobiles(draw) -> str:
    d = "1" + draw(st.sampled_from("3456789")) + draw(st.text("0123456789", min_size=9, max_size=9))
    sep = draw(SEP)
    s = f"{d[:3]}{sep}{d[3:7]}{sep}{d[7:]}"
    s = draw(st.sampled_from(["", "+86 ", "+86-", "0086 ", "86"])) + s
    s = draw(st.sampled_from(["", "tel", "Tel:", "手机", "phone", "TEL"])) + s
    return s.translate(_FULL) if draw(st.booleans()) else s


@st.composite
def landlines(draw) -> str:
    area = draw(st.sampled_from(["010", "021", "0571", "0395", "0755", "0371"]))
    local = draw(st.sampled_from("23456789")) + draw(
        st.text("0123456789", min_size=6 if len(area) == 4 else 7, max_size=7)
    )
    s = draw(
        st.sampled_from(
            [f"{area}-{local}", f"{area}{local}", f"({area}){local}", f"（{area}）{local}", f"{area} {local}"]
        )
    )
    s = draw(st.sampled_from(["", "座机", "tel", "电话："])) + s
    return s.translate(_FULL) if draw(st.booleans()) else s


def _id_check(s17: str) -> str:
    return "10X98765432"[sum(int(c) * w for c, w in zip(s17, _ID_WEIGHTS, strict=True)) % 11]


@st.composite
def id_numbers(draw) -> str:
    region = draw(st.sampled_from(["410521", "110105", "330106", "440305", "510104", "650102"]))
    born = draw(st.dates(min_value=datetime(1930, 1, 1).date(), max_value=datetime(2020, 12, 31).date()))
    seq = draw(st.text("0123456789", min_size=3, max_size=3))
    if draw(st.booleans()):
        s = region + born.strftime("%y%m%d") + seq  # 15 digits (first generation)
    else:
        s17 = region + born.strftime("%Y%m%d") + seq
        s = s17 + _id_check(s17)
        s = s[:-1] + "x" if s[-1] == "X" and draw(st.booleans()) else s
    return s.translate(_FULL) if draw(st.booleans()) else s


def _luhn_digit(body: str) -> str:
    for d in "0123456789":
        n = body + d
        if (
            sum(
                (int(c) if i % 2 == 0 else (int(c) * 2 - 9 if int(c) > 4 else int(c) * 2))
                for i, c in enumerate(reversed(n))
            )
            % 10
            == 0
        ):
            return d
    raise AssertionError


@st.composite
def bank_cards(draw) -> str:
    n = draw(st.sampled_from([16, 17, 19]))
    body = draw(st.sampled_from(["62", "4", "5", "9558"]))
    body += draw(st.text("0123456789", min_size=n - 1 - len(body), max_size=n - 1 - len(body)))
    card = body + _luhn_digit(body)
    if n in (16, 19) and draw(st.booleans()):
        sep = draw(st.sampled_from([" ", "-"]))
        card = sep.join(card[i : i + 4] for i in range(0, n, 4))
    return card.translate(_FULL) if draw(st.booleans()) else card


EMAILS = st.builds(
    lambda u, d: f"{u}@{d}",
    st.from_regex(r"[a-z][a-z0-9._]{1,12}[a-z0-9]", fullmatch=True),
    st.sampled_from(["qq.com", "163.com", "county.gov.cn", "example.org", "mail.example.com.cn"]),
)
PII = st.one_of(mobiles(), landlines(), id_numbers(), bank_cards(), EMAILS)


def _uscc(body17: str) -> str:
    return (
        body17
        + _USCC_CHARS[
            (31 - sum(_USCC_CHARS.index(c) * w for c, w in zip(body17, _USCC_WEIGHTS, strict=True)) % 31) % 31
        ]
    )


USCC = st.builds(
    lambda p, r, o: _uscc(p + r + o),
    st.sampled_from(["91", "92", "93", "12", "52"]),
    st.sampled_from(["410521", "410102", "330106", "440305"]),
    st.text(_USCC_CHARS[:10] + "MAHJK", min_size=9, max_size=9),
)
KEEP = st.one_of(
    USCC,
    st.builds(lambda n: f"E{n:06d}", st.integers(0, 999_999)),  # entity ids
    st.uuids().map(str),  # event ids
    st.builds(lambda a, r: f"ev-{a}-{r}", st.integers(0, 10**6), st.integers(1, 99)),
    st.binary(min_size=32, max_size=32).map(lambda b: "sha256:" + b.hex()),
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 1, 1))
    .map(
        lambda t: st.sampled_from(
            [
                t.isoformat(timespec="seconds"),
                f"{t:%Y-%m-%d %H:%M}",
                f"{t:%Y年%m月%d日}",
                f"{t:%Y%m%d}",
                f"{t:%H:%M:%S}",
            ]
        )
    )
    .flatmap(lambda s: s),
    st.builds(lambda v, u: f"{v:.2f}{u}", st.floats(0, 9999), st.sampled_from(["MPa", " MPa", "℃", "元", "%", "ppm"])),
    st.builds(lambda n: f"SC{n:014d}", st.integers(0, 10**14 - 1)),  # 食品生产许可证
    st.builds(lambda n: f"12315工单{n}", st.integers(0, 10**8)),
)


def _digits(s: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKC", s) if c.isdigit())


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(CJK, PII), min_size=1, max_size=4), st.lists(st.tuples(CJK, KEEP), max_size=4), CJK)
def test_masks_personal_numbers_and_keeps_business_ids_in_random_chinese_text(pii, keep, tail):
    parts = [x for pair in pii for x in pair] + [x for pair in keep for x in pair] + [tail]
    text = "".join(parts)
    out = mask_pii(text)
    flat = unicodedata.normalize("NFKC", out)
    for _, p in pii:
        norm = unicodedata.normalize("NFKC", p)
        if "@" in norm:
            local = norm.split("@")[0]
            assert norm.split("@")[1] in flat and local not in flat.replace("***", ""), (p, out)
        else:
            bare = norm.replace(" ", "").replace("-", "")
            assert p not in out and norm not in flat and bare not in flat.replace(" ", "").replace("-", ""), (p, out)
            assert _digits(p)[-11:] not in _digits(mask_pii(p)), p  # alone: the middle digits are gone
    assert out.count("*") >= 3 * len(pii)
    for _, k in keep:
        assert k in out, (k, out)
    for chunk in [c for c, _ in pii + keep] + [tail]:
        assert chunk.strip("（）【】“” ，。、：；！？") in out  # the text around the numbers is unchanged
    assert mask_pii(out) == out  # idempotent


@pytest.mark.parametrize(
    ("raw", "masked"),
    [
        ("tel13812345678", "tel138****5678"),
        ("电话：１３８１２３４５６７８", "电话：１３８****５６７８"),
        ("手机１３８－１２３４－５６７８", "手机１３８****５６７８"),
        ("座机0571-87654321", "座机0571-******21"),
        ("座机057187654321", "座机0571******21"),
        ("身份证410521900101123", "身份证4105*******1123"),
        ("卡号6222 0212 3456 7890 128", "卡号6222***********0128"),
        ("邮箱ｚｈａｎｇｓａｎ＠ｑｑ．ｃｏｍ", "邮箱ｚ***＠ｑｑ．ｃｏｍ"),
    ],
)
def test_new_forms(raw, masked):
    assert mask_pii(raw) == masked


@pytest.mark.parametrize(
    "text",
    [
        "统一社会信用代码91330100799655058B",
        "9144030071526726XG",
        "信用代码913100006073500310",
        "压力1.35MPa，温度-18.5℃",
        "时间2026-11-27T08:00:00+08:00",
        "事件0f1e2d3c-4b5a-4978-8a6b-5c4d3e2f1a0b",
        "证据包 sha256:13812345678901234567abcdef0123456789abcdef0123456789abcdef012345",
    ],
)
def test_business_ids_and_measurements_survive(text):
    assert mask_pii(text) == text


def test_speed(capsys):
    text = (
        "市民反映舞泉镇人民路某超市出售过期牛奶，生产日期2026-11-01，价格12.5元，投诉人张女士电话13812345678，"
        "要求尽快核查处理，并回电告知结果，谢谢。"
    )  # a typical 100-character comment with one phone
    assert len(text) >= 70
    plain = "市民反映舞泉镇人民路某超市出售过期牛奶，要求尽快核查处理，并回电告知结果，谢谢。" * 2
    n = 20_000
    result = {}
    for name, t in (("comment with a phone", text), ("comment without numbers", plain)):
        t0 = time.perf_counter()
        for _ in range(n):
            mask_pii(t)
        result[name] = (time.perf_counter() - t0) / n * 1e6
    with capsys.disabled():
        print(
            "\nmask_pii µs/call: "
            + ", ".join(f"{k} ({len(text if 'phone' in k else plain)} chars) {v:.1f}" for k, v in result.items())
        )
    assert result["comment with a phone"] < 200  # generous: a shared 2-core machine


# --- every exit: each sink masks a planted number in every free-text field ----------------------------------

PLANTED = "联系人电话１３８１２３４５６７８，邮箱li@qq.com，[点此](http://evil.cn)"


def _clean(v) -> None:
    s = str(v)
    assert "１３８１２３４５６７８" not in s and "13812345678" not in s and "li@qq.com" not in s, s


def _alert(**kw):
    from schemas.events import Alert

    t = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)
    base = dict(
        alert_id="a1",
        revision=2,
        fingerprint="E000123|3|r",
        entity_id="E000123",
        entity_name="鑫源热力" + PLANTED,
        township="北舞渡镇",
        item_id=3,
        item_name="特种设备",
        rule="boiler_pressure",
        level="red",
        level_zh="红色",
        status="firing",
        score=90,
        title="锅炉超压" + PLANTED,
        message="【非本部门】理由:" + PLANTED,
        explanation=[{"signal": "s", "value": 1.0, "detail": "投诉:" + PLANTED}],
        lead_department="amr",
        departments=["amr"],
        first_seen=t,
        last_seen=t,
        updated_at=t,
        source_event_id="ev-1",
        notification="firing",
        ack_due=t,
        url="https://wb.county.test/alerts/a1",
    )
    return Alert(**{**base, **kw})


def test_clickhouse_rows_mask_every_free_text_field():
    from schemas.events import DeadLetter, DisposalFeedback, InspectionResult, InspectionTask
    from sinks import rows

    t = "2026-11-27T08:00:00+08:00"
    fb = DisposalFeedback(
        event_id="f1",
        entity_id="E000123",
        occurred_at=t,
        source="amr",
        alert_id="a1",
        department="amr",
        status="disposed",
        comment=PLANTED,
        result=PLANTED,
    )
    insp = InspectionResult.model_validate(
        {
            "event_id": "i1",
            "entity_id": "E000123",
            "occurred_at": t,
            "source": "amr",
            "inspection_id": "I1",
            "item_id": 3,
            "departments": ["amr"],
            "inspectors": ["王五"],
            "outcome": "fail",
            "violations": [{"code": "V1", "severity": "serious", "description": PLANTED}],
        }
    )
    task = InspectionTask.model_validate(
        {
            "event_id": "t1",
            "entity_id": "E000123",
            "occurred_at": t,
            "source": "riskwatch",
            "task_id": "T1",
            "department": "amr",
            "due": t,
            "item_id": 3,
            "kind": "alert",
            "ref": "a1",
            "note": "预警核查:" + PLANTED,
        }
    )
    dl = DeadLetter(
        topic="events.feedback",
        partition=0,
        offset=1,
        key=None,
        payload_b64="",
        error=f"1 validation error: comment (got '{PLANTED}')",
        received_at=t,
    )
    produced = [
        rows.feedback_row(fb),
        rows.inspection_row(insp),
        rows.task_row(task),
        rows.alert_row(_alert()),
        rows.alert_history_row("a1", datetime.now(UTC), "firing", "acknowledged", "amr", PLANTED),
        rows.dead_letter_row(dl),
    ]
    for row in produced:
        for v in row:
            _clean(v)


def test_alertmanager_alert_and_email_text_masked():
    from notify.bridge import am_alert
    from riskwatch.domain.catalog import load_catalog
    from riskwatch.settings import Settings

    a = am_alert(_alert(), "amr", Settings(), load_catalog(), datetime.now(UTC))
    for _k, v in a["annotations"].items():  # `text` is the e-mail and 企业微信 application body (riskwatch.tmpl)
        _clean(v)
    assert a["annotations"]["link"] == "https://wb.county.test/alerts/a1"


def test_robot_messages_mask_and_escape_user_text_but_keep_the_template_and_link():
    from notify.bridge import am_alert
    from notify.robots import dingtalk_body, wecom_body
    from riskwatch.domain.catalog import load_catalog
    from riskwatch.settings import Settings

    a = am_alert(_alert(), "amr", Settings(), load_catalog(), datetime.now(UTC))
    payload = {"alerts": [{"status": "firing", **a}]}
    for body in (
        wecom_body(payload)["markdown"]["content"],
        dingtalk_body(payload)["markdown"]["text"],
        dingtalk_body(payload)["markdown"]["title"],
    ):
        _clean(body)
        assert "](http" not in body and "http://evil" not in body and "evil.cn" not in body
    text = wecom_body(payload)["markdown"]["content"]
    assert text.startswith("【红色预警·发布】锅炉超压") and "［点此］（http：／／evil．cn）" in text
    assert "链接:https://wb.county.test/alerts/a1" in text.splitlines()  # the system's own link stays a link
    assert "(E000123)" in text  # the template's own structure is not escaped
    # a user who writes the system's link line only repeats the system's link
    raw = {"alerts": [{"status": "firing", "labels": {}, "annotations": {"text": "要求:请签收\n链接:http://evil.cn"}}]}
    assert "http://evil.cn" not in wecom_body(raw)["markdown"]["content"]
