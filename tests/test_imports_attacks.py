"""Hostile and broken import files (edge/imports/table.py): zip bombs refused from the zip's declared
sizes before openpyxl parses anything, a sheet whose <dimension> claims a million rows by 16,384
columns, damaged .xlsx files (nested XML entities among them), CSVs in GBK (accepted), UTF-16, binary
and with an oversized field (refused). Every refusal is a TableError with a one-line message saying
what to do; the CLI and the workbench upload show it without a traceback."""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from edge.imports.table import LIMITS, Limits, TableError, check_zip, read_bytes
from tests.samples import REGISTRY_HEADERS, REGISTRY_ROWS, write_xlsx

ROOT = Path(__file__).resolve().parents[1]
SHEET = "xl/worksheets/sheet1.xml"
HEAD = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
)


LAUGHS = (  # "billion laughs": 10^9 characters from nine nested entities; expat 2.5 stops the amplification
    '<?xml version="1.0"?><!DOCTYPE w [<!ENTITY l0 "lololololo">'
    + "".join(f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10))
    + ']><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>'
    '<row r="1"><c r="A1" t="inlineStr"><is><t>&l9;</t></is></c></row></sheetData></worksheet>'
)


def _good(tmp: Path) -> bytes:
    return write_xlsx(tmp / "名录库.xlsx", REGISTRY_HEADERS, [list(r) for r in REGISTRY_ROWS]).read_bytes()


def _replace(xlsx: bytes, name: str, write) -> bytes:
    """``xlsx`` with member ``name``'s content written by ``write(file)`` (deflated, streamed)."""
    src, out = zipfile.ZipFile(io.BytesIO(xlsx)), io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for zi in src.infolist():
            if zi.filename == name:
                zi = zipfile.ZipInfo(name)
                zi.compress_type = zipfile.ZIP_DEFLATED
                with z.open(zi, "w", force_zip64=True) as f:
                    write(f)
            else:
                z.writestr(zi, src.read(zi), zipfile.ZIP_DEFLATED)
    return out.getvalue()


def _sheet(rows_xml: str, dimension: str = "A1:C3") -> str:
    return HEAD + f'<dimension ref="{dimension}"/><sheetData>{rows_xml}</sheetData></worksheet>'


def _declare(xlsx: bytes, name: str, size: int) -> bytes:
    """``xlsx`` whose central directory declares ``name``'s uncompressed size as ``size``."""
    b = bytearray(xlsx)
    at = b.find(b"PK\x01\x02")
    while at >= 0:
        n, m, k = struct.unpack_from("<HHH", b, at + 28)
        if bytes(b[at + 46 : at + 46 + n]).decode() == name:
            struct.pack_into("<I", b, at + 24, size)
        at = b.find(b"PK\x01\x02", at + 46 + n + m + k)
    return bytes(b)


def _refused(data: bytes, name: str, expect: str, limits: Limits = LIMITS) -> str:
    t0 = time.monotonic()
    with pytest.raises(TableError, match=expect) as e:
        read_bytes(data, name, limits)
    took = time.monotonic() - t0
    msg = str(e.value)
    assert "\n" not in msg and ":请" in msg, msg  # one line, then what to do
    assert took < 10, f"{name}: refused after {took:.1f} s"
    return msg


# --- zip bombs ------------------------------------------------------------------------------------------
def test_a_zip_bomb_is_refused_by_its_compression_ratio_before_parsing(tmp_path):
    row = '<row r="1"><c r="A1" t="inlineStr"><is><t>' + "0" * 4000 + "</t></is></c></row>"

    def bomb(f):
        for _ in range(16_000):  # 64 MiB of sheet XML in ~70 KiB
            f.write(row.encode())

    data = _replace(_good(tmp_path), SHEET, bomb)
    zi = zipfile.ZipFile(io.BytesIO(data)).getinfo(SHEET)
    assert len(data) < 200_000 and zi.file_size > 64_000_000 and zi.file_size / zi.compress_size > 500
    _refused(data, "bomb.xlsx", r"压缩比异常\(\d+:1,疑似压缩炸弹\)")


