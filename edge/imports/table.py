"""Reading an export: ``.xlsx`` with openpyxl (read-only, values not formulas) or ``.csv`` (UTF-8
with or without BOM, else GB18030, as county systems export). The first non-empty row is the header.

A file is untrusted input (an upload on the workbench). Before openpyxl parses anything, the
``.xlsx`` zip's members are checked against :data:`LIMITS` by their declared sizes (a zip bomb: a
small file with a huge sheet XML; Python's zipfile stops a member at its declared size, so a header
that under-declares fails its CRC instead of inflating). Reading stops at :attr:`Limits.rows` rows
and :attr:`Limits.columns` columns, whatever the sheet's ``<dimension>`` claims. Every failure is a
:class:`TableError` whose one-line Chinese message says what to do; nothing else escapes.

GBK is accepted without a detection library: a file that is not UTF-8 is decoded as GB18030 (a
superset of GBK and GB2312, what county systems export); anything else is refused, not guessed.

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
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Limits:
    """What an import file may hold. A 200,000-row, 5-column sheet (Chinese names and addresses) as
    openpyxl writes it is 66 MiB of XML compressed 18:1 (measured); a zip bomb is 1000:1 and more."""

    rows: int = 200_000  # data rows
    columns: int = 200  # columns read; the rest of a wider row is ignored
    member_bytes: int = 256 * MiB  # one zip member, declared uncompressed size
    total_bytes: int = 512 * MiB  # all members
    ratio: float = 100.0  # declared uncompressed / compressed size, for members over 1 MiB
    members: int = 1_000


LIMITS = Limits()
MAX_ROWS = LIMITS.rows


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


def _table(raw: Iterable[tuple[int, Sequence[Any]]], limits: Limits) -> Table:
    """The header and the data rows of ``raw`` (row number, cells), read lazily: at most
    ``limits.rows`` data rows and ``limits.columns`` columns (a blank row costs no more than its number)."""
    headers: list[str] | None = None
    rows: list[tuple[int, dict[str, Any]]] = []
    last = limits.rows + 10_000  # blank rows and a header block above the data
    blank: object = None
    for n, r in raw:
        if n > last:
            raise TableError(f"超过 {limits.rows} 行:请分批导出后再导入")
        if r is blank:  # openpyxl yields one tuple for every missing row
            continue
        cells = r[: limits.columns]
        if not any(_cell(c) not in ("", None) for c in cells):
            blank = r
            continue
        if headers is None:
            headers = [str(_cell(h)) for h in cells]
            continue
        if len(rows) >= limits.rows:
            raise TableError(f"超过 {limits.rows} 行:请分批导出后再导入")
        rows.append((n, {h: _cell(c) for h, c in zip(headers, cells, strict=False) if h}))
    if headers is None:
        raise TableError("文件为空(没有表头):请确认导出的是含表头的数据表")
    return Table(headers=[h for h in headers if h], rows=rows)


def check_zip(data: bytes, limits: Limits = LIMITS) -> None:
    """Refuse an ``.xlsx`` whose zip declares too much (before anything is decompressed)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            infos = z.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError):
        raise TableError(
            "文件不是有效的 .xlsx(已损坏,或是改了后缀的其他文件):请用 Excel 打开并另存为 .xlsx 后重试"
        ) from None
    if len(infos) > limits.members:
        raise TableError(
            f"Excel 文件包含 {len(infos)} 个部件(上限 {limits.members}),不像表格导出:请另存为 .xlsx 后重试"
        )
    total = 0
    for zi in infos:
        total += zi.file_size
        if zi.file_size > limits.member_bytes or total > limits.total_bytes:
            most = min(limits.member_bytes, limits.total_bytes) // MiB
            raise TableError(f"Excel 文件解压后过大(超过 {most} MB):请分批导出后再导入")
        if zi.file_size > MiB and zi.file_size > limits.ratio * max(zi.compress_size, 1):
            raise TableError(
                f"Excel 文件压缩比异常({zi.file_size // max(zi.compress_size, 1)}:1,疑似压缩炸弹),未导入:"
                "请用 Excel 打开并另存为 .xlsx 后重试"
            )


def read_bytes(data: bytes, filename: str, limits: Limits = LIMITS) -> Table:
    """The table in ``data``, its type from ``filename``'s suffix (.xlsx or .csv)."""
    suffix = Path(filename).suffix.lower()
    if suffix == ".xlsx":
        check_zip(data, limits)
        return _xlsx(data, limits)
    if suffix == ".csv":
        return _csv(data, limits)
    raise TableError(f"不支持的文件类型 {suffix or '(无后缀)'}:请上传 .xlsx 或 .csv")


def _xlsx(data: bytes, limits: Limits) -> Table:
    from openpyxl import load_workbook

    damaged = "无法读取 Excel 文件(内容损坏:{}):请用 Excel 打开并另存为 .xlsx 后重试"
    try:
        wb = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as e:  # noqa: BLE001 — zip/xml errors of a damaged or mislabelled file
        raise TableError(damaged.format(type(e).__name__)) from None
    try:
        if not wb.worksheets:
            raise TableError("Excel 文件没有工作表:请确认导出的是含表头的数据表")
        ws = wb.worksheets[0]
        ws.reset_dimensions()  # the sheet's <dimension> is the file's claim: rows are padded to it otherwise
        rows = ws.iter_rows(max_col=limits.columns, values_only=True)
        return _table(enumerate(rows, start=1), limits)
    except TableError:
        raise
    except Exception as e:  # noqa: BLE001 — the sheet XML is parsed lazily, while rows are read
        raise TableError(damaged.format(type(e).__name__)) from None
    finally:
        wb.close()


def _csv(data: bytes, limits: Limits) -> Table:
    for enc in ("utf-8-sig", "gb18030"):
        try:
            text = data.decode(enc)
            break
        except UnicodeDecodeError:
            continue
    else:
        raise TableError("CSV 编码无法识别(应为 UTF-8 或 GBK/GB18030):请在 Excel 中另存为「CSV UTF-8(逗号分隔)」后重试")
    if "\0" in text:  # UTF-16 ("Unicode 文本") or a binary file renamed .csv
        raise TableError("CSV 含有空字符(可能是 UTF-16 或二进制文件):请在 Excel 中另存为「CSV UTF-8(逗号分隔)」后重试")
    try:
        return _table(enumerate(csv.reader(io.StringIO(text)), start=1), limits)
    except csv.Error as e:
        raise TableError(f"CSV 格式错误({e}):请在 Excel 中另存为「CSV UTF-8(逗号分隔)」后重试") from None


def read_table(path: Path, limits: Limits = LIMITS) -> Table:
    return read_bytes(Path(path).read_bytes(), Path(path).name, limits)
