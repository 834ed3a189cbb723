"""Export the JSON Schema of every event and of the alert/dead-letter payloads to ``schemas/json``.

Departments validate what they consume against these files. ``riskwatch schemas export`` runs
this; a test fails when the committed files are out of date.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from schemas.events import EVENT_MODELS, Alert, AlertTransition, DeadLetter, InspectionPlan, SensorBatch, SilenceSpec

OUT_DIR = Path(__file__).parent / "json"


def all_schemas() -> dict[str, dict[str, Any]]:
    out = {f"{topic}.schema.json": model.model_json_schema() for topic, model in EVENT_MODELS.items()}
    out["events.sensor.batch.schema.json"] = SensorBatch.model_json_schema()  # a gateway's batch, also on events.sensor
    out["alerts.schema.json"] = Alert.model_json_schema()
    out["deadletter.schema.json"] = DeadLetter.model_json_schema()
    out["alerts.events.schema.json"] = AlertTransition.model_json_schema()
    out["control.silences.schema.json"] = SilenceSpec.model_json_schema()
    out["inspection.plans.schema.json"] = InspectionPlan.model_json_schema()
    return out


def export(out_dir: Path = OUT_DIR) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in all_schemas().items():
        p = out_dir / name
        p.write_text(json.dumps(schema, ensure_ascii=False, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        written.append(p)
    return written


if __name__ == "__main__":
    for p in export():
        print(p)