def test_a_declared_size_over_the_limit_is_refused_without_decompressing(tmp_path):
    data = _declare(_good(tmp_path), SHEET, 300 * 1024 * 1024)
    assert zipfile.ZipFile(io.BytesIO(data)).getinfo(SHEET).file_size == 300 * 1024 * 1024
    _refused(data, "big.xlsx", r"解压后过大\(超过 256 MB\)")
    with pytest.raises(TableError, match="过大"):  # the limit is a parameter: the total counts too
        check_zip(_good(tmp_path), Limits(total_bytes=4096))


def test_a_member_that_under_declares_its_size_fails_its_crc_instead_of_inflating(tmp_path):
    """The declared size passes the check; Python's zipfile stops the member there (CRC error)."""
    row = "".join(f'<row r="{i}"><c r="A{i}" t="inlineStr"><is><t>x</t></is></c></row>' for i in range(2, 200))
    data = _replace(_good(tmp_path), SHEET, lambda f: f.write(_sheet(row).encode()))
    _refused(_declare(data, SHEET, 600), "lying.xlsx", r"内容损坏")


# --- sheets that claim more than they hold --------------------------------------------------------------
def test_a_sheet_claiming_a_million_rows_by_16384_columns_is_capped(tmp_path):
    """Without resetting the dimension openpyxl pads every row to XFD and every gap to row 1,048,576."""
    xml = _sheet(
        '<row r="1"><c r="A1" t="inlineStr"><is><t>名称</t></is></c></row>'
        '<row r="1048576"><c r="XFD1048576" t="inlineStr"><is><t>x</t></is></c></row>',
        dimension="A1:XFD1048576",
    )
    data = _replace(_good(tmp_path), SHEET, lambda f: f.write(xml.encode()))
    assert len(data) < 20_000
    _refused(data, "dimension.xlsx", rf"超过 {LIMITS.rows} 行")


def test_rows_over_the_cap_are_refused_and_columns_past_the_cap_ignored(tmp_path):
    rows = [["A", "B", "C", "D"], *[[f"a{i}", "b", "c", "d"] for i in range(30)]]
    data = write_xlsx(tmp_path / "t.xlsx", rows[0], rows[1:]).read_bytes()
    t = read_bytes(data, "t.xlsx", Limits(rows=30, columns=2))
    assert t.headers == ["A", "B"] and len(t.rows) == 30 and t.rows[-1] == (31, {"A": "a29", "B": "b"})
    _refused(data, "t.xlsx", "超过 29 行", Limits(rows=29))
    csv_data = "\n".join(",".join(r) for r in rows).encode()
    assert len(read_bytes(csv_data, "t.csv", Limits(rows=30)).rows) == 30
    _refused(csv_data, "t.csv", "超过 29 行", Limits(rows=29))


