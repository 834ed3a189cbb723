"""Read-only query gate for ``riskwatch query``, the workbench and the worker's HTTP ``/query``.

The decision is made on ClickHouse's own parse tree, by the engine that will run the statement,
never on the text:

1. ``SELECT formatQuerySingleLine(unhex('<hex of the statement>'))``: the engine parses the
   statement (the hex literal cannot break out of its quotes). A syntax error or a second
   statement is refused here (``Multi-statements are not allowed``); the result is the engine's
   canonical text of the ONE statement: every string, identifier, comment and ``$$heredoc$$``
   form has already been resolved by ClickHouse's lexer.
2. ``EXPLAIN AST <canonical>`` gives the parse tree (``EXPLAIN`` only parses: nothing runs).
   :func:`decide` reads it: the root must be a read (SELECT, WITH … SELECT, UNION/INTERSECT of
   selects, SHOW TABLES/DATABASES/COLUMNS/CREATE, DESCRIBE, EXISTS, or EXPLAIN of a SELECT);
   refused anywhere in the tree: ``INTO OUTFILE`` (a literal child of a query node), ``FORMAT``
   (an identifier child of a query node; format settings read files), ``SETTINGS`` (a ``Set``
   node), every table function outside :data:`TABLE_FUNCTIONS` (the engine's own list,
   ``system.table_functions``: file, url, s3, remote, mysql, executable, input, iceberg …), the
   scalar ``file()``, dictionary functions (``dict*``: a dictionary's source may be a file, a URL
   or a process) and user-defined functions (executable UDFs run processes).
3. Tables named in the tree must have a local engine (:data:`LOCAL_ENGINES`; File, URL, S3,
   Distributed, MySQL, Dictionary … are refused), looked up in ``system.tables``.
4. The canonical statement (not the text sent) runs with :data:`READ_SETTINGS`: ``readonly=1``
   and limits on rows, bytes, memory and time, all with overflow mode ``throw``.

>>> decide(["SelectWithUnionQuery (children 3)", " ExpressionList (children 1)", "  SelectQuery (children 1)",
...         "   ExpressionList (children 1)", "    Literal UInt64_1", " Literal '/tmp/x'", " Identifier Native"],
...        EngineFacts.offline())  # doctest: +NORMALIZE_WHITESPACE
Traceback (most recent call last):
...
sinks.query.QueryRefused: INTO OUTFILE is not allowed (it writes a file on the ClickHouse host);
remove it and read the rows from the answer
"""

from __future__ import annotations

import io
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sinks.clickhouse import READ_SETTINGS

# Table functions a read may use: local generators that touch no file, URL, server or process.
TABLE_FUNCTIONS = frozenset(
    {"numbers", "numbers_mt", "zeros", "zeros_mt", "generateseries", "generate_series", "values"}
)

# Engines of tables a read may name (system tables are System*; *MergeTree is matched by suffix).
LOCAL_ENGINES = frozenset(
    {"Memory", "View", "MaterializedView", "Log", "TinyLog", "StripeLog", "Null", "Set", "Join", "Buffer"}
)

# Statement kinds (the root node of EXPLAIN AST) that read.
SELECTS = frozenset({"SelectWithUnionQuery", "SelectIntersectExceptQuery", "SelectQuery"})
READS = SELECTS | frozenset(
    {
        "ShowTables",
        "ShowColumns",
        "ShowCreateTableQuery",
        "ShowCreateViewQuery",
        "ShowCreateDatabaseQuery",
        "ShowCreateDictionaryQuery",
        "DescribeQuery",
        "Explain",
        "ExistsTableQuery",
        "ExistsDatabaseQuery",
        "ExistsViewQuery",
        "ExistsDictionaryQuery",
    }
)
# Nodes that carry output options: INTO OUTFILE is a Literal child, FORMAT the last Identifier child.
_WITH_OUTPUT = re.compile(r"^(?:SelectWithUnionQuery|Explain|Show\w*|Describe\w*|Exists\w*|ParallelWithQuery)$")
_HOW = "Only one read statement (SELECT, WITH … SELECT, SHOW, DESCRIBE, EXPLAIN SELECT) is allowed"


