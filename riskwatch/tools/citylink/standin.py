"""A local broker standing in for the city's cluster, and a link of its own per run (tests, the bench, drills).

The county's own broker code (:class:`riskwatch.tools.broker.Broker`) on other loopback ports with
its own data directory; the run's link gets its own topic prefix and aliases on the shared county
broker, and :func:`delete_run_topics` deletes everything it left there::

    city = city_settings(settings, port=29092, controller_port=29093, data_dir=Path("var/city-kafka"))
    Broker(city).start()
    s = run_settings(settings, city, run_id="1a2b3c4d", prefix="bench1a2b3c4d.", app_id="riskwatch-bench-1a2b3c4d",
                     link_dir=Path("var/citylink-bench/1a2b3c4d/link"))
    ...
    delete_run_topics(s)

>>> from riskwatch.settings import Settings
>>> s = run_settings(Settings(), Settings(kafka_bootstrap="127.0.0.1:29092"), "r1", "c1.", "rw-test-r1", Path("/tmp/x"))
>>> s.citylink_city_bootstrap, s.citylink_city_task_topic, run_topic_prefixes(s)[:3]
('127.0.0.1:29092', 'c1.events.task', ['c1.', 'cityr1.', 'rw-test-r1-'])
"""

from __future__ import annotations

from pathlib import Path

from riskwatch.settings import Settings


def city_settings(settings: Settings, port: int, controller_port: int, data_dir: Path) -> Settings:
    """Settings of a local broker standing in for the city's cluster (tests, bench, drills): the
    county's broker code on other loopback ports and its own data directory."""
    return settings.model_copy(
        update=dict(
            kafka_bootstrap=f"127.0.0.1:{port}",
            kafka_port=port,
            kafka_controller_port=controller_port,
            kafka_data_dir=data_dir,
        )
    )


def run_settings(
    settings: Settings, city: Settings, run_id: str, prefix: str, app_id: str, link_dir: Path, **update
) -> Settings:
    """The county's settings for one run's link to ``city``: its own topic prefix, app id, directory and
    aliases, so that MirrorMaker's group (``<city alias>-mm2``) and internal topics on the shared county
    broker never meet another run's; the city's task topic is ``<prefix>events.task``."""
    return settings.model_copy(
        update=dict(
            citylink_city_alias=f"city{run_id}",
            citylink_county_alias=f"county{run_id}",
            topic_prefix=prefix,
            app_id=app_id,
            citylink_city_bootstrap=city.kafka_bootstrap,
            citylink_dir=link_dir,
            citylink_city_task_topic=f"{prefix}events.task",
            **update,
        )
    )


def run_topic_prefixes(settings: Settings) -> list[str]:
    """Prefixes of every topic a run's link leaves on the county broker: its own topics, the city's
    tasks replicated in, the app's internal topics and MirrorMaker's internal topics."""
    y = settings.citylink_city_alias
    return [
        settings.topic_prefix,
        f"{y}.",
        f"{settings.app_id}-",
        *(f"mm2-{t}.{y}." for t in ("offsets", "configs", "status", "offset-syncs")),
    ]


def delete_run_topics(settings: Settings) -> list[str]:
    """Delete what a run's link left on the county broker (best effort); returns the names deleted."""
    from streams.runtime.topics import delete_topics

    return delete_topics(settings, run_topic_prefixes(settings))
