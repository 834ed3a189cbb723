"""Peer signals of a worker's entities, summed per (group, hour) until the commit sends them
to ``peer.signals`` (read by the ``peers`` agent, ``streams/runtime/peer_agent.py``)."""

from __future__ import annotations

import orjson


class PeerCounts:
    """Peer signals summed per (group, hour of event time) until the next commit sends them.

    The group agent keeps day-scale decayed rates, so one signal per group and hour carries the
    same information as one per event; sent by the commit (before the events' offsets are
    released), they are as durable as one per event, at a fraction of the messages (a registry
    import registers thousands of entities a second, each once a signal through a repartition).

    >>> pc = PeerCounts("peer.signals")
    >>> pc.add("town:城关镇", 7200.0, 0.0, 1); pc.add("town:城关镇", 7300.0, 1.0, 0)
    >>> pc.add("town:城关镇", 10900.0, 1.0, 0)
    >>> [(t, k.decode(), orjson.loads(v)) for t, _, k, v in pc.drain()]  # doctest: +NORMALIZE_WHITESPACE
    [('peer.signals', 'town:城关镇', {'group': 'town:城关镇', 't': 7300.0, 'n': 1.0, 'entities': 1}),
     ('peer.signals', 'town:城关镇', {'group': 'town:城关镇', 't': 10900.0, 'n': 1.0, 'entities': 0})]
    >>> pc.drain()
    []
    """

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self._acc: dict[tuple[str, int], list[float]] = {}  # (group, hour) -> [n, entities, latest t]

    def add(self, group: str, t: float, n: float, entities: int) -> None:
        acc = self._acc.get((group, int(t // 3600)))
        if acc is None:
            self._acc[(group, int(t // 3600))] = [n, entities, t]
        else:
            acc[0] += n
            acc[1] += entities
            if t > acc[2]:
                acc[2] = t

    def drain(self) -> list[tuple[str, None, bytes, bytes]]:
        out = [
            (self.topic, None, g.encode(), orjson.dumps({"group": g, "t": t, "n": n, "entities": e}))
            for (g, _), (n, e, t) in sorted(self._acc.items(), key=lambda kv: kv[1][2])
        ]
        self._acc = {}
        return out