class QueryRefused(ValueError):
    """The statement is not a single read that stays inside the local database."""


@dataclass(slots=True)
class Node:
    """One line of ``EXPLAIN AST``: its kind (first word), the rest, and its children."""

    kind: str
    text: str
    depth: int
    declared: int
    children: list[Node] = field(default_factory=list)
    parent: Node | None = None


@dataclass(frozen=True, slots=True)
class EngineFacts:
    """What the engine knows about names (lower-cased): table functions, scalar functions, UDFs."""

    table_functions: frozenset[str]
    scalar_functions: frozenset[str]
    user_functions: frozenset[str]

    @classmethod
    def load(cls, client: Any) -> EngineFacts:
        tf = {r[0].lower() for r in client.query("SELECT name FROM system.table_functions").result_rows}
        fn = client.query("SELECT name, origin FROM system.functions").result_rows
        return cls(
            frozenset(tf),
            frozenset(n.lower() for n, _ in fn),
            frozenset(n.lower() for n, o in fn if str(o) != "System"),
        )

    @classmethod
    def offline(cls) -> EngineFacts:
        """A minimal set for doctests (the gate always loads the engine's own lists)."""
        return cls(
            frozenset({"file", "url", "remote", "numbers", "format"}), frozenset({"file", "format"}), frozenset()
        )


_FACTS: dict[int, EngineFacts] = {}
_FACTS_LOCK = threading.Lock()


def _facts(client: Any) -> EngineFacts:
    with _FACTS_LOCK:
        f = _FACTS.get(id(client))
    if f is None:
        f = EngineFacts.load(client)
        with _FACTS_LOCK:
            _FACTS[id(client)] = f
    return f


def parse_tree(lines: Sequence[str]) -> Node:
    """The tree of ``EXPLAIN AST`` lines (one space of indentation per level).

    Refuses output it cannot read unambiguously: more than one root, a level skipped, or a node
    whose ``(children N)`` disagrees with what follows it (a line break inside a name does that).
    """
    root: Node | None = None
    stack: list[Node] = []
    for line in lines:
        body = line.lstrip(" ")
        depth = len(line) - len(body)
        m = re.search(r"\s\(children (\d+)\)$", body)
        node = Node(body.split(" ", 1)[0], body, depth, int(m.group(1)) if m else 0)
        if depth == 0:
            if root is not None:
                raise QueryRefused(
                    "the statement's parse tree has two roots; names with line breaks are not "
                    "accepted: rename the column or alias"
                )
            root = node
        else:
            if depth > len(stack):
                raise QueryRefused("the statement's parse tree could not be read; remove line breaks from names")
            node.parent = stack[depth - 1]
            node.parent.children.append(node)
        del stack[depth:]
        stack.append(node)
    if root is None:
        raise QueryRefused(f"no statement found. {_HOW}")
    todo = [root]
    while todo:
        n = todo.pop()
        if len(n.children) != n.declared:
            raise QueryRefused("the statement's parse tree could not be read; remove line breaks from names")
        todo.extend(n.children)
    return root


def _walk(node: Node):
    yield node
    for c in node.children:
        yield from _walk(c)


def _function_name(node: Node) -> str:
    rest = node.text[len("Function ") :]
    return re.sub(r"\s\((?:alias .*|children \d+)\)$", "", rest).split(" (alias ")[0].strip()


def decide(lines: Sequence[str], facts: EngineFacts) -> Node:
    """The root of the parse tree if ``lines`` (``EXPLAIN AST``) is one allowed read; else QueryRefused."""
    root = parse_tree(lines)
    if root.kind not in READS:
        raise QueryRefused(f"{_statement_name(root)} is not a read. {_HOW}; writes go through riskwatch itself")
    if root.kind == "Explain":
        inner = root.children[0] if root.children else None
        if inner is None or inner.kind not in SELECTS:
            what = _statement_name(inner) if inner else "nothing"
            raise QueryRefused(f"EXPLAIN is allowed for SELECT only, not for {what}; explain the SELECT part")
    for n in _walk(root):
        if n.kind == "Set":
            raise QueryRefused(
                "SETTINGS in the statement are not allowed (the read limits are fixed); remove the SETTINGS clause"
            )
        if _WITH_OUTPUT.match(n.kind):
            _check_output_options(n)
        if n.kind == "Function":
            _check_function(n, facts)
    return root


