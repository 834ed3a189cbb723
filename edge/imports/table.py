"""Reading an export: ``.xlsx`` with openpyxl (read-only, values not formulas) or ``.csv`` (UTF-8
with or without BOM, else GB18030, as county systems export). The first non-empty row is the header.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "t.csv"
    >>> _ = p.write_text("工单编号,来电时间\\nA1,2026-11-27 08:00\\n", encoding="utf-8-sig")
    >>> t = read_table(p)
    >>> t.headers, t.rows[0]
    (['工单编号', '来电时间'], (2, {'工单编号': 'A1', '来电时间': '2026-11-27 08:00'}))
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

MAX_ROWS = 200_000


class TableError(ValueError):
    """The file cannot be read as a table (wrong type, damaged, empty)."""


@dataclass(slots=True)
class Table:
    headers: list[str]
    rows: list[tuple[int, dict[str, Any]]]  # (row number in the file, 1-based as shown by Excel; {header: cell})


def _cell(v: Any) -> Any:
    if isinstance(v, datetime | date):
        return v
    if v is None:
        return ""
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v).strip()


def _table(raw: list[tuple[int, list[Any]]]) -> Table:
    raw = [(n, r) for n, r in raw if any(_cell(c) not in ("", None) for c in r)]
    if not raw:
        raise TableError("文件为空:没有表头")
    head_no, head = raw[0]
    headers = [str(_cell(h)) for h in head]
    rows: list[tuple[int, dict[str, Any]]] = []
    for n, r in raw[1:]:
        if len(rows) >= MAX_ROWS:
            raise TableError(f"超过 {MAX_ROWS} 行,请分批导入")
        rows.append((n, {h: _cell(c) for h, c in zip(headers, r, strict=False) if h}))
    return Table(headers=[h for h in headers if h], rows=rows)


def read_bytes(data: bytes, filename: str) -> Table:
    """The table in ``data``, its type from ``filename``'s suffix (.xlsx or .csv)."""
    suffix = Path(filename).suffix.lower()
    if suffix == ".xlsx":
        from openpyxl import load_workbook

        try:
            wb = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
        except Exception as e:  # noqa: BLE001 — zip/xml errors of a damaged or mislabelled file
            raise TableError(f"无法读取 Excel 文件:{type(e).__name__}") from None
        try:
            ws = wb.worksheets[0]
            return _table([(i, list(r)) for i, r in enumerate(ws.iter_rows(values_only=True), start=1)])
        finally:
            wb.close()
    if suffix == ".csv":
        for enc in ("utf-8-sig", "gb18030"):
            try:
                text = data.decode(enc)
                break
            except UnicodeDecodeError:
                continue
        else:
            raise TableError("CSV 编码无法识别(应为 UTF-8 或 GB18030)")
        return _table([(i, r) for i, r in enumerate(csv.reader(io.StringIO(text)), start=1)])
    raise TableError(f"不支持的文件类型 {suffix or '(无后缀)'}:请上传 .xlsx 或 .csv")


def read_table(path: Path) -> Table:
    return read_bytes(Path(path).read_bytes(), Path(path).name)
