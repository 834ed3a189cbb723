"""`riskwatch users add|list|disable|unlock` and `riskwatch web start|stop|status|run|bench`."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from riskwatch.settings import load_settings

users_app = typer.Typer(help="Workbench accounts (argon2-hashed, in var/web/users.json).", no_args_is_help=True)
web_app = typer.Typer(help="The departments' workbench and the public pages (riskwatch web).", no_args_is_help=True)


def _store():
    from web.users import UserStore

    s = load_settings()
    return UserStore(Path(s.workbench_dir) / "users.json")


@users_app.command("add")
def users_add(
    dept: str = typer.Option("", "--dept", help="Department code of the catalog (role dept), e.g. amr"),
    name: str = typer.Option(..., "--name", help="Person's name, shown and recorded as the actor, e.g. 张三"),
    username: str = typer.Option("", "--user", help="Login name (default: <dept>-<n>, e.g. amr-1)"),
    role: str = typer.Option("dept", "--role", help="dept | taskforce (专班办公室) | leader (县领导, read-only)"),
    prompt: bool = typer.Option(False, "--prompt", help="Type the password instead of generating one"),
) -> None:
    """Add an account: `riskwatch users add --dept amr --name 张三`; prints a generated password once."""
    from riskwatch.domain.catalog import load_catalog
    from web.users import UserError

    s = load_settings()
    store = _store()
    if not username:
        base = dept if role == "dept" else role
        n = 1
        while store.get(f"{base}-{n}") is not None:
            n += 1
        username = f"{base}-{n}"
    password = typer.prompt("password", hide_input=True, confirmation_prompt=True) if prompt else None
    try:
        u, pw = store.add(
            username,
            dept=dept,
            name=name,
            role=role,
            password=password,
            departments=tuple(load_catalog(s.catalog_path).departments),
        )
    except UserError as e:
        raise SystemExit(f"riskwatch users add: {e}") from None
    print(f"added {u.username} ({u.name}, {u.role}{', ' + u.dept if u.dept else ''})")
    if password is None:
        print(f"password (shown once): {pw}")


@users_app.command("list")
def users_list() -> None:
    """List accounts (never passwords)."""
    from sinks.query import format_table

    rows = [
        (u.username, u.name, u.role, u.dept, "disabled" if u.disabled else "active") for u in _store().all().values()
    ]
    print(format_table(["user", "name", "role", "dept", "state"], rows))


@users_app.command("disable")
def users_disable(username: str = typer.Argument(...)) -> None:
    """Disable an account; its sessions are deleted at once (the next request is logged out)."""
    from web.users import UserError

    store = _store()
    try:
        store.set_disabled(username, True)  # deletes the account's server-side sessions too
    except UserError as e:
        raise SystemExit(f"riskwatch users disable: {e}") from None
    print(f"disabled {username}; its sessions have ended")


@users_app.command("unlock")
def users_unlock(
    username: str = typer.Argument(..., help="Account whose failed logins to forget"),
    ip: str = typer.Option("", "--ip", help="Also forget this address's failures (all accounts)"),
) -> None:
    """The office (专班办公室) unlocks an account: forget its failed logins from every address."""
    from web.sqlite import state_path
    from web.throttle import LoginThrottle

    store = _store()
    if store.get(username) is None:
        raise SystemExit(f"riskwatch users unlock: no user {username!r}; `riskwatch users list` shows them")
    t = LoginThrottle(state_path(store.path.parent))
    n = t.unlock(username)
    if ip:
        n += t.unlock_ip(ip)
    print(f"unlocked {username} ({n} throttle entr{'y' if n == 1 else 'ies'} cleared)")


@web_app.command("run")
def web_run() -> None:
    """Serve the workbench in the foreground (uvicorn)."""
    import logging

    import uvicorn

    from web.app import create_app

    s = load_settings()
    if s.workbench_nice:  # pages may wait a little under contention; the worker's inserts and lag may not
        import os

        os.nice(s.workbench_nice)
    # the audit trail (who produced which event) and refusals go to stderr (web.log in the background)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("aiokafka", "kafka", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    print(
        f"riskwatch web at http://{s.workbench_host}:{s.workbench_port} (links in alerts: {s.workbench_url})",
        file=sys.stderr,
    )
    uvicorn.run(
        create_app(s),
        host=s.workbench_host,
        port=s.workbench_port,
        log_level="warning",
        proxy_headers=False,
        server_header=False,
    )


@web_app.command("start")
def web_start() -> None:
    """Start the workbench in the background (reused if running)."""
    from riskwatch.tools.webserver import WebError, WebServer

    try:
        print(WebServer(load_settings()).start(log=lambda m: print(m, file=sys.stderr)))
    except WebError as e:
        raise SystemExit(f"riskwatch web start: {e}") from None


@web_app.command("stop")
def web_stop() -> None:
    """Stop the background workbench (and the worker `make demo` left running)."""
    from riskwatch.tools.webserver import WebServer

    print(WebServer(load_settings()).stop())


@web_app.command("status")
def web_status() -> None:
    """Say whether the workbench runs."""
    from riskwatch.tools.webserver import WebServer

    print(WebServer(load_settings()).status())


@web_app.command("bench")
def web_bench(
    alerts: int = typer.Option(100_000, "--alerts", help="Alerts to seed"),
    history: int = typer.Option(1_000_000, "--history", help="alert_history rows to seed"),
    requests: int = typer.Option(200, "--requests", help="Requests per page"),
    out: Path = typer.Option(Path("var/bench/web.json"), "--out", help="JSON result file"),
) -> None:
    """Server time of the inbox and the alert page (p50/p95) on a seeded ClickHouse, and the app's RSS."""
    from riskwatch.tools.bench.web import run

    run(load_settings(), alerts=alerts, history=history, requests=requests, out=out)
