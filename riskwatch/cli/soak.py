"""``riskwatch soak``: the simulated county under faults for ``--minutes``, then the checks.

Parses the options and calls :func:`riskwatch.tools.soak.run_soak` (what runs, which faults, which
checks: see that module). Exit code 1 with one line per failed check.

    riskwatch soak --minutes 3 --rate 300 --out var/soak/soak.json
"""

from __future__ import annotations

from pathlib import Path

import typer


def soak(
    minutes: float = typer.Option(
        60.0, "--minutes", min=1.0, help="Length of the run (a fault every min(5, run/7) min)"
    ),
    rate: float = typer.Option(1000.0, "--rate", min=1.0, help="Events/s sent by the county simulator"),
    seed: int = typer.Option(7, "--seed", help="Simulator seed"),
    scale: float = typer.Option(0.5, "--scale", min=0.01, help="Multiplies the simulated entities"),
    out: Path = typer.Option(Path("var/soak/soak.json"), "--out", help="JSON result file"),
    data_dir: Path = typer.Option(
        Path("var/soak/run"), "--data-dir", help="The soak's own broker, ClickHouse, state and logs (deleted first)"
    ),
    topic_prefix: str = typer.Option("soak.", "--topic-prefix", help="Prefix of the soak's topics"),
) -> None:
    """An hour under faults: worker, bridge, Alertmanager and workbench against the simulated county;
    kill -9, broker restart, Alertmanager down, workbench restart, engine insert failures; then
    events in = rows stored, alerts = ground truth, notifications delivered = decided, no duplicates,
    recovery times, RSS."""
    from riskwatch.settings import load_settings
    from riskwatch.tools.soak import SoakConfig, run_soak

    cfg = SoakConfig(
        minutes=minutes, rate=rate, seed=seed, scale=scale, data_dir=data_dir, out=out, topic_prefix=topic_prefix
    )
    raise SystemExit(run_soak(load_settings(), cfg))
