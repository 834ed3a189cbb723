"""Device ledgers (``riskwatch import devices``): a county's 特种设备/物联网设备台账 export with Chinese headers
(the sample tests/data/device_ledger.csv, and the same rows as .xlsx) → ``events.device``, the 使用单位
matched to its entity, ratings converted to the contract's units, a unit that cannot measure a channel
refused with the reason. The last test runs the real broker and worker: the devices land in the
``devices`` table and on the dossier (一企一档)."""

from __future__ import annotations

import csv
from datetime import datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edge.imports.layout import KINDS, load_layout
from edge.imports.rows import Ready, resolve
from edge.imports.run import MissingColumns, run_import
from edge.imports.table import read_table
from edge.matching import Matcher, RegistryEntry
from riskwatch.domain.catalog import load_catalog
from riskwatch.tools.runner import settings_env, wait_for
from schemas.events import LOCAL_TZ, DeadLetter, DeviceEvent
from tests.samples import DINER, FOOD, PHARMACY, REGISTRY_HEADERS, REGISTRY_ROWS, write_csv, write_xlsx

CAT = load_catalog()
SRC = "import:devices:op"
LEDGER = Path(__file__).parent / "data" / "device_ledger.csv"
NOW = datetime(2026, 12, 5, 9, 0, tzinfo=LOCAL_TZ)


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []

    def send(self, topic: str, key: bytes, value: bytes) -> None:
        self.sent.append((topic, key, value))

    def flush(self) -> None:
        pass


def matcher() -> Matcher:
    return Matcher(
        [
            RegistryEntry(FOOD, "舞阳县某某食品有限公司", "舞泉镇", "舞泉镇人民路1号", "SC11041112100001"),
            RegistryEntry(DINER, "舞阳县老王饭店(个体)", "吴城镇", "吴城镇建设街8号", "JY24111210000002"),
            RegistryEntry(PHARMACY, "舞阳县康宁大药房有限公司", "北舞渡镇", "北舞渡镇中心街20号", ""),
        ]
    )


def ledger() -> tuple[list[str], list[list[str]]]:
    t = read_table(LEDGER)
    return t.headers, [[str(cells.get(h, "")) for h in t.headers] for _, cells in t.rows]


def _run(path: Path, **kw):
    return run_import(path.read_bytes(), path.name, "devices", catalog=CAT, source=SRC, matcher=matcher(), **kw)


def devices_of(rec: Recorder) -> dict[str, DeviceEvent]:
    return {(e := DeviceEvent.model_validate_json(v)).device_id: e for t, _, v in rec.sent if t == "events.device"}


def test_the_sample_ledger_becomes_device_events_of_the_matched_entities(tmp_path):
    rec = Recorder()
    rep = _run(LEDGER, sender=rec, report_dir=tmp_path)
    assert (rep.rows, rep.ready, len(rep.queued), rep.refused) == (6, 5, 1, [])
    assert dict(rep.matched) == {"credit_code": 5}
    devs = devices_of(rec)
    assert {d: e.entity_id for d, e in devs.items()} == {
        "WY-BLR-0001": FOOD,
        "WY-BLR-0002": FOOD,
        "WY-CS-0003": DINER,
        "WY-ELV-0004": PHARMACY,
        "WY-DRG-0005": PHARMACY,
    }
    b1, b2, cs, drg, elv = (devs[d] for d in sorted(devs))
    assert ([c.value for c in b1.channels], b1.unit, b1.rated_pressure_mpa, b1.medium) == (
        ["boiler_pressure"],
        "MPa",
        1.0,
        "蒸汽",
    )
    # 压力、温度 of a 锅炉: the category's pressure and temperature channels; 1600kPa is 1.6 MPa
    assert [c.value for c in b2.channels] == ["boiler_pressure", "boiler_temp"]
    assert (b2.rated_pressure_mpa, b2.rated_temp_c, b2.unit) == (1.6, 194.0, "")
    # an empty 监测通道: the channels of its 设备类别; 设定温度 with their header's unit; 2023/06/10 is a date
    assert ([c.value for c in cs.channels], cs.set_point_min_c, cs.set_point_max_c) == (["cold_chain_temp"], -18, -15)
    assert (cs.interval_s, str(cs.installed_on), str(cs.calibrated_on)) == (300, "2023-06-10", "2026-06-10")
    assert cs.owner == "iot-gw-07" and b1.owner == "iot-gw-01"  # 所属平台 mapped to the sending source
    assert [c.value for c in elv.channels] == ["elevator_fault", "elevator_door_cycles"]
    assert (elv.rated_load_kg, elv.interval_s, elv.calibrated_on) == (1050.0, 60, None)  # 1.05吨
    assert drg.interval_s == 600  # 10分钟
    assert all(e.source == SRC and e.action.value == "registered" for e in devs.values())
    # the 使用单位 not in the registry waits for the office; resolved, it is a device event of the chosen entity
    q = rep.queued[0]
    assert (q.row, q.item.name, q.item.event_topic) == (7, "舞阳县宏达气体经销部", "events.device")
    ev = resolve(q.item, FOOD, CAT)
    assert isinstance(ev, DeviceEvent) and ev.entity_id == FOOD and ev.device_id == "WY-VSL-0006"
    assert [c.value for c in ev.channels] == ["vessel_pressure"] and ev.event_id == q.item.queue_id
    with open(rep.report_path, encoding="utf-8-sig") as f:
        assert [r[2] for r in list(csv.reader(f))[1:]] == ["待人工匹配"]


