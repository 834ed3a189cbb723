"""The ``peers`` agent: township and entity-kind rates, keyed by group, not by entity.

Group state is keyed by something other than the input topics' key, so it is reached through a
``group_by`` repartition (never through shared memory): the entity agent sums its peer signals
per (group, hour) in :class:`PeerCounts`, the commit sends them to ``peer.signals``, and one
worker owns each group's :class:`detectors.rates.PeerRates`. A township surge (many entities of
one town at once) becomes a notice to the market regulator and the task-force office.
"""

from __future__ import annotations

from datetime import datetime, timezone

import orjson

from detectors.rates import PeerRates
from streams.worker import Worker


def register(w: Worker) -> None:
    if not w.settings.township_surges:
        return
    settings, catalog, peers, notices = w.settings, w.county.catalog, w.peers, w.topics.notices

    async def peer_agent(stream):
        async for raw_sig in stream.group_by(lambda v: orjson.loads(v)["group"].encode(), name="group"):
            sig = orjson.loads(raw_sig)
            g = sig["group"].encode()
            pr = PeerRates.loads(peers.get(g))
            pr.learn_one(sig["group"], sig["t"], n=sig["n"], entities=sig["entities"])
            last = getattr(pr, "notified_at", 0.0)
            if sig["n"] and sig["group"].startswith("town:") and sig["t"] - last > 86400:
                s = pr.score_one(sig["group"], sig["t"])
                if s >= settings.township_surge_threshold:
                    pr.notified_at = sig["t"]
                    town = sig["group"][5:]
                    await notices.send(key=g, value=orjson.dumps({
                        "kind": "township_surge", "entity_id": "", "township": town, "score": round(s, 4),
                        "departments": [catalog.items[1].lead, catalog.taskforce_office],
                        "text": f"{town}近期投诉和视频违规明显增多(异常度{s:.2f}),请关注辖区内主体。",
                        "at": datetime.fromtimestamp(sig["t"], tz=timezone.utc).isoformat()}))
            peers[g] = pr.dumps()

    w.app.agent(w.topics.peer_signals, name="peers")(peer_agent)


class PeerCounts:
    """Peer signals summed per (group, hour of event time) until the next commit sends them.

    The group agent keeps day-scale decayed rates, so one signal per group and hour carries the
    same information as one per event; sent by the commit (before the events' offsets are
    released), they are as durable as one per event, at a fraction of the messages (a registry
    import registers thousands of entities a second, each once a signal through a repartition).

    >>> pc = PeerCounts("peer.signals")
    >>> pc.add("town:城关镇", 7200.0, 0.0, 1); pc.add("town:城关镇", 7300.0, 1.0, 0); pc.add("town:城关镇", 10900.0, 1.0, 0)
    >>> [(t, k, orjson.loads(v)) for t, _, k, v in pc.drain()]  # doctest: +NORMALIZE_WHITESPACE
    [('peer.signals', b'town:\xe5\x9f\x8e\xe5\x85\xb3\xe9\x95\x87', {'group': 'town:城关镇', 't': 7300.0, 'n': 1.0, 'entities': 1}),
     ('peer.signals', b'town:\xe5\x9f\x8e\xe5\x85\xb3\xe9\x95\x87', {'group': 'town:城关镇', 't': 10900.0, 'n': 1.0, 'entities': 0})]
    >>> pc.drain()
    []
    """

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self._acc: dict[tuple[str, int], list] = {}

    def add(self, group: str, t: float, n: float, entities: int) -> None:
        acc = self._acc.get((group, int(t // 3600)))
        if acc is None:
            self._acc[(group, int(t // 3600))] = [n, entities, t]
        else:
            acc[0] += n
            acc[1] += entities
            if t > acc[2]:
                acc[2] = t

    def drain(self) -> list[tuple]:
        out = [(self.topic, None, g.encode(), orjson.dumps({"group": g, "t": t, "n": n, "entities": e}))
               for (g, _), (n, e, t) in sorted(self._acc.items(), key=lambda kv: kv[1][2])]
        self._acc = {}
        return out
