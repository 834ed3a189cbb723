"""The benchmark's peer: a Quix Streams app doing riskwatch's sensor detection, nothing else.

``python -m riskwatch.tools.bench.peer --topic T --alerts A --readings N`` consumes ``events.sensor``
(single readings and gateway batches alike), runs riskwatch's production
:class:`detectors.sensor.SensorAnomaly` per sensor stream (``device_id:channel``) with its state in
Quix's RocksDB state store (per message key = entity_id, changelog-backed), and sends an alert to
topic ``A`` when the detector alerts. It prints one JSON line
``{"peer_readings_eps": ..., "peer_messages_eps": ..., "cpu_us_per_reading": ...}`` once ``N`` readings
were processed, and exits.

It needs ``quixstreams`` (pinned in ``riskwatch/tools/bench/peer-requirements.txt``), which pins
pydantic below the version riskwatch uses: ``riskwatch bench --peer`` runs it in its own virtual
environment (``var/bench/peer-venv``, made on first use) with the project root on ``PYTHONPATH``
(``detectors/sensor.py`` needs only the standard library). Production never imports it.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import sys
import time
import uuid
from datetime import datetime


def _ts(s: str) -> float:
    return datetime.fromisoformat(s).timestamp()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--topic", required=True, help="the events.sensor topic (full name)")
    ap.add_argument("--alerts", required=True, help="topic for the peer's alerts (full name)")
    ap.add_argument("--readings", type=int, required=True, help="stop after this many readings")
    ap.add_argument("--bootstrap", default=os.environ.get("RISKWATCH_KAFKA_BOOTSTRAP", "127.0.0.1:19092"))
    ap.add_argument("--state-dir", default=None)
    a = ap.parse_args(argv)

    from quixstreams import Application
    from quixstreams.engine.state.rocksdb import RocksDBOptions

    from detectors.sensor import SensorAnomaly

    dumps = lambda obj: pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)  # noqa: E731
    app = Application(
        broker_address=a.bootstrap,
        consumer_group=f"riskwatch-peer-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        state_dir=a.state_dir or f"/tmp/riskwatch-peer-{uuid.uuid4().hex[:8]}",
        rocksdb_options=RocksDBOptions(dumps=dumps, loads=pickle.loads),
        loglevel="WARNING",
    )
    src = app.topic(a.topic, value_deserializer="json", key_deserializer="bytes")
    dst = app.topic(a.alerts, value_serializer="json", key_serializer="bytes")
    seen: dict[str, float] = {"readings": 0, "messages": 0}

    def detect(value: dict, state) -> list[dict]:
        if not seen["messages"]:
            seen["t0"], seen["c0"] = time.perf_counter(), time.process_time()
        seen["messages"] += 1
        readings = value["readings"] if value.get("kind") == "sensor_batch" else (value,)
        alerts = []
        for r in readings:
            k = f"{r['device_id']}:{r['channel']}"
            det = state.get(k)
            if det is None:
                det = SensorAnomaly()
            score, alert = det.update(float(r["value"]), _ts(r["occurred_at"]))
            state.set(k, det)
            if alert:
                alerts.append(
                    {"entity_id": value.get("entity_id"), "stream": k, "score": score, "event_id": r["event_id"]}
                )
        seen["readings"] += len(readings)
        if seen["readings"] >= a.readings:
            secs, cpu = time.perf_counter() - seen["t0"], time.process_time() - seen["c0"]
            print(
                json.dumps(
                    {
                        "peer_readings_eps": round(seen["readings"] / secs),
                        "peer_messages_eps": round(seen["messages"] / secs),
                        "cpu_us_per_reading": round(cpu / seen["readings"] * 1e6, 1),
                        "readings": seen["readings"],
                    }
                ),
                flush=True,
            )
            app.stop()
        return alerts

    sdf = app.dataframe(src)
    sdf = sdf.apply(detect, stateful=True, expand=True)
    sdf.to_topic(dst)
    app.run()


if __name__ == "__main__":
    main(sys.argv[1:])