def _check_output_options(node: Node) -> None:
    if any(c.kind == "Literal" for c in node.children):
        raise QueryRefused(
            "INTO OUTFILE is not allowed (it writes a file on the ClickHouse host); remove it "
            "and read the rows from the answer"
        )
    last = node.children[-1] if node.children else None
    if last is not None and last.kind == "Identifier" and last.text != "Identifier Native":
        raise QueryRefused("a FORMAT clause is not allowed (the answer's format is fixed); remove it")


def _statement_name(node: Node) -> str:
    kind = node.kind.removesuffix("Query")
    return {
        "Insert": "INSERT",
        "Alter": "ALTER",
        "Drop": "DROP/DETACH/TRUNCATE",
        "Create": "CREATE",
        "Set": "SET",
        "System": "SYSTEM",
        "KillQuery": "KILL",
        "Optimize": "OPTIMIZE",
        "Rename": "RENAME",
    }.get(kind, kind)


def _check_function(node: Node, facts: EngineFacts) -> None:
    name = _function_name(node)
    low = name.lower()
    as_table = node.parent is not None and node.parent.kind in ("TableExpression", "Storage")
    if low in TABLE_FUNCTIONS:
        return
    if low in facts.table_functions and (as_table or low not in facts.scalar_functions):
        allowed = ", ".join(sorted({"numbers", "zeros", "generateSeries", "values"}))
        raise QueryRefused(
            f"table function {name}() is not allowed (it can reach files, URLs, other servers or "
            f"processes); read riskwatch's tables, or use {allowed}"
        )
    if low == "file":
        raise QueryRefused("file() is not allowed (it reads a file on the ClickHouse host); read riskwatch's tables")
    if low.startswith("dict"):
        raise QueryRefused(
            f"{name}() is not allowed (a dictionary's source can be a file, a URL or a process); join the table instead"
        )
    if low in facts.user_functions:
        raise QueryRefused(f"user-defined function {name}() is not allowed here; use built-in functions")


def _tables(root: Node) -> set[str]:
    return {
        n.text.split(" ", 1)[1].split(" (alias ")[0]
        for n in _walk(root)
        if n.kind == "TableIdentifier" and " " in n.text
    }


def _check_engines(client: Any, root: Node) -> None:
    names = sorted(_tables(root))
    if not names:
        return
    rows = client.query(
        "SELECT database, name, engine FROM system.tables WHERE name IN {n:Array(String)} "
        "OR concat(database, '.', name) IN {n:Array(String)}",
        parameters={"n": names},
    ).result_rows
    for db, name, engine in rows:
        if db == "system" or engine.startswith("System") or engine.endswith("MergeTree") or engine in LOCAL_ENGINES:
            continue
        raise QueryRefused(
            f"table {db}.{name} has engine {engine}, which reads outside the database "
            "(files, URLs, other servers); it cannot be queried here"
        )


@dataclass(frozen=True, slots=True)
class Gated:
    """A statement the gate let through: the engine's canonical text and the kind of its root."""

    statement: str
    kind: str


