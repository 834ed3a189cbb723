"""The query gate (sinks/query.py) against ClickHouse's own grammar, in a real chDB engine.

* A hypothesis property: statements mixing every quoting, string, comment and identifier form of
  ClickHouse's SQL (single quotes with ``''`` and ``\\'`` escapes, ``$$heredoc$$`` and
  ``$tag$heredoc$tag$``, backticks, double-quoted identifiers, ``--``, ``#``, nested ``/* */``)
  with writes (INSERT, ALTER, DROP, CREATE, SYSTEM, KILL, OPTIMIZE, SET, GRANT …), file access
  (INTO OUTFILE, file(), FORMAT with file settings), URLs and remote servers. Whatever the gate
  passes is checked independently: the engine parses the ORIGINAL text as one statement, the
  statement that runs has a read at the root of its parse tree and no output option, SETTINGS,
  or function that reaches a file, URL, server or process; running it leaves no file behind and
  changes no table.
* A corpus of known-bad statements (regression tests), among them ``SELECT 1 INTO OUTFILE``
  hidden by comments and multi-statement tricks: each is refused and writes nothing.

Run: ``pytest -q tests/test_query_gate.py`` (~1 min: 200 generated statements, one chDB engine).
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sinks.clickhouse import READ_SETTINGS, make_client
from sinks.query import TABLE_FUNCTIONS, QueryRefused, gate

READ_ROOTS = re.compile(
    r"^(SelectWithUnionQuery|SelectIntersectExceptQuery|ShowTables|ShowColumns|ShowCreate\w+Query|"
    r"DescribeQuery|Explain|Exists\w+Query)\b"
)
OUTPUT_NODES = re.compile(r"^(SelectWithUnionQuery|Explain|Show\w*|Describe\w*|Exists\w*)\b")


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    """One chDB engine for the module: a sentinel table, a directory that INTO OUTFILE would write to."""
    base = tmp_path_factory.mktemp("gate")
    client = make_client(f"chdb://{base / 'ch'}")
    client.command("CREATE TABLE IF NOT EXISTS default.t (a UInt64, s String) ENGINE = MergeTree ORDER BY a")
    client.command("INSERT INTO default.t VALUES (1, 'x')")
    out = base / "out"
    out.mkdir()
    tf = {r[0].lower() for r in client.query("SELECT name FROM system.table_functions").result_rows}
    scalar = {r[0].lower() for r in client.query("SELECT name FROM system.functions").result_rows}
    yield client, out, tf, scalar
    client.close()


def _state(client) -> tuple:
    tables = client.query(
        "SELECT database, name FROM system.tables WHERE database NOT IN ('system', "
        "'INFORMATION_SCHEMA', 'information_schema') ORDER BY ALL"
    ).result_rows
    return tuple(tables), client.query("SELECT count(), sum(a) FROM default.t").result_rows[0]


def independent_check(client, tf: set[str], scalar: set[str], original: str, statement: str) -> None:
    """What the gate passed is ONE read with no file, URL, server or process access (engine-checked)."""
    once = client.query("SELECT formatQuery({s:String})", parameters={"s": original}).result_rows[0][0]
    lines = [r[0] for r in client.query(f"EXPLAIN AST {statement}").result_rows]
    assert [r[0] for r in client.query(f"EXPLAIN AST {once}").result_rows] == lines, (once, statement)
    assert READ_ROOTS.match(lines[0]), lines[0]
    assert sum(1 for ln in lines if not ln.startswith(" ")) == 1, lines
    if lines[0].startswith("Explain"):
        assert re.match(r"^ (SelectWithUnionQuery|SelectIntersectExceptQuery)\b", lines[1]), lines
    parents: list[str] = []
    for ln in lines:
        body = ln.lstrip(" ")
        depth = len(ln) - len(body)
        del parents[depth:]
        parent = parents[-1] if parents else ""
        kind = body.split(" ", 1)[0]
        assert kind != "Set", f"SETTINGS passed: {statement}"
        if OUTPUT_NODES.match(parent):
            assert kind != "Literal", f"INTO OUTFILE passed: {statement}"
        if kind == "Function":
            name = body.split(" ")[1].lower()
            if parent.startswith("TableExpression"):
                assert name in TABLE_FUNCTIONS, f"table function {name} passed: {statement}"
            else:
                assert name not in tf - scalar and name != "file" and not name.startswith("dict"), statement
        parents.append(body)


def _run_and_check_nothing_written(client, out: Path, statement: str, before: tuple) -> None:
    with contextlib.suppress(Exception):  # an engine error is fine; a side effect is not
        client.query(statement, settings=READ_SETTINGS)
    assert list(out.iterdir()) == [], f"a file was written by {statement!r}"
    assert _state(client) == before, f"{statement!r} changed the database"


# --- the generator: pieces of ClickHouse's lexical grammar ------------------------------------------
def _outfile(out: Path) -> st.SearchStrategy[str]:
    return st.sampled_from(
        [
            f" INTO OUTFILE '{out}/a.csv'",
            f" INTO OUTFILE '{out}/b' AND STDOUT",
            f" INTO OUTFILE '{out}/c' TRUNCATE",
            f"\nINTO/* x */OUTFILE $${out}/d$$",
            f" INTO -- c\n OUTFILE '{out}/e' FORMAT CSV",
            f" INTO OUTFILE '{out}/f' APPEND",
            f" INTO OUTFILE '{out}/g.gz' COMPRESSION 'gzip'",
            f" into outfile '{out}/h'",
            f" INTO OUTFILE $x${out}/i$x$",
            f" INTO #c\nOUTFILE '{out}/j'",
            f" INTO OUTFILE '{out}/k' FORMAT Protobuf SETTINGS format_schema = '/etc/passwd:x'",
        ]
    )


COMMENTS = st.sampled_from(
    [
        "",
        " ",
        "\n",
        "-- c\n",
        "--c;DROP TABLE t\n",
        "# c\n",
        "#! c\n",
        "/* c */",
        "/* a /* nested */ b */",
        "/* ; DROP TABLE t; */",
        "/**/",
        "\t",
    ]
)
STRINGS = st.sampled_from(
    [
        "'a'",
        "'it''s'",
        "'a\\'b'",
        "'x; DROP TABLE t; --'",
        "$$a'b$$",
        "$tag$a;$$b$tag$",
        "'\\\\'",
        "'INTO OUTFILE'",
        "'/* x */'",
        "'-- x'",
        "'\\x41'",
        "'\\n'",
        "'中文'",
        "''",
        "'`'",
        "'\"'",
        "$$ INTO OUTFILE '/tmp/x' $$",
        "'file(''/etc/passwd'')'",
    ]
)
IDENTS = st.sampled_from(
    [
        "x",
        "`file`",
        '"url"',
        "`a``b`",
        '"a""b"',
        "`INTO`",
        "`select`",
        "_x1",
        "`中`",
        "`a;b`",
        '"a--b"',
        "`OUTFILE`",
        "remote",
        "`s3`",
    ]
)
TABLES = st.sampled_from(
    [
        "default.t",
        "t",
        "system.one",
        "`default`.`t`",
        '"default"."t"',
        "numbers(3)",
        "zeros(2)",
        "generateSeries(1, 3)",
        "values('a Int8', 1, 2)",
        "(SELECT 1 AS a)",
        "file('/etc/passwd', 'LineAsString')",
        "FILE('/etc/hostname')",
        "`file`('/etc/passwd')",
        "url('http://127.0.0.1:9/x', CSV, 'a Int')",
        "remote('127.0.0.1', system.one)",
        "remoteSecure('127.0.0.1', system.one)",
        "cluster('default', system.one)",
        "s3('http://127.0.0.1:9/b/x.csv')",
        "mysql('127.0.0.1:9', 'db', 't', 'u', 'p')",
        "postgresql('127.0.0.1:9', 'db', 't', 'u', 'p')",
        "jdbc('x', 'y')",
        "odbc('x', 'y', 'z')",
        "hdfs('hdfs://127.0.0.1:9/x', CSV, 'a Int')",
        "executable('id', TSV, 'a String')",
        "input('a Int')",
        "azureBlobStorage('x', 'y', 'z')",
        "iceberg('x')",
        "deltaLake('x')",
        "hudi('x')",
        "dictionary('d')",
        "merge('default', '.*')",
        "view(SELECT 1)",
        "loop(numbers(1))",
        "sqlite('/tmp/x.db', 't')",
        "mongodb('x', 'y', 'z', 'u', 'p', 'a Int')",
        "redis('x', 'k', 'k String')",
        "fileCluster('c', 'x')",
        "urlCluster('c', 'http://x')",
        "format(CSV, 'a\n1')",
    ]
)
EXPRS = st.one_of(
    STRINGS,
    IDENTS,
    st.sampled_from(
        [
            "1",
            "-1",
            "1e3",
            "0x1F",
            "NULL",
            "[1, 2]",
            "(1, 'a')",
            "a",
            "file('/etc/passwd')",
            "dictGet('d', 'a', 1)",
            "now()",
            "(SELECT count() FROM file('/etc/passwd'))",
            "format('{}', 1)",
            "getSetting('readonly')",
            "currentUser()",
        ]
    ),
)
WRITES = st.sampled_from(
    [
        "INSERT INTO t VALUES (2, 'y')",
        "INSERT INTO t SELECT 3, 'z'",
        "INSERT INTO FUNCTION file('/tmp/x.csv') SELECT 1",
        "ALTER TABLE t DELETE WHERE 1",
        "ALTER TABLE t UPDATE s = 'q' WHERE 1",
        "DROP TABLE t",
        "TRUNCATE TABLE t",
        "CREATE TABLE u (a Int8) ENGINE = Memory",
        "CREATE TABLE f ENGINE = File(CSV) AS SELECT 1",
        "CREATE VIEW v AS SELECT * FROM file('/etc/passwd')",
        "CREATE DICTIONARY d (a UInt64) PRIMARY KEY a "
        "SOURCE(FILE(path '/etc/passwd' format 'CSV')) LAYOUT(FLAT()) LIFETIME(0)",
        "SYSTEM FLUSH LOGS",
        "SYSTEM SHUTDOWN",
        "KILL QUERY WHERE 1",
        "OPTIMIZE TABLE t FINAL",
        "SET readonly = 0",
        "SET max_result_rows = 0",
        "GRANT ALL ON *.* TO default",
        "REVOKE ALL ON *.* FROM default",
        "RENAME TABLE t TO t2",
        "DETACH TABLE t",
        "ATTACH TABLE t",
        "EXCHANGE TABLES t AND u",
        "BACKUP TABLE t TO File('b')",
        "RESTORE TABLE t FROM File('b')",
        "USE system",
        "CREATE USER u",
        "DELETE FROM t WHERE 1",
        "UNDROP TABLE t",
        "CHECK TABLE t",
        "EXPLAIN INSERT INTO t SELECT 1, 'a'",
        "EXPLAIN AST DROP TABLE t",
        "SELECT 1 PARALLEL WITH INSERT INTO t VALUES (4, 'w')",
    ]
)


SAFE_TABLES = st.sampled_from(
    [
        "default.t",
        "t",
        "system.one",
        "`default`.`t`",
        '"default"."t"',
        "numbers(3)",
        "zeros(2)",
        "generateSeries(1, 3)",
        "values('a Int8', 1, 2)",
        "(SELECT 1 AS a)",
    ]
)
SAFE_EXPRS = st.one_of(
    STRINGS, IDENTS.filter(lambda i: i in ("x", "_x1")), st.sampled_from(["1", "NULL", "[1, 2]", "now()"])
)


@st.composite
def statements(draw, out: Path) -> str:
    """A statement; about a third are built from harmless pieces only (both sides of the gate get exercised)."""
    c = lambda: draw(COMMENTS)  # noqa: E731
    harmless = draw(st.integers(0, 2)) == 0
    table = draw(SAFE_TABLES if harmless else TABLES)
    exprs = SAFE_EXPRS if harmless else EXPRS
    cols = ", ".join(
        f"{draw(exprs)}{draw(st.sampled_from(['', ' AS ' + draw(IDENTS)]))}" for _ in range(draw(st.integers(1, 3)))
    )
    head = draw(
        st.sampled_from(
            [
                "SELECT",
                "select",
                "WITH 1 AS x SELECT",
                "SELECT DISTINCT",
                "EXPLAIN SELECT",
                "EXPLAIN PIPELINE SELECT",
                "EXPLAIN SYNTAX SELECT",
                "(SELECT",
            ]
        )
    )
    read = f"{head}{c()} {cols}{c()} FROM{c()} {table}"
    if head == "(SELECT":
        read += ")"
    read += draw(
        st.sampled_from(
            [
                "",
                " WHERE 1",
                f" WHERE {draw(EXPRS)} IN (SELECT 1)",
                " LIMIT 1",
                f" UNION ALL SELECT {draw(EXPRS)}",
                " JOIN file('/etc/passwd') USING a",
                " ORDER BY 1",
            ]
        )
    )
    other_reads = st.sampled_from(
        [
            "SHOW TABLES",
            "SHOW DATABASES",
            "SHOW CREATE TABLE t",
            "DESCRIBE TABLE t",
            "DESC t",
            "EXISTS TABLE t",
            "SHOW COLUMNS FROM t",
            "DESCRIBE file('/etc/passwd')",
            "DESCRIBE url('http://127.0.0.1:9/x')",
            "SHOW GRANTS",
            "SHOW PROCESSLIST",
        ]
    )
    if harmless:
        return f"{c()}{read}{c()}" + draw(st.sampled_from(["", ";", " ;", ";\n", "--x", "/* end */", "# tail"]))
    base = draw(st.one_of(st.just(read), other_reads, WRITES))
    tail = draw(
        st.sampled_from(
            [
                "",
                "",
                ";",
                " ;",
                ";\n",
                "; ",
                f";{c()}{draw(WRITES)}",
                f"\n;{draw(WRITES)};",
                f";{c()}SELECT 1",
                " FORMAT CSV",
                " FORMAT TSV",
                " SETTINGS readonly = 0",
                " SETTINGS max_execution_time = 0",
                " FORMAT Protobuf SETTINGS format_schema = '/etc/passwd:x'",
                " FORMAT CapnProto SETTINGS format_schema = '/etc/passwd:x'",
                "--x",
                "/* end */",
                "# tail",
                draw(_outfile(out)),
                draw(_outfile(out)) + ";",
                ";" + draw(_outfile(out)),
            ]
        )
    )
    return f"{c()}{base}{c()}{tail}"


@pytest.fixture(scope="module")
def passed_count():
    return {"passed": 0, "refused": 0}


def test_whatever_the_gate_passes_is_one_read_without_outside_access(engine, passed_count):
    client, out, tf, scalar = engine
    before = _state(client)

    @settings(
        max_examples=200,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )
    @given(statements(out))
    def prop(sql: str) -> None:
        try:
            g = gate(client, sql)
        except QueryRefused as e:
            passed_count["refused"] += 1
            assert "\n" not in str(e)
            _run_and_check_nothing_written(client, out, "SELECT 1", before)
            return
        passed_count["passed"] += 1
        independent_check(client, tf, scalar, sql, g.statement)
        _run_and_check_nothing_written(client, out, g.statement, before)

    prop()
    print(f"gate: {passed_count}")  # the generator reaches both sides of the gate
    assert passed_count["passed"] >= 20 and passed_count["refused"] >= 50, passed_count


BAD = [
    "SELECT 1 INTO OUTFILE '{out}/1'",
    "SELECT 1 /* c */ INTO /* c */ OUTFILE '{out}/2'",
    "SELECT 1 -- c\nINTO -- c\nOUTFILE '{out}/3'",
    "SELECT 1 # c\nINTO OUTFILE '{out}/4'",
    "SELECT 1 /* a /* nested */ b */ INTO OUTFILE '{out}/5'",
    "select 1 into outfile '{out}/6'",
    "SELECT 1 INTO OUTFILE $${out}/7$$",
    "SELECT 1 INTO OUTFILE $x${out}/8$x$",
    "SELECT 1 INTO OUTFILE '{out}/9' AND STDOUT",
    "SELECT 1 INTO OUTFILE '{out}/10' FORMAT CSV;",
    "SELECT * FROM (SELECT 1) INTO OUTFILE '{out}/11'",
    "WITH 1 AS x SELECT x INTO OUTFILE '{out}/12'",
    "SELECT 1 UNION ALL SELECT 2 INTO OUTFILE '{out}/13'",
    "EXPLAIN SELECT 1 INTO OUTFILE '{out}/14'",
    "SHOW TABLES INTO OUTFILE '{out}/15'",
    "DESCRIBE TABLE t INTO OUTFILE '{out}/16'",
    "SELECT 'INTO OUTFILE' INTO OUTFILE '{out}/17'",
    "SELECT 1; SELECT 1 INTO OUTFILE '{out}/18'",
    "SELECT 1 -- ; \n; DROP TABLE t",
    "SELECT 1; DROP TABLE t",
    "SELECT 1 /*;*/; DROP TABLE t",
    "SELECT ';'; DROP TABLE t",
    "SELECT $$;$$; DROP TABLE t",
    "SELECT 1; -- harmless?\n DROP TABLE t",
    "SELECT 1\n;\nINSERT INTO t VALUES (9, 'z')",
    "INSERT INTO t VALUES (9, 'z')",
    "INSERT INTO FUNCTION file('{out}/19') SELECT 1",
    "DROP TABLE t",
    "ALTER TABLE t DELETE WHERE 1",
    "CREATE TABLE f ENGINE = File(CSV) AS SELECT 1",
    "SYSTEM FLUSH LOGS",
    "KILL QUERY WHERE 1",
    "OPTIMIZE TABLE t",
    "SET readonly = 0",
    "GRANT ALL ON *.* TO default",
    "EXPLAIN INSERT INTO t SELECT 1, 'a'",
    "EXPLAIN AST DROP TABLE t",
    "EXPLAIN EXPLAIN SELECT 1 INTO OUTFILE '{out}/20'",
    "SELECT * FROM file('/etc/passwd', 'LineAsString')",
    "SELECT * FROM FILE('/etc/passwd')",
    "SELECT * FROM `file`('/etc/passwd')",
    "SELECT file('/etc/passwd')",
    "SELECT (SELECT count() FROM file('/etc/passwd'))",
    "SELECT * FROM t WHERE a IN (SELECT * FROM file('/etc/passwd'))",
    "SELECT * FROM t JOIN file('/etc/passwd') USING a",
    "DESCRIBE file('/etc/passwd')",
    "SELECT * FROM url('http://127.0.0.1:9/x', CSV, 'a Int')",
    "SELECT * FROM remote('127.0.0.1', system.one)",
    "SELECT * FROM remoteSecure('127.0.0.1', system.one)",
    "SELECT * FROM cluster('default', system.one)",
    "SELECT * FROM s3('http://127.0.0.1:9/b/x')",
    "SELECT * FROM mysql('127.0.0.1:9', 'd', 't', 'u', 'p')",
    "SELECT * FROM postgresql('127.0.0.1:9', 'd', 't', 'u', 'p')",
    "SELECT * FROM executable('id', TSV, 'a String')",
    "SELECT * FROM input('a Int')",
    "SELECT * FROM dictionary('d')",
    "SELECT dictGet('d', 'a', 1)",
    "SELECT * FROM merge('default', '.*')",
    "SELECT * FROM view(SELECT 1)",
    "SELECT * FROM iceberg('x')",
    "SELECT 1 FORMAT CSV",
    "SELECT 1 FORMAT Protobuf SETTINGS format_schema = '/etc/passwd:x'",
    "SELECT 1 SETTINGS readonly = 0",
    "SELECT 1 SETTINGS max_result_rows = 0",
    'SELECT 1 AS "a\nb"',
    "SELECT 1 PARALLEL WITH SELECT 2",
    "SHOW GRANTS",
    "/* only a comment */",
    "",
]


@pytest.mark.parametrize("sql", BAD)
def test_known_bad_statements_are_refused_and_write_nothing(engine, sql):
    client, out, _, _ = engine
    before = _state(client)
    sql = sql.replace("{out}", str(out))
    with pytest.raises(QueryRefused) as e:
        gate(client, sql)
    assert "\n" not in str(e.value) and str(e.value)
    assert list(out.iterdir()) == [] and _state(client) == before


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 'a;b' AS s;",
        "-- comment\nSELECT 1",
        "# c\nSELECT 1",
        "/* a /* b */ c */ SELECT 1",
        "WITH 1 AS x SELECT x",
        "SELECT $$INTO OUTFILE '/tmp/x'$$",
        "SELECT 1 AS `file`, 'url' AS \"remote\"",
        "SELECT * FROM numbers(3)",
        "SELECT * FROM generateSeries(1, 3)",
        "SELECT * FROM values('a Int8', 1, 2)",
        "SHOW TABLES",
        "SHOW DATABASES",
        "DESCRIBE TABLE t",
        "SHOW CREATE TABLE t",
        "EXISTS TABLE t",
        "EXPLAIN SELECT * FROM t",
        "EXPLAIN PIPELINE SELECT 1",
        "SELECT 1 UNION ALL SELECT 2",
        "SELECT format('{} {}', 1, 2)",
        "SELECT count() FROM t WHERE s IN (SELECT 'x')",
    ],
)
def test_reads_pass_and_run(engine, sql):
    client, out, tf, scalar = engine
    g = gate(client, sql)
    independent_check(client, tf, scalar, sql, g.statement)
    client.query(g.statement, settings=READ_SETTINGS)


def test_limits_throw_instead_of_truncating(engine):
    client, *_ = engine
    from sinks.query import run_read_query

    with pytest.raises(Exception, match="TOO_MANY_ROWS|Limit for result"):
        run_read_query(client, "SELECT number FROM numbers(600000)")