# --- damaged files ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "what,make,expect",
    [
        ("not a zip", lambda good: b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 600, "不是有效的 .xlsx"),  # an .xls
        ("truncated", lambda good: good[: len(good) // 2], "不是有效的 .xlsx"),
        ("no workbook", lambda good: _replace(good, "xl/workbook.xml", lambda f: f.write(b"<broken")), "内容损坏"),
        ("bad sheet XML", lambda good: _replace(good, SHEET, lambda f: f.write(HEAD.encode() + b"<sheetData><row>")),
         "内容损坏"),
        ("entity expansion", lambda good: _replace(good, SHEET, lambda f: f.write(LAUGHS.encode())), "内容损坏"),
        ("bad cell", lambda good: _replace(good, SHEET, lambda f: f.write(_sheet(
            '<row r="1"><c r="A1" t="n"><v>not a number</v></c></row>').encode())), "内容损坏"),
    ],
)  # fmt: skip
def test_a_damaged_xlsx_is_refused_with_one_line(tmp_path, what, make, expect):
    _refused(make(_good(tmp_path)), f"{what}.xlsx", expect)


# --- CSV encodings ------------------------------------------------------------------------------------
def _csv_text() -> str:
    head: list[object] = [*REGISTRY_HEADERS]
    return "\r\n".join(",".join(map(str, r)) for r in [head, *REGISTRY_ROWS]) + "\r\n"


def test_a_gbk_csv_is_read_like_its_utf8_twin():
    text = _csv_text()
    utf8 = read_bytes(text.encode("utf-8-sig"), "名录库.csv")
    gbk = read_bytes(text.encode("gbk"), "名录库.csv")
    assert gbk == utf8 and "统一社会信用代码" in gbk.headers and len(gbk.rows) == len(REGISTRY_ROWS)


@pytest.mark.parametrize(
    "what,data,expect",
    [
        ("utf-16 with BOM", _csv_text().encode("utf-16"), "编码无法识别"),
        ("utf-16 without BOM", _csv_text().encode("utf-16-le"), "编码无法识别"),
        ("utf-16 without BOM, ASCII only", "id,name\r\n1,a\r\n".encode("utf-16-le"), "空字符"),
        ("binary", bytes(range(256)) * 4, "编码无法识别"),
        ("a field over csv's limit", b'a,b\n"' + b"x" * 200_000 + b'",1\n', "CSV 格式错误"),
        ("empty", b"\xef\xbb\xbf\r\n,,\r\n", "文件为空"),
    ],
)
def test_a_csv_that_is_not_a_utf8_or_gbk_table_is_refused(what, data, expect):
    _refused(data, "x.csv", expect)


# --- the front ends -----------------------------------------------------------------------------------
def test_the_cli_prints_one_line_and_no_traceback(tmp_path):
    row = '<row r="1"><c r="A1" t="inlineStr"><is><t>' + "0" * 4000 + "</t></is></c></row>"
    bomb = tmp_path / "名录库.xlsx"
    bomb.write_bytes(_replace(_good(tmp_path), SHEET, lambda f: [f.write(row.encode()) for _ in range(16_000)]))
    bad = tmp_path / "名录库.csv"
    bad.write_bytes("id,name\r\n1,a\r\n".encode("utf-16-le"))
    for f, expect in ((bomb, "疑似压缩炸弹"), (bad, "空字符")):
        r = subprocess.run(
            [sys.executable, "-m", "riskwatch.cli.main", "import", "registry", str(f), "--dry-run"],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "400"},
            timeout=120,
        )
        out = (r.stdout + r.stderr).strip()
        assert r.returncode == 2 and "Traceback" not in out and expect in out, out
        assert len(out.splitlines()) == 1 and out.startswith(f"无法读取 {f}:"), out


def test_the_workbench_upload_shows_the_message_not_an_error_page(broker, tmp_path):
    from tests.webtools import csrf_of, start_web

    row = '<row r="1"><c r="A1" t="inlineStr"><is><t>' + "0" * 4000 + "</t></is></c></row>"
    bomb = _replace(_good(tmp_path), SHEET, lambda f: [f.write(row.encode()) for _ in range(16_000)])
    cell = _replace(
        _good(tmp_path), SHEET, lambda f: f.write(_sheet('<row r="1"><c r="A1" t="n"><v>x</v></c></row>').encode())
    )
    files = {
        "名录库.xlsx": (bomb, "疑似压缩炸弹"),
        "损坏.xlsx": (cell, "内容损坏"),
        "名录库.csv": ("id,name\r\n1,a\r\n".encode("utf-16-le"), "空字符"),
    }
    w = start_web(broker.model_copy(update=dict(topic_prefix=f"ia{os.getpid()}.")), tmp_path)
    try:
        c = w.client("taskforce")
        tok = csrf_of(c.get("/taskforce/imports").text)
        for name, (data, expect) in files.items():
            r = c.post(
                f"/taskforce/imports?csrf_token={tok}",
                data={"kind": "registry", "dry_run": "1"},
                files={"file": (name, data, "application/octet-stream")},
            )
            assert r.status_code == 400 and expect in r.text and "Traceback" not in r.text, (name, r.status_code)
        assert "Traceback" not in w.log.read_text(encoding="utf-8", errors="replace")
    finally:
        w.stop()
