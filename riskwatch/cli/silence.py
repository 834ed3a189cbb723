"""`riskwatch silence add|list|end`: silences / maintenance windows (静默期) on ``control.silences``."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import typer

app = typer.Typer(
    help="Silences / maintenance windows (静默期): hold back notifications of matching alerts until an end time.",
    no_args_is_help=True,
)
CST = ZoneInfo("Asia/Shanghai")


def _settings():
    from riskwatch.settings import load_settings

    return load_settings()


def _producer(settings):
    from kafka import KafkaProducer

    return KafkaProducer(**settings.kafka_kwargs(), acks="all")


@app.command("add")
def add(
    hours: float = typer.Option(..., "--hours", min=0.01, help="Duration"),
    by: str = typer.Option(..., "--by", help="Who sets it (department code or user name)"),
    entity: str | None = typer.Option(None, "--entity", help="Only this entity id"),
    item: int | None = typer.Option(None, "--item", help="Only this supervision item id"),
    rule: str | None = typer.Option(None, "--rule", help="Glob on the rule code, e.g. 'rule.sensor.boiler_*'"),
    starts: datetime | None = typer.Option(None, "--starts", help="Start (ISO; default now, Asia/Shanghai if no zone)"),
    comment: str = typer.Option("", "--comment", help="Why (shown in the alert history)"),
    silence_id: str | None = typer.Option(None, "--id", help="Id (default: generated)"),
) -> None:
    """Add (or replace, with --id) a silence. At least one of --entity/--item/--rule is required."""
    from pydantic import ValidationError

    from schemas.events import SilenceSpec

    s = _settings()
    t0 = starts or datetime.now(CST)
    t0 = t0 if t0.tzinfo else t0.replace(tzinfo=CST)
    try:
        spec = SilenceSpec(
            silence_id=silence_id or f"S-{t0:%Y%m%d}-{uuid.uuid4().hex[:6]}",
            starts_at=t0,
            ends_at=t0 + timedelta(hours=hours),
            entity_id=entity,
            item_id=item,
            rule=rule,
            created_by=by,
            comment=comment,
        )
    except ValidationError as e:
        raise SystemExit(f"riskwatch silence add: {e.errors()[0]['msg']}") from None
    p = _producer(s)
    p.send(s.topic("control.silences"), key=spec.silence_id.encode(), value=spec.model_dump_json().encode()).get(30)
    p.close()
    typer.echo(
        f"{spec.silence_id}: {spec.starts_at.isoformat()} → {spec.ends_at.isoformat()} "
        f"(entity={entity or '*'} item={item or '*'} rule={rule or '*'})"
    )


@app.command("end")
def end(silence_id: str = typer.Argument(..., help="The silence to end now")) -> None:
    """End a silence now (a tombstone on the compacted topic)."""
    s = _settings()
    p = _producer(s)
    p.send(s.topic("control.silences"), key=silence_id.encode(), value=None).get(30)
    p.close()
    typer.echo(f"{silence_id}: ended")


@app.command("list")
def list_() -> None:
    """Every silence on the topic, latest spec per id, with whether it is in force now."""
    from riskwatch.tools.runner import read_all
    from streams.engine.silences import SilenceBoard

    s = _settings()
    board = SilenceBoard()
    for r in read_all(s, s.topic("control.silences")):
        board.apply(r.key, r.value)
    now = datetime.now(CST).timestamp()
    if not board.active():
        typer.echo("no silences")
    for x in sorted(board.active(), key=lambda x: x.starts_at):
        state = "in force" if x.starts_at <= now < x.ends_at else ("ended" if now >= x.ends_at else "scheduled")
        typer.echo(
            f"{x.silence_id}\t{state}\t{datetime.fromtimestamp(x.starts_at, CST):%Y-%m-%d %H:%M} → "
            f"{datetime.fromtimestamp(x.ends_at, CST):%Y-%m-%d %H:%M}\tentity={x.entity_id or '*'} "
            f"item={x.item_id or '*'} rule={x.rule or '*'}\tby {x.created_by}: {x.comment}"
        )
