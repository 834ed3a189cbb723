"""Docking with the city platform (与市级平台的数据对接): masked county topics out, city tasks in, through
Kafka MirrorMaker 2 (docs/city-link.md). Everything of the link lives in this package:

* :mod:`~riskwatch.tools.citylink.topics` — the names: masked copies, the city's remote topics, inbound topic, headers;
* :mod:`~riskwatch.tools.citylink.masking` — what may leave the county (:func:`mask_value`) and a relayed task's key;
* :mod:`~riskwatch.tools.citylink.bridge` — the bridge process: masked copies out, city tasks in, exactly once;
* :mod:`~riskwatch.tools.citylink.mm2` — MirrorMaker 2's properties from the settings;
* :mod:`~riskwatch.tools.citylink.service` — :class:`CityLink`: fetch MirrorMaker, start/stop/status of both processes;
* :mod:`~riskwatch.tools.citylink.standin` — a local broker standing in for the city, a link per run (tests, bench).

``riskwatch city-link ...`` (:mod:`riskwatch.cli.citylink`) only parses arguments and calls these;
``riskwatch city-link bench`` is :mod:`riskwatch.tools.bench.citylink`, built on them.

Why under ``riskwatch.tools`` and not in ``streams``: the link is a side process of its own, not
part of the worker. No product module (streams, sinks, riskwatch.domain, front ends) uses the
bridge or the topic names; only the CLI, the bench and the tests do. Its process management needs
the broker's Kafka version and install paths (:mod:`riskwatch.tools.broker`), pid files
(:mod:`riskwatch.tools.pidfile`) and the child environment (:mod:`riskwatch.tools.runner`), which
are tools and may not move into the product. So the package is tools-level: it imports the
product (settings, :func:`schemas.privacy.mask_pii`) and nothing imports it from below.

>>> from riskwatch.settings import Settings
>>> masked_topic(Settings(topic_prefix="x."), "alerts.all")
'x.masked.alerts.all'
"""

from riskwatch.tools.citylink.bridge import Bridge
from riskwatch.tools.citylink.masking import mask_value
from riskwatch.tools.citylink.mm2 import mm2_properties, write_properties
from riskwatch.tools.citylink.service import CityLink, CityLinkError
from riskwatch.tools.citylink.standin import city_settings, delete_run_topics, run_settings, run_topic_prefixes
from riskwatch.tools.citylink.topics import ORIGIN, SRC_OFFSET, city_remote_topic, inbound_topic, masked_topic

__all__ = [
    "Bridge",
    "CityLink",
    "CityLinkError",
    "ORIGIN",
    "SRC_OFFSET",
    "city_remote_topic",
    "city_settings",
    "delete_run_topics",
    "inbound_topic",
    "mask_value",
    "masked_topic",
    "mm2_properties",
    "run_settings",
    "run_topic_prefixes",
    "write_properties",
]
