"""The ``peers`` agent: township and entity-kind rates, keyed by group, not by entity.

Group state is keyed by something other than the input topics' key, so it is reached through a
``group_by`` repartition (never through shared memory): the entity agent sums its peer signals
per (group, hour) in :class:`streams.engine.peer_counts.PeerCounts`, the commit sends them to ``peer.signals``, and one
worker owns each group's :class:`detectors.rates.PeerRates`. A township surge (many entities of
one town at once) becomes a notice to the market regulator and the task-force office.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import orjson

from detectors.rates import PeerRates
from streams.runtime.worker import Worker

log = logging.getLogger(__name__)


def register(w: Worker) -> None:
    if not w.settings.township_surges:
        return
    settings, catalog, peers, notices = w.settings, w.county.catalog, w.peers, w.topics.notices

    async def peer_agent(stream):
        async for raw_sig in stream.group_by(lambda v: orjson.loads(v)["group"].encode(), name="group"):
            sig = orjson.loads(raw_sig)
            g = sig["group"].encode()
            try:
                pr = PeerRates.loads(peers.get(g))
            except ValueError as e:  # not a state this version reads: the group restarts (one line says so)
                log.error("peer rates of %r not read: %s; the group starts empty, its next write replaces it", g, e)
                pr = PeerRates()
            pr.learn_one(sig["group"], sig["t"], n=sig["n"], entities=sig["entities"])
            last = getattr(pr, "notified_at", 0.0)
            if sig["n"] and sig["group"].startswith("town:") and sig["t"] - last > 86400:
                s = pr.score_one(sig["group"], sig["t"])
                if s >= settings.township_surge_threshold:
                    pr.notified_at = sig["t"]
                    town = sig["group"][5:]
                    await notices.send(
                        key=g,
                        value=orjson.dumps(
                            {
                                "kind": "township_surge",
                                "entity_id": "",
                                "township": town,
                                "score": round(s, 4),
                                "departments": [catalog.items[1].lead, catalog.taskforce_office],
                                "text": f"{town}近期投诉和视频违规明显增多(异常度{s:.2f}),请关注辖区内主体。",
                                "at": datetime.fromtimestamp(sig["t"], tz=UTC).isoformat(),
                            }
                        ),
                    )
            peers[g] = pr.dumps()

    w.app.agent(w.topics.peer_signals, name="peers")(peer_agent)