def gate(client: Any, sql: str, params: dict | None = None) -> Gated:
    """Ask the engine behind ``client`` to parse ``sql``; :class:`Gated` if it is one allowed read, else QueryRefused.

    ``params`` are values for server-side ``{name:Type}`` placeholders (they stay values: never SQL).
    """
    if not sql or not sql.strip():
        raise QueryRefused(f"empty query. {_HOW}")
    if "\x00" in sql:
        raise QueryRefused("the statement contains a NUL byte; remove it")
    try:
        canonical = client.query(
            f"SELECT formatQuerySingleLine(unhex('{sql.encode().hex()}'))", settings={"readonly": 1}
        ).result_rows[0][0]
    except Exception as e:  # noqa: BLE001 - the parser's own message, one line
        msg = re.sub(r"\s*:?\s*In scope SELECT formatQuerySingleLine.*?(?=\(SYNTAX_ERROR\)|$)", " ", str(e), flags=re.S)
        raise QueryRefused(f"ClickHouse cannot parse it: {engine_error_line(msg, 300).rstrip('. ')}. {_HOW}") from None
    try:
        # no settings here: the chdb interface appends them to the text as a SETTINGS clause (a Set node)
        lines = [r[0] for r in client.query(f"EXPLAIN AST {canonical}", parameters=params or None).result_rows]
    except Exception as e:  # noqa: BLE001
        raise QueryRefused(
            f"it is not a read (ClickHouse has no parse tree to show for it: {engine_error_line(e, 200)}). {_HOW}"
        ) from None
    root = decide(lines, _facts(client))
    _check_engines(client, root)
    return Gated(canonical, root.kind)


_CH_ERROR = re.compile(
    r"Code:\s*(\d+)\.\s*(?:DB::Exception:\s*)?(.*?)(?:\s*\(([A-Z][A-Z0-9_]+)\))?(?:\s*\(version [^)]*\))?\s*$", re.S
)
_HINTS = {
    "READONLY": "queries run with readonly=1, so writes and settings changes are refused",
    "UNKNOWN_TABLE": "`riskwatch query 'SHOW TABLES FROM riskwatch'` lists the tables",
    "UNKNOWN_DATABASE": "the tables are in the database riskwatch (RISKWATCH_CLICKHOUSE_DATABASE)",
    "TIMEOUT_EXCEEDED": "narrow the query (a WHERE on time, a LIMIT)",
    "TOO_MANY_ROWS_OR_BYTES": "add a LIMIT or aggregate (reads return at most 500,000 rows / 200 MB)",
    "MEMORY_LIMIT_EXCEEDED": "narrow the query (reads may use at most 2 GB)",
}


def engine_error_line(err: BaseException | str, limit: int = 400) -> str:
    """One readable line for a ClickHouse error (no traceback, no stack, whitespace collapsed).

    >>> print(engine_error_line("Code: 164. DB::Exception: default: Cannot execute query in readonly mode. (READONLY)"))
    ... # doctest: +NORMALIZE_WHITESPACE
    ClickHouse refused it (READONLY, code 164): default: Cannot execute query in readonly mode.
    Hint: queries run with readonly=1, so writes and settings changes are refused
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


def execute_readonly(
    client: Any, statement: str, *, limit: int | None = None, params: dict | None = None
) -> tuple[list[str], list[tuple]]:
    """Run an already gated ``statement`` with :data:`READ_SETTINGS`; ``(columns, rows)``.

    With ``limit``, at most that many rows are returned (the engine stops early, overflow mode break).
    """
    settings = dict(READ_SETTINGS)
    if limit is not None:
        settings.update(max_result_rows=limit, result_overflow_mode="break")
    result = client.query(statement, parameters=params or None, settings=settings)
    rows = result.result_rows
    if limit is not None:
        rows = rows[:limit]
    return list(result.column_names), list(rows)


def run_read_query(
    client: Any, sql: str, params: dict | None = None, *, limit: int | None = None
) -> tuple[list[str], list[tuple]]:
    """The whole gate: ``params`` bound by clickhouse-connect (``%(name)s`` quoted client-side,
    ``{name:Type}`` sent as server-side values), :func:`gate`, then :func:`execute_readonly` of the
    engine's canonical statement."""
    server_params = None
    if params:
        from clickhouse_connect.driver.binding import bind_query

        bound, server = bind_query(sql, params)
        if isinstance(bound, str):
            sql, server_params = bound, (params if server else None)
    g = gate(client, sql, server_params)
    return execute_readonly(client, g.statement, limit=limit, params=server_params)


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