def test_the_same_rows_as_xlsx_give_the_same_events_and_reimport_the_same_ids(tmp_path):
    headers, rows = ledger()
    a, b = Recorder(), Recorder()
    run_import(LEDGER.read_bytes(), LEDGER.name, "devices", catalog=CAT, source=SRC, matcher=matcher(), sender=a)
    _run(write_xlsx(tmp_path / "设备台账.xlsx", headers, rows), sender=b)
    ids = lambda rec: {d: e.event_id for d, e in devices_of(rec).items()}  # noqa: E731
    assert ids(a) == ids(b) and len(ids(a)) == 5
    changed = [list(r) for r in rows]
    changed[0][headers.index("额定压力(MPa)")] = "1.25"  # a new rating is a new event
    c = Recorder()
    _run(write_csv(tmp_path / "c.csv", headers, changed), sender=c)
    assert ids(c)["WY-BLR-0001"] != ids(a)["WY-BLR-0001"] and ids(c)["WY-CS-0003"] == ids(a)["WY-CS-0003"]
    assert devices_of(c)["WY-BLR-0001"].rated_pressure_mpa == 1.25


def test_headers_with_full_width_brackets_or_degree_signs_are_the_layouts(tmp_path):
    headers, rows = ledger()
    wide = [h.replace("(", "（").replace(")", "）").replace("℃", "°C") for h in headers]
    wide[wide.index("使用单位")] = " 使用单位 "
    assert "额定压力（MPa）" in wide and "设定温度上限（°C）" in wide
    a, b = Recorder(), Recorder()
    _run(LEDGER, sender=a)
    rep = _run(write_xlsx(tmp_path / "全角.xlsx", wide, rows), sender=b)
    assert rep.refused == [] and len(devices_of(b)) == 5
    assert {d: e.model_dump(exclude={"occurred_at"}) for d, e in devices_of(a).items()} == {
        d: e.model_dump(exclude={"occurred_at"}) for d, e in devices_of(b).items()
    }


