"""The README's example payloads are valid events, and the exported JSON Schemas are current."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from riskwatch.domain.catalog import load_catalog
from schemas.events import EVENT_MODELS
from schemas.export import all_schemas

ROOT = Path(__file__).resolve().parent.parent


def _readme_examples() -> dict[str, str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return dict(re.findall(r"### (events\.\w+)\n```json\n(.*?)\n```", text, flags=re.S))


def test_readme_has_one_valid_example_per_event_kind():
    examples = _readme_examples()
    assert set(examples) == set(EVENT_MODELS)
    cat = load_catalog()
    for topic, body in examples.items():
        ev = EVENT_MODELS[topic].model_validate_json(body, context={"catalog": cat})
        assert ev.entity_id == "E000123"


@pytest.mark.parametrize("name", sorted(all_schemas()))
def test_exported_json_schemas_are_current(name):
    on_disk = json.loads((ROOT / "schemas" / "json" / name).read_text(encoding="utf-8"))
    assert on_disk == all_schemas()[name], f"schemas/json/{name} is stale: run `riskwatch schemas export`"


def test_walkthrough_links_point_at_what_they_name():
    """docs/walkthrough.md links each step to a file, most with a line anchor; the anchored line
    must hold the function or class the link names (update the anchor when code moves)."""
    doc = (ROOT / "docs" / "walkthrough.md").read_text(encoding="utf-8")
    links = re.findall(r"\[`?([^\]]*?)`?\]\((\.\./[^)#]+)(?:#L(\d+))?\)", doc)
    assert len(links) > 30
    bad = []
    for label, path, line in links:
        target = (ROOT / "docs" / path).resolve()
        if not target.exists():
            bad.append(f"{path}: no such file")
            continue
        if line and target.is_file():
            name = label.split(",")[-1].strip().strip("`").split(".")[-1]
            text = target.read_text(encoding="utf-8").splitlines()[int(line) - 1]
            if not re.search(rf"\b(def|class)\s+{re.escape(name)}\b", text):
                bad.append(f"{path}#L{line} should show {name}, shows: {text.strip()[:60]}")
    assert not bad, ("docs/walkthrough.md links that drifted (`python -m riskwatch.tools.walkthrough_anchors` moves them):\n"
                     + "\n".join(bad))
