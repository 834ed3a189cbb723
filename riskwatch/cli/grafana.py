"""``riskwatch grafana ...``: regenerate the dashboard JSON, or push it to a Grafana."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(help="Grafana dashboards (县级总览, 重点事项, 部门工作台, 数据管道健康).", no_args_is_help=True)


@app.command()
def build(out: Path = typer.Option(None, help="Output folder (default: dashboards/json)")) -> None:
    """Regenerate dashboards/json/*.json from dashboards/build.py."""
    from dashboards import build as B

    for p in B.build(out or B.JSON_DIR):
        typer.echo(p)


@app.command()
def provision(
    url: str = typer.Option(..., help="Grafana base URL, e.g. http://localhost:3000"),
    token: str = typer.Option(..., envvar="GRAFANA_TOKEN", help="Service-account token (Editor or Admin)"),
    ch_host: str = typer.Option("localhost", help="ClickHouse host as Grafana reaches it"),
    ch_port: int = typer.Option(8123, help="ClickHouse HTTP port"),
    ch_user: str = typer.Option("default", help="ClickHouse user (use a read-only one)"),
    ch_password: str = typer.Option("", envvar="RISKWATCH_CH_PASSWORD", help="ClickHouse password"),
    ch_database: str = typer.Option("riskwatch", help="ClickHouse database"),
) -> None:
    """Create/update the ClickHouse datasource and every dashboard (by uid, overwrite): idempotent."""
    from dashboards.provision import datasource_body
    from dashboards.provision import provision as run

    ds = datasource_body(host=ch_host, port=ch_port, username=ch_user, password=ch_password, database=ch_database)
    for uid, result in run(url, token, datasource=ds).items():
        typer.echo(f"{uid}: {result}")


if __name__ == "__main__":  # pragma: no cover
    app()