def test_bad_rows_are_refused_with_row_numbers_reasons_and_dead_letters(tmp_path):
    headers, rows = ledger()
    col = {h: i for i, h in enumerate(headers)}
    bad = [list(r) for r in rows[:5]] + [list(rows[0]) for _ in range(4)]
    bad[0][col["设备编号"]] = "锅炉一号"  # not the id the platform sends
    bad[1][col["单位"]] = "MPa"  # a boiler that also measures temperature: no single unit fits
    bad[2][col["单位"]] = "kg"  # kg is no temperature
    bad[3][col["设备类别"]] = "游乐设施"  # unknown category, no 监测通道
    bad[4][col["监测通道"]] = "压力"  # a 阴凉库 measures no pressure
    bad[5][col["额定压力(MPa)"]] = "高"
    bad[6][col["额定压力(MPa)"]] = "16kg"
    bad[7][col["上报间隔(秒)"]] = "很快"
    bad[8][col["使用状态"]] = "维修中"
    for i, r in enumerate(bad[5:], start=6):
        r[col["设备编号"]] = f"WY-X-{i}"
    rec = Recorder()
    rep = _run(write_csv(tmp_path / "bad.csv", headers, bad), sender=rec, report_dir=tmp_path)
    why = {r.row: r.reason for r in rep.refused}
    assert set(why) == set(range(2, 11)), why
    assert why[2].startswith("设备编号「锅炉一号」只能由字母、数字")
    assert why[3] == "单位「MPa」不适用于监测通道「锅炉温度」(℃)(测多个量的设备请留空,读数自带单位)"
    assert why[4] == "单位「kg」不适用于监测通道「冷链温度」(℃)"
    assert "设备类别「游乐设施」不在映射中" in why[5] and "devices.yaml" in why[5]
    assert why[6].startswith("监测通道「压力」无法确定:设备类别「阴凉库」没有测压力的通道")
    assert why[7] == "额定压力(MPa)「高」不是数值"
    assert why[8] == "额定压力(MPa)「16kg」的单位「kg」无法换算为 MPa"
    assert why[9] == "上报间隔(秒)「很快」不是秒数"
    assert "使用状态「维修中」不在映射中" in why[10]
    assert [t for t, *_ in rec.sent] == ["deadletter"] * 9
    dl = DeadLetter.model_validate_json(rec.sent[0][2])
    assert dl.source == SRC and dl.topic == "events.device" and dl.error.startswith("第 2 行")


def test_a_removed_device_and_a_contract_refusal_name_the_header(tmp_path):
    headers, rows = ledger()
    col = {h: i for i, h in enumerate(headers)}
    r1, r2 = list(rows[0]), list(rows[2])
    r1[col["使用状态"]] = "报废"
    r2[col["上报间隔(秒)"]] = "2天"  # not a unit of the interval
    r3 = list(rows[2])
    r3[col["设备编号"]], r3[col["上报间隔(秒)"]] = "WY-CS-9", "90000"  # above the contract's 86400 s
    rec = Recorder()
    rep = _run(write_csv(tmp_path / "r.csv", headers, [r1, r2, r3]), sender=rec)
    assert devices_of(rec)["WY-BLR-0001"].action.value == "removed"
    why = {r.row: r.reason for r in rep.refused}
    assert why[3] == "上报间隔(秒)「2天」不是秒数"
    assert why[4].startswith("上报间隔(秒): Input should be less than or equal to 86400")


def test_a_ledger_missing_required_columns_is_refused_up_front(tmp_path):
    headers, rows = ledger()
    keep = [h for h in headers if h not in ("使用单位", "设备类别")]
    p = write_xlsx(
        tmp_path / "缺列.xlsx", keep, [[c for h, c in zip(headers, r, strict=True) if h in keep] for r in rows]
    )
    with pytest.raises(MissingColumns) as e:
        _run(p, sender=Recorder())
    assert e.value.missing == ["使用单位", "设备类别"]


def test_the_devices_layout_is_one_of_the_import_kinds():
    assert "devices" in KINDS and load_layout("devices").title == "特种设备 / 物联网设备台账导出"


def test_the_conversion_is_independent_of_the_import_time():
    from edge.imports.rows import RowConverter

    headers, rows = ledger()
    cells = dict(zip(headers, rows[0], strict=True))
    conv = lambda now: RowConverter(load_layout("devices"), CAT, matcher(), SRC, now=now)  # noqa: E731
    a, b = conv(NOW).convert(2, cells), conv(datetime(2026, 12, 1, tzinfo=LOCAL_TZ)).convert(2, cells)
    assert isinstance(a, Ready) and isinstance(b, Ready)
    assert a.event.event_id == b.event.event_id and a.event.occurred_at == NOW  # a row without 更新时间


