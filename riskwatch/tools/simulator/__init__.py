"""County simulator: realistic event streams for the demo and the detectors' simulated evaluation.

``generate(config)`` yields ``(topic, key, value)`` with JSON values valid against
``schemas.events``; ``Simulator`` also keeps the ground truth of injected incidents and of the
malformed messages it sent. ``riskwatch simulate`` (``riskwatch.cli.simulate``) sends them to Kafka.
"""

from riskwatch.tools.simulator.county import SimConfig, build_county
from riskwatch.tools.simulator.streams import Simulator, generate

__all__ = ["SimConfig", "Simulator", "build_county", "generate"]
