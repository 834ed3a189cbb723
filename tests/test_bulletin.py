"""情况通报 (reports.bulletin) rendered from synthetic alerts stored in a real chDB directory.

chDB hosts one engine directory per process: this module uses ONE directory and closes its
writer at module teardown, like tests/test_clickhouse_sink.py.
"""

from __future__ import annotations

import random
import re
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from reports import bulletin as B
from riskwatch.domain.catalog import load_catalog
from riskwatch.settings import Settings
from schemas.events import Alert, Contribution
from schemas.vocabulary import AlertStatus, Level
from sinks.rows import alert_row
from sinks.writer import ClickHouseWriter

TZ = ZoneInfo("Asia/Shanghai")
UNTIL = date(2026, 12, 1)  # the week is 2026-11-24 .. 2026-11-30
END = datetime(2026, 12, 1, tzinfo=TZ)
AS_OF = END
CATALOG = load_catalog()
TOWNSHIPS = ["舞泉镇", "吴城镇", "北舞渡镇", "莲花镇", "辛安镇"]


def _alerts(n: int = 80, seed: int = 3) -> list[Alert]:
    rng = random.Random(seed)
    items = list(CATALOG.items.values())
    out = []
    for i in range(n):
        item = items[i % len(items)] if i % 11 else None  # some alerts with no item (task-force office)
        level = list(Level)[i % 4]
        status = list(AlertStatus)[(i // 4) % 6]
        # mostly inside the week, a few before it (must not be counted)
        first = END - timedelta(days=rng.uniform(0.05, 6.9) if i % 13 else 9.0)
        depts = list(CATALOG.receivers(item.id)) if item else [CATALOG.taskforce_office]
        ent = f"E{i % 23:03d}"
        out.append(Alert(
            alert_id=f"A{i:04d}", revision=1 + i % 3, fingerprint=f"{ent}|{item.id if item else ''}|rule{i % 5}",
            entity_id=ent, entity_name=f"测试主体{i % 23}号", entity_kind=item.objects[0] if item else "catering",
            township=TOWNSHIPS[i % len(TOWNSHIPS)], item_id=item.id if item else None,
            item_name=item.name if item else "待专班研判", rule=f"rule{i % 5}", level=level, level_zh=level.zh,
            status=status, score=round(rng.uniform(30, 99), 1), title=f"冷链温度超标预警{i}",
            message=f"主体连续{i % 7 + 2}次读数超出阈值，请及时核查处置。",
            explanation=[Contribution(signal="sensor.cold_chain_temp", value=1.5, detail="温度偏高")],
            lead_department=depts[0], departments=depts, first_seen=first, last_seen=first + timedelta(hours=1),
            updated_at=first + timedelta(hours=2), source_event_id=f"ev{i}",
        ))  # fmt: skip
    # an older revision of A0001 (revision 2) that FINAL must hide
    assert out[1].revision == 2
    out.append(out[1].model_copy(update={"revision": 1, "status": AlertStatus.firing}))
    return out


@pytest.fixture(scope="module")
def settings(tmp_path_factory) -> Settings:
    url = f"chdb://{tmp_path_factory.mktemp('bulletin') / 'clickhouse'}"
    return Settings(clickhouse_url=url, sink_batch_rows=10_000, sink_batch_seconds=0.1, _env_file=None)


@pytest.fixture(scope="module")
def writer(settings):
    w = ClickHouseWriter(settings)
    w.open()
    w.submit("alerts", [alert_row(a) for a in _alerts()]).result(timeout=60)
    yield w
    w.close(timeout=30)


@pytest.fixture(scope="module")
def report(writer, settings, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    html_path, pdf_path = B.generate("week", None, out, settings=settings, query=writer.query, until=UNTIL, as_of=AS_OF)
    return html_path.read_text(encoding="utf-8"), pdf_path


def _count(writer, where: str = "1") -> int:
    sql = (
        f"SELECT count() FROM riskwatch.alerts FINAL WHERE first_seen >= toDateTime64('2026-11-24 00:00:00', 3, "
        f"'Asia/Shanghai') "
        f"AND first_seen < toDateTime64('2026-12-01 00:00:00', 3, 'Asia/Shanghai') AND ({where})"
    )
    return writer.query(sql)[1][0][0]


def _span(html: str, id_: str) -> str:
    m = re.search(rf'<span id="{id_}">([^<]*)</span>', html)
    assert m, f"no span #{id_}"
    return m.group(1)


def test_html_headings_and_numbers_match_sql(report, writer):
    html, _ = report
    for h in (
        "舞阳县“三品一特”综合监管风险预警情况通报",
        "一、总体情况",
        "二、分事项预警情况",
        "三、分部门预警及处置情况",
        "四、超期未处置预警清单",
        "五、高风险主体",
        "六、典型案例（红色、橙色预警）",
        "2026年11月24日至2026年11月30日",
    ):
        assert h in html, h  # fmt: skip
    total = _count(writer)
    assert 0 < total < 80  # the alerts before the week are left out
    assert int(_span(html, "total")) == total
    for lv in B.LEVELS:
        assert int(_span(html, f"level-{lv}")) == _count(writer, f"level = '{lv}'")
    disposed = _count(writer, "status IN ('resolved', 'closed')")
    assert int(_span(html, "disposed")) == disposed
    assert _span(html, "rate") == f"{disposed / total * 100:.1f}%"
    # overdue: open and older than the level's limit at AS_OF
    limit = " OR ".join(
        f"(level = '{lv}' AND first_seen < toDateTime64('{(AS_OF - timedelta(hours=h)):%Y-%m-%d %H:%M:%S}', "
        "3, 'Asia/Shanghai'))"
        for lv, h in B.DISPOSAL_LIMIT_HOURS.items()
    )
    overdue = _count(writer, f"status NOT IN ('resolved', 'closed') AND ({limit})")
    assert int(_span(html, "overdue")) == overdue
    assert html.count("<tr>") > 10
    # per-item row of the first item: name and count from SQL
    item = CATALOG.items[1].name
    n_item = _count(writer, f"item_name = '{item}'")
    assert re.search(rf"<td class=l>{re.escape(item)}</td><td>{n_item}</td>", html)
    # per-department row (departments are counted per receiving department)
    n_amr = _count(writer, "has(departments, 'amr')")
    assert re.search(rf"<td class=l>县市场监管局</td><td>{n_amr}</td>", html)
    # notable cases: red and orange only
    n_notable = _count(writer, "level IN ('red', 'orange')")
    assert html.count('<div class="case">') == min(n_notable, 30)
    assert "【红色预警】" in html and "【蓝色预警】" not in html
    assert html.count("data:image/png;base64,") == 4


def test_dept_filter(writer, settings, tmp_path):
    html_path, pdf_path = B.generate(
        "week", "medinsure", tmp_path, settings=settings, query=writer.query, until=UNTIL, as_of=AS_OF
    )
    html = html_path.read_text(encoding="utf-8")
    assert "（县医疗保障局）" in html and html_path.name == "bulletin-week-medinsure-20261130.html"
    assert int(_span(html, "total")) == _count(writer, "has(departments, 'medinsure')")
    with pytest.raises(ValueError, match="unknown department"):
        B.generate("week", "nope", tmp_path, settings=settings, query=writer.query, until=UNTIL)


def test_month_covers_more(writer, settings, tmp_path):
    html_path, _ = B.generate("month", None, tmp_path, settings=settings, query=writer.query, until=UNTIL, as_of=AS_OF)
    html = html_path.read_text(encoding="utf-8")
    assert "月报" in html and int(_span(html, "total")) == 80  # every alert once (FINAL), none older than 30 days


def test_empty_period(writer, settings, tmp_path):
    html_path, pdf_path = B.generate(
        "week", None, tmp_path, settings=settings, query=writer.query, until=date(2020, 1, 1)
    )
    html = html_path.read_text(encoding="utf-8")
    assert _span(html, "total") == "0" and _span(html, "rate") == "—" and "本期无红色、橙色预警" in html
    assert pdf_path.stat().st_size > 1000


# --- the PDF ---------------------------------------------------------------------------------------
def _render(pdf_path, page: int = 0):
    pdfium = pytest.importorskip("pypdfium2")
    import numpy as np

    doc = pdfium.PdfDocument(str(pdf_path))
    try:
        n = len(doc)
        img = doc[page].render(scale=1.5).to_pil().convert("L")
        return n, np.asarray(img)
    finally:
        doc.close()


def test_pdf_pages_not_blank_and_font_embedded(report):
    _, pdf_path = report
    font = B.find_cjk_font()
    if font is None:
        pytest.fail(f"no CJK TrueType font on this machine: {B.FONT_HINT}")
    n, px = _render(pdf_path)
    assert n >= 2  # tables, charts and cases do not fit one A4 page
    dark = int((px < 200).sum())
    assert dark > 0.01 * px.size, f"page 1 nearly blank: {dark} dark pixels of {px.size}"
    data = pdf_path.read_bytes()
    assert b"/FontFile2" in data  # the TrueType font is embedded (subset)


def test_cjk_glyphs_render(report, tmp_path):
    """Page 1 with the embedded CJK font against the same page set in Helvetica (no CJK glyphs:
    what a missing font looks like, PDFium draws a filled box per character). Real glyphs are
    strokes: clearly visible ink, but much less of it than the boxes."""
    font = B.find_cjk_font()
    if font is None:
        pytest.fail(f"no CJK TrueType font on this machine: {B.FONT_HINT}")
    # a text-only bulletin page: same content, charts replaced by blank images
    b = B.summarize([], "week", END - timedelta(days=7), END, catalog=CATALOG, as_of=AS_OF)
    blank = B.make_charts(b, font)
    with_font = B.render_pdf(b, blank, tmp_path / "with.pdf", font)
    without = B.render_pdf(b, blank, tmp_path / "without.pdf", None, font_name="Helvetica")
    _, a = _render(with_font)
    _, c = _render(without)
    text_rows = slice(0, a.shape[0] // 4)  # title, subtitle, summary
    ink_with = int((a[text_rows] < 160).sum())
    ink_without = int((c[text_rows] < 160).sum())
    assert ink_with > 3000, ink_with  # the title, subtitle and summary are there
    assert ink_with < 0.8 * ink_without, (ink_with, ink_without)  # ... as glyphs, not boxes
    # and the Chinese text is real text in the PDF (extractable), not an image
    pdfium = pytest.importorskip("pypdfium2")
    doc = pdfium.PdfDocument(str(with_font))
    try:
        assert "综合监管风险预警情况通报" in doc[0].get_textpage().get_text_range()
    finally:
        doc.close()


def test_period_bounds():
    s, e = B.period_bounds("week", date(2026, 12, 1))
    assert (s.isoformat(), e.isoformat()) == ("2026-11-24T00:00:00+08:00", "2026-12-01T00:00:00+08:00")
    assert B.period_bounds("month", date(2026, 12, 1))[0].date() == date(2026, 11, 1)
    with pytest.raises(ValueError):
        B.period_bounds("year")
    with pytest.raises(ValueError):
        B.alerts_sql(s, e, "amr'; DROP")


def test_default_font_comes_with_the_python_packages(monkeypatch):
    """The CJK font is installed by riskwatch's own dependencies (no Debian font package needed):
    with BULLETIN_FONT unset, the font found first is the packaged one, and ReportLab can embed it."""
    monkeypatch.delenv("BULLETIN_FONT", raising=False)
    packaged = B.packaged_font()
    assert packaged is not None, B.FONT_HINT
    assert B.find_cjk_font() == packaged
