"""Move the line anchors of ``docs/walkthrough.md`` to where the functions they name now are.

``python -m riskwatch.tools.walkthrough_anchors`` rewrites each ``[`file`, `name`](../file#Lnn)``
link whose line no longer holds ``def name``/``class name`` to the nearest line that does, and
prints the links it cannot place (the function was renamed or removed: edit those by hand).
``tests/test_docs.py`` fails while any anchor has drifted.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINK = re.compile(r"\[`?([^\]]*?)`?\]\((\.\./[^)#]+)(?:#L(\d+))?\)")


def defines(line: str, name: str) -> bool:
    return re.search(rf"\b(def|class)\s+{re.escape(name)}\b", line) is not None


def fix(doc: Path = ROOT / "docs" / "walkthrough.md") -> list[str]:
    """Rewrite drifted anchors in place; the links that could not be placed."""
    lost: list[str] = []

    def move(m: re.Match) -> str:
        label, path, line = m.groups()
        target = (doc.parent / path).resolve()
        if not line or not target.is_file():
            return m.group(0)
        name = label.split(",")[-1].strip().strip("`").split(".")[-1]
        lines = target.read_text(encoding="utf-8").splitlines()
        n = int(line)
        if n <= len(lines) and defines(lines[n - 1], name):
            return m.group(0)
        hits = [i + 1 for i, text in enumerate(lines) if defines(text, name)]
        if not hits:
            lost.append(f"{path}: no def/class {name}")
            return m.group(0)
        return m.group(0).replace(f"#L{line})", f"#L{min(hits, key=lambda h: abs(h - n))})")

    text = doc.read_text(encoding="utf-8")
    doc.write_text(LINK.sub(move, text), encoding="utf-8")
    return lost


if __name__ == "__main__":
    missing = fix()
    for m in missing:
        print(m, file=sys.stderr)
    sys.exit(1 if missing else 0)
