"""`riskwatch eval ...` — offline evaluations of the detectors on public and simulated data."""

from pathlib import Path

import typer

app = typer.Typer(help="Evaluate the detectors on public benchmarks and on the simulator.", no_args_is_help=True)


@app.command("nab")
def nab(
    data: Path = typer.Option(..., "--data", help="Directory laid out like NAB's data/: <category>/<name>.csv"),
    out: Path = typer.Option(..., "--out", help="Output directory for <category>/<name>.csv with anomaly_score, alert"),
    labels: Path | None = typer.Option(
        None, "--labels", help="NAB combined_windows.json (default: ../labels next to --data)"
    ),
) -> None:
    """Score every NAB-style file with the production sensor detector and print the NAB standard score."""
    from riskwatch.tools.evals import nab as nab_eval

    nab_eval.run_cli(data, out, labels)


@app.command("chicago")
def chicago(
    data: Path = typer.Option(..., "--data", help="Directory with the four Chicago CSVs"),
    score_from: str = typer.Option(..., "--score-from", help="First inspection date (YYYY-MM-DD) to score"),
    out: Path = typer.Option(..., "--out", help="Output CSV: Inspection_ID,score"),
) -> None:
    """Replay Chicago's food inspections through the inspection-outcome model; print days-earlier."""
    from riskwatch.tools.evals import chicago as chicago_eval

    chicago_eval.run_cli(data, score_from, out)


@app.command("simulated")
def simulated(seed: int = typer.Option(7, "--seed", help="Simulator seed")) -> None:
    """Run the simulator's incidents through the detectors; print recall, false alerts, time to detect."""
    from riskwatch.tools.evals import simulated as sim_eval

    sim_eval.run_cli(seed)


@app.command("feedback")
def feedback(
    seed: int = typer.Option(7, "--seed", help="Simulator seed"),
    days: float = typer.Option(4.0, "--days", help="Simulated days (split into two halves)"),
) -> None:
    """误报 labels feed the online models: false alarms in the first and second half at equal recall, with a control."""
    from riskwatch.tools.evals import feedback as fb_eval

    fb_eval.run_cli(seed, days)
