"""The README stays short with its two set-up commands, docs/events.md has a valid example of every
event kind, and the exported JSON Schemas are current."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from riskwatch.domain.catalog import load_catalog
from schemas.events import EVENT_MODELS
from schemas.export import all_schemas

ROOT = Path(__file__).resolve().parent.parent


README_MAX_BYTES = 14_000
SETUP_COMMANDS = ["make demo", "make test"]


def _event_examples() -> dict[str, str]:
    text = (ROOT / "docs" / "events.md").read_text(encoding="utf-8")
    return dict(re.findall(r"### (events\.\w+)\n```json\n(.*?)\n```", text, flags=re.S))


def test_events_doc_has_one_valid_example_per_event_kind():
    examples = _event_examples()
    assert set(examples) == set(EVENT_MODELS), f"docs/events.md examples: missing {set(EVENT_MODELS) - set(examples)}"
    cat = load_catalog()
    for topic, body in examples.items():
        ev = EVENT_MODELS[topic].model_validate_json(body, context={"catalog": cat})
        assert ev.entity_id == "E000123"


def test_readme_is_short_with_exactly_two_setup_commands():
    """A newcomer's page: at most 14,000 bytes, and a fresh machine needs `make demo` and `make test`, nothing else."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.encode("utf-8")) <= README_MAX_BYTES, "README.md is too long: move detail to docs/"
    quick = text.split("\n## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", quick, flags=re.S)
    commands = [line.split("#")[0].strip() for b in blocks for line in b.splitlines() if line.split("#")[0].strip()]
    assert commands == SETUP_COMMANDS
    shell = "\n".join(re.findall(r"```(?:sh|bash)\n(.*?)```", text, flags=re.S))
    assert re.findall(r"^make \w+", shell, flags=re.M) == SETUP_COMMANDS


def test_readme_links_resolve_and_reach_the_event_examples():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = {t.split("#")[0] for t in re.findall(r"\]\(([^)]+)\)", text) if "://" not in t}
    assert "docs/events.md" in targets
    assert not [t for t in targets if not (ROOT / t).exists()]


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
    assert not bad, (
        "docs/walkthrough.md links that drifted (`python -m riskwatch.tools.walkthrough_anchors` moves them):\n"
        + "\n".join(bad)
    )
