"""The layout shows the architecture, and the imports follow it.

Every module's imports (module level and inside functions; doctest lines are strings, not imports)
are parsed with :mod:`ast`. Layers, lowest first::

    schemas ← detectors ← riskwatch.domain, riskwatch.settings ← streams.engine ← streams.runtime → sinks

- ``sinks`` may import only ``schemas`` and ``riskwatch.settings``;
- ``streams.engine`` (the pure engine) may import schemas, detectors, domain and settings — not sinks,
  not the runtime, and no Kafka or Faust library (``faust``, ``mode``, ``aiokafka``, ``kafka``);
- ``streams.runtime`` (the Faust runtime) and the rest of ``streams`` (``streams.citylink``) may import
  everything of the product (the engine, schemas, detectors, domain, settings, sinks);
- front ends (``riskwatch.cli``, ``web``, ``edge``, ``notify``, ``dashboards``, ``reports``) may import the
  product; product packages never import ``riskwatch.tools``, ``riskwatch.cli`` or a front end;
- tools (``riskwatch.tools``) may import the product and front ends, never ``riskwatch.cli``;
- no import cycle between modules, at any level.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOP = ("schemas", "detectors", "riskwatch", "streams", "sinks", "dashboards", "reports", "web", "notify", "edge")
FRONT_ENDS = ("riskwatch.cli", "web", "notify", "dashboards", "reports", "edge")

STREAMS = ("streams", "streams.engine", "streams.runtime")
# layer -> the layers it may import (besides itself)
ALLOWED: dict[str, set[str]] = {
    "schemas": set(),
    "detectors": {"schemas"},
    "riskwatch.settings": set(),
    "riskwatch.domain": {"schemas", "detectors", "riskwatch.settings"},
    "riskwatch": {"riskwatch.settings"},  # the package's own __init__
    "sinks": {"schemas", "riskwatch.settings"},
    "streams.engine": {"schemas", "detectors", "riskwatch.domain", "riskwatch.settings", "riskwatch"},
    "streams.runtime": {
        "schemas",
        "detectors",
        "riskwatch.domain",
        "riskwatch.settings",
        "riskwatch",
        "sinks",
        "streams.engine",
    },
    "streams": {
        "schemas",
        "detectors",
        "riskwatch.domain",
        "riskwatch.settings",
        "riskwatch",
        "sinks",
        "streams.engine",
    },  # streams.citylink: beside the runtime
    "front end": {
        "schemas",
        "detectors",
        "riskwatch.domain",
        "riskwatch.settings",
        "riskwatch",
        "sinks",
        *STREAMS,
        "front end",
    },
    "riskwatch.tools": {
        "schemas",
        "detectors",
        "riskwatch.domain",
        "riskwatch.settings",
        "riskwatch",
        "sinks",
        *STREAMS,
        "front end",
    },
    "riskwatch.cli": {
        "schemas",
        "detectors",
        "riskwatch.domain",
        "riskwatch.settings",
        "riskwatch",
        "sinks",
        *STREAMS,
        "front end",
        "riskwatch.tools",
    },
}
# third-party libraries the pure engine must not import (it runs and is tested without Kafka)
ENGINE_FORBIDDEN = ("faust", "mode", "aiokafka", "kafka")


def layer(module: str) -> str:
    for prefix in (
        "riskwatch.cli",
        "riskwatch.tools",
        "riskwatch.domain",
        "riskwatch.settings",
        "streams.engine",
        "streams.runtime",
    ):
        if module == prefix or module.startswith(prefix + "."):
            return prefix
    top = module.split(".")[0]
    if top in ("web", "notify", "dashboards", "reports", "edge"):
        return "front end"
    return top


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def modules() -> dict[str, Path]:
    out = {}
    for top in TOP:
        base = ROOT / top
        if base.is_dir():
            for path in sorted(base.rglob("*.py")):
                if "__pycache__" not in path.parts:
                    out[_module_name(path)] = path
    return out


def _resolve(name: str) -> str | None:
    """The project module an imported name lives in (``a.b.c`` → ``a.b`` if ``c`` is not a module)."""
    mods = modules()
    while name:
        if name in mods:
            return name
        name = name.rpartition(".")[0]
    return None


@cache
def imports(module: str) -> dict[str, int]:
    """Project modules that ``module`` imports -> first line, module level or inside functions."""
    path = modules()[module]
    is_pkg = path.name == "__init__.py"
    found: dict[str, int] = {}
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = module.split(".") if is_pkg else module.split(".")[:-1]
                pkg = pkg[: len(pkg) - (node.level - 1)]
                base = ".".join(pkg + ([base] if base else []))
            names = [f"{base}.{a.name}" for a in node.names] + [base]
        for n in names:
            target = _resolve(n)
            if target and target != module and not module.startswith(target + "."):  # a package's own __init__
                assert isinstance(node, ast.Import | ast.ImportFrom)  # names come only from imports
                found.setdefault(target, node.lineno)
    return found


def test_layout_has_the_architecture_folders():
    for d in (
        "schemas",
        "detectors",
        "riskwatch/domain",
        "riskwatch/cli",
        "riskwatch/tools",
        "riskwatch/data",
        "streams",
        "sinks",
        "dashboards",
        "reports",
        "deploy",
        "docs",
        "tests",
    ):
        assert (ROOT / d).is_dir(), d
    assert len(modules()) > 50  # the walk found the code


def test_no_upward_import():
    bad = []
    for mod in modules():
        src = layer(mod)
        for target, line in imports(mod).items():
            dst = layer(target)
            if dst != src and dst not in ALLOWED[src]:
                bad.append(f"{modules()[mod].relative_to(ROOT)}:{line} ({src}) imports {target} ({dst})")
    assert not bad, "upward or sideways imports:\n" + "\n".join(bad)


@cache
def third_party(module: str) -> dict[str, int]:
    """Top-level names of the non-project modules that ``module`` imports -> first line (any level)."""
    path = modules()[module]
    found: dict[str, int] = {}
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names = [node.module]
        else:
            continue
        for n in names:
            found.setdefault(n.split(".")[0], node.lineno)
    return found


def test_the_engine_imports_no_kafka_or_faust_library():
    engine = [m for m in modules() if layer(m) == "streams.engine"]
    assert len(engine) > 10  # the walk found the engine
    bad = [
        f"{modules()[m].relative_to(ROOT)}:{line} imports {name}"
        for m in engine
        for name, line in third_party(m).items()
        if name in ENGINE_FORBIDDEN
    ]
    assert not bad, "the engine must not import Kafka or Faust libraries:\n" + "\n".join(bad)


def test_no_import_cycle():
    graph = {m: set(imports(m)) for m in modules()}
    cycles, state, stack = [], {}, []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                cycles.append(" → ".join(stack[stack.index(n) :] + [n]))
            elif n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_checker_sees_function_level_and_relative_imports(tmp_path):
    """The walk counts an import inside a function and a relative import, not a doctest line."""
    src = 'def f():\n    """\n    >>> import riskwatch.tools\n    """\n    from riskwatch.cli import main\n'
    tree = ast.parse(src)
    seen = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert [getattr(n, "module", None) for n in seen] == ["riskwatch.cli"]
    assert layer("riskwatch.tools.simulator.streams") == "riskwatch.tools" and layer("web.pages") == "front end"
    assert "riskwatch.tools" not in ALLOWED["streams"] and "riskwatch.cli" not in ALLOWED["riskwatch.tools"]
    assert (
        layer("streams.engine.handlers.sensor") == "streams.engine"
        and layer("streams.runtime.app") == "streams.runtime"
    )
    assert layer("streams.citylink") == "streams" and "streams.runtime" not in ALLOWED["streams.engine"]
    assert "sinks" not in ALLOWED["streams.engine"]
    src = "def f():\n    from faust.types import TP\nimport kafka.admin\n"
    names = {
        n.split(".")[0]
        for node in ast.walk(ast.parse(src))
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for n in ([a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""])
    }
    assert names <= set(ENGINE_FORBIDDEN) and names == {"faust", "kafka"}
