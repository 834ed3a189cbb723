"""Read-only query gate for ``riskwatch query`` and the worker's HTTP ``/query`` endpoint.

Two independent layers:

1. :func:`check_read_only` refuses anything that is not ONE read statement (SELECT, WITH, SHOW,
   DESCRIBE/DESC, EXPLAIN, EXISTS), looking past comments and string literals, and refuses
   ``INTO OUTFILE`` (chDB writes that file even under ``readonly=1``; checked with chDB 4.4).
2. :func:`execute_readonly` runs the statement with ``readonly=1`` (``READ_SETTINGS``), so the
   engine itself refuses writes, DDL, changing ``readonly`` and table functions like file()/url().

>>> check_read_only("SELECT 1;")
'SELECT 1'
>>> check_read_only("SELECT 1; DROP TABLE x")
Traceback (most recent call last):
...
sinks.query.QueryRefused: only one statement per query is allowed; found a second one after ';' at position 8
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from typing import Any

from sinks.clickhouse import READ_SETTINGS

ALLOWED = ("SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXPLAIN", "EXISTS")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class QueryRefused(ValueError):
    """The statement is not a single read-only query."""


def _scan(sql: str) -> tuple[list[tuple[int, str]], list[int]]:
    """Bare words (upper-cased, with positions) and positions of ``;`` outside strings/comments."""
    words: list[tuple[int, str]] = []
    semis: list[int] = []
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if c in "'\"`":
            j = i + 1
            while j < n and sql[j] != c:
                j += 2 if sql[j] == "\\" else 1
            if j >= n:
                raise QueryRefused(f"unterminated {c} quote starting at position {i}")
            i = j + 1
        elif sql.startswith("--", i) or c == "#":
            j = sql.find("\n", i)
            i = n if j < 0 else j + 1
        elif sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            if j < 0:
                raise QueryRefused(f"unterminated /* comment starting at position {i}")
            i = j + 2
        elif c == ";":
            semis.append(i)
            i += 1
        elif c.isalpha() or c == "_":
            m = _WORD.match(sql, i)
            words.append((i, m.group(0).upper()))
            i = m.end()
        else:
            i += 1
    return words, semis


def check_read_only(sql: str) -> str:
    """The statement without a trailing ``;`` if it is a single read statement; else QueryRefused."""
    if not sql or not sql.strip():
        raise QueryRefused("empty query")
    words, semis = _scan(sql)
    if semis:
        last = semis[0]
        rest_words = [w for p, w in words if p > last]
        if len(semis) > 1 or rest_words:
            raise QueryRefused(f"only one statement per query is allowed; found a second one after ';' at position {last}")
        sql = sql[:last]
    if not words:
        raise QueryRefused("no SQL statement found (only comments?)")
    first = words[0][1]
    if first not in ALLOWED:
        raise QueryRefused(f"only read queries are allowed ({', '.join(ALLOWED)}); got {first}: writes and DDL go through riskwatch itself")
    for (_, a), (_, b) in zip(words, words[1:]):
        if a == "INTO" and b == "OUTFILE":
            raise QueryRefused("INTO OUTFILE is not allowed: it writes a file on the ClickHouse host")
    return sql.strip()


_CH_ERROR = re.compile(r"Code:\s*(\d+)\.\s*(?:DB::Exception:\s*)?(.*?)(?:\s*\(([A-Z][A-Z0-9_]+)\))?(?:\s*\(version [^)]*\))?\s*$", re.S)
_HINTS = {
    "READONLY": "queries run with readonly=1, so writes, settings changes and table functions such as file() or url() are refused",
    "UNKNOWN_TABLE": "`riskwatch query 'SHOW TABLES FROM riskwatch'` lists the tables",
    "UNKNOWN_DATABASE": "the tables are in the database riskwatch (RISKWATCH_CLICKHOUSE_DATABASE)",
    "TIMEOUT_EXCEEDED": "narrow the query (a WHERE on time, a LIMIT)",
}


def engine_error_line(err: BaseException | str, limit: int = 400) -> str:
    """One readable line for a ClickHouse error (no traceback, no stack, whitespace collapsed).

    >>> engine_error_line("Code: 164. DB::Exception: default: Cannot execute query in readonly mode. (READONLY)")
    'ClickHouse refused it (READONLY, code 164): default: Cannot execute query in readonly mode. Hint: queries run with readonly=1, so writes, settings changes and table functions such as file() or url() are refused'
    """
    text = str(err).strip() or type(err).__name__
    text = re.sub(r"^[A-Za-z]*(Error|Exception):\s*", "", text)  # "DatabaseError: Code: ..." from the worker
    m = _CH_ERROR.search(text)
    if not m:
        line = " ".join(text.split())
        return line if len(line) <= limit else line[: limit - 1] + "…"
    code, msg, name = m.group(1), " ".join(m.group(2).split()), m.group(3)
    msg = re.sub(r"\s*Stack trace.*$", "", msg)
    if len(msg) > limit:
        msg = msg[: limit - 1] + "…"
    head = f"ClickHouse refused it ({name}, code {code})" if name else f"ClickHouse error code {code}"
    hint = _HINTS.get(name or "")
    return f"{head}: {msg}" + (f" Hint: {hint}" if hint else "")


def execute_readonly(client: Any, sql: str, params: dict | None = None, *, limit: int | None = None) -> tuple[list[str], list[tuple]]:
    """Run ``sql`` with ``readonly=1`` (engine-level refusal of writes); ``(columns, rows)``.

    With ``limit``, at most that many rows are returned (the engine stops early too).
    """
    settings = dict(READ_SETTINGS)
    if limit is not None:
        settings.update(max_result_rows=limit, result_overflow_mode="break")
    result = client.query(sql, parameters=params or None, settings=settings)
    rows = result.result_rows
    if limit is not None:
        rows = rows[:limit]
    return list(result.column_names), list(rows)


def run_read_query(client: Any, sql: str, params: dict | None = None, *, limit: int | None = None) -> tuple[list[str], list[tuple]]:
    """Both layers: :func:`check_read_only`, then :func:`execute_readonly`."""
    return execute_readonly(client, check_read_only(sql), params, limit=limit)


def format_table(columns: Sequence[str], rows: Sequence[Sequence[Any]], *, title: str | None = None) -> str:
    """A text table (rich, no colours; CJK-width aware) for the CLI.

    >>> print(format_table(["township", "n"], [("舞泉镇", 3)]))
    ┏━━━━━━━━━━┳━━━┓
    ┃ township ┃ n ┃
    ┡━━━━━━━━━━╇━━━┩
    │ 舞泉镇   │ 3 │
    └──────────┴───┘
    (1 row)
    """
    from rich.console import Console
    from rich.table import Table

    table = Table(*[str(c) for c in columns], title=title)
    for r in rows:
        table.add_row(*["NULL" if v is None else str(v) for v in r])
    buf = io.StringIO()
    Console(file=buf, width=10_000, color_system=None, force_terminal=False, legacy_windows=False).print(table)
    lines = [line.rstrip() for line in buf.getvalue().splitlines()]
    lines.append(f"({len(rows)} row{'' if len(rows) == 1 else 's'})")
    return "\n".join(lines)