# --- the real broker and worker ----------------------------------------------------------------------
@pytest.mark.timeout(480)
def test_cli_import_lands_devices_in_the_table_and_on_the_dossier(pipeline, tmp_path, monkeypatch):
    """The registry imported, the worker's registry read back for matching by the CLI (``riskwatch import
    devices``, dry run then for real, twice): five devices in ``devices`` FINAL, the dossier lists them,
    the queued one in ``match_queue`` and, once the office chooses its entity, in ``devices`` too; the
    workbench's import page offers the ledger layout and dry-runs an upload."""
    from edge.imports.run import KafkaSender
    from riskwatch.cli.main import app
    from tests.webtools import csrf_of, start_web

    p, s = pipeline, pipeline.settings
    web = start_web(s, tmp_path)
    p.start_worker(web_public_url=web.url)
    try:
        sender = KafkaSender(s)
        reg = write_xlsx(tmp_path / "名录库.xlsx", REGISTRY_HEADERS, REGISTRY_ROWS)
        run_import(reg.read_bytes(), reg.name, "registry", catalog=CAT, matcher=Matcher([]), source=SRC,
                   sender=sender, settings=s)  # fmt: skip
        sender.close()
        q = p.worker.query
        wait_for(lambda: (q("SELECT count() AS n FROM riskwatch.registry FINAL") or [{}])[0].get("n") == 3, 120, "reg")
        for k, v in settings_env(s).items():
            monkeypatch.setenv(k, v)
        monkeypatch.chdir(tmp_path)
        cli = CliRunner()
        r = cli.invoke(app, ["import", "devices", str(LEDGER), "--dry-run"], catch_exceptions=False)
        assert r.exit_code == 0 and "将发送 5 条事件" in r.output and "待人工匹配 1 条" in r.output, r.output
        assert "credit_code 5" in r.output
        for _ in range(2):
            r = cli.invoke(app, ["import", "devices", str(LEDGER)], catch_exceptions=False)
            assert r.exit_code == 0 and "已发送 5 条事件" in r.output and "events.device 5" in r.output, r.output
        p.wait_consumed(topics=["events.device", "events.unmatched"])

        def stored():
            rows = q("SELECT device_id, entity_id, rated_pressure_mpa, owner, source FROM riskwatch.devices FINAL "
                     "WHERE action != 'removed' ORDER BY device_id")  # fmt: skip
            queue = q("SELECT name, event_topic FROM riskwatch.match_queue FINAL")
            return (rows, queue) if rows and len(rows) == 5 and queue else None

        rows, queue = wait_for(stored, 120, "devices and the queued one stored")
        assert [(x["device_id"], x["entity_id"]) for x in rows] == [
            ("WY-BLR-0001", FOOD),
            ("WY-BLR-0002", FOOD),
            ("WY-CS-0003", DINER),
            ("WY-DRG-0005", PHARMACY),
            ("WY-ELV-0004", PHARMACY),
        ]
        assert rows[1]["rated_pressure_mpa"] == 1.6 and rows[0]["owner"] == "iot-gw-01"
        assert all(x["source"].startswith("import:devices:") for x in rows)
        assert [(x["name"], x["event_topic"]) for x in queue] == [("舞阳县宏达气体经销部", "events.device")]
        c = web.client("taskforce")
        html = wait_for(
            lambda: (t := c.get(f"/entities/{FOOD}").text) and "WY-BLR-0002" in t and t, 60, "devices on the dossier"
        )
        assert "设备台账" in html and "WY-BLR-0001" in html and "额定压力 1.6MPa" in html and "iot-gw-01" in html
        page = c.get("/taskforce/imports").text
        assert 'value="devices"' in page and "特种设备 / 物联网设备台账导出" in page
        files = {"file": (LEDGER.name, LEDGER.read_bytes(), "text/csv")}
        r = c.post(f"/taskforce/imports?csrf_token={csrf_of(page)}", data={"kind": "devices", "dry_run": "1"},
                   files=files)  # fmt: skip
        assert r.status_code == 200 and "将发送 5 条事件" in r.text and "import:devices:taskforce" in r.text, r.text[
            -2500:
        ]
        # the office matches the queued 使用单位: the device event is re-emitted with the chosen entity
        mpage = c.get("/taskforce/matching")
        assert mpage.status_code == 200 and "舞阳县宏达气体经销部" in mpage.text
        qid = q("SELECT queue_id FROM riskwatch.match_queue FINAL")[0]["queue_id"]
        r = c.post(f"/taskforce/matching/{qid}/choose", data={"csrf_token": csrf_of(mpage.text), "entity_id": DINER})
        assert r.status_code == 303, r.text
        vessel = wait_for(
            lambda: q("SELECT entity_id FROM riskwatch.devices FINAL WHERE device_id = 'WY-VSL-0006'"), 60, "resolved"
        )
        assert vessel == [{"entity_id": DINER}]
    finally:
        web.stop()
