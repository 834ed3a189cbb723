"""The credential of the worker's ``/query`` port: a random token in a 0600 file under ``var/``.

The worker creates it at its first start (:func:`ensure_token`) next to its state directory
(``settings.state_dir``'s parent: ``var/query.token`` on the embedded defaults). ``riskwatch query``,
the workbench and the tools read the same file (:func:`auth_headers`) and send it as
``Authorization: Bearer <token>``; the worker answers 401 to a request without it. Whoever can read
the file is trusted: it is readable by the account that runs riskwatch only.

>>> import tempfile, pathlib
>>> p = pathlib.Path(tempfile.mkdtemp()) / "query.token"
>>> t = ensure_token(p)
>>> oct(p.stat().st_mode & 0o777), ensure_token(p) == t, authorized(f"Bearer {t}", t), authorized(None, t)
('0o600', True, True, False)
"""

from __future__ import annotations

import contextlib
import hmac
import os
import secrets
from pathlib import Path
from typing import Any

FILE_NAME = "query.token"


def token_path(settings: Any) -> Path:
    """Where this configuration's worker keeps its query token."""
    return Path(settings.state_dir).parent / FILE_NAME


def ensure_token(path: Path) -> str:
    """The token in ``path``; a new one (mode 0600, created atomically) if there is none."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        os.chmod(path, 0o600)  # an older or copied file: readable by this account only
        token = path.read_text().strip()
        if token:
            return token
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    token = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token


def read_token(path: Path) -> str | None:
    """The token, or None if the worker has not created it (or this account cannot read it)."""
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def auth_headers(settings: Any) -> dict[str, str]:
    """``{"Authorization": "Bearer <token>"}`` for requests to this configuration's worker ({} without a token)."""
    token = read_token(token_path(settings))
    return {"Authorization": f"Bearer {token}"} if token else {}


def authorized(header: str | None, token: str) -> bool:
    """Whether an ``Authorization`` header carries ``token`` (compared in constant time)."""
    if not header or not header.startswith("Bearer "):
        return False
    return hmac.compare_digest(header[len("Bearer ") :].strip().encode(), token.encode())


UNAUTHORIZED = (
    "this port needs the query token: use `riskwatch query`, or send 'Authorization: Bearer <token>' "
    "with the token from var/query.token (next to the worker's state directory)"
)


def switch_off_faust_views(app: Any) -> None:
    """Serve none of Faust's built-in ``/table/`` and ``/router/`` views on the query port.

    They read the app's tables (entity states) and show the cluster's workers without any
    credential. Faust's settings ``web_tables_enabled``/``web_router_enabled`` are read when the
    web server object is created, which ``app.page`` has usually done already, so the built-in
    blueprints are also dropped from it before the server starts.
    """
    for name in ("web_tables_enabled", "web_router_enabled"):
        with contextlib.suppress(AttributeError, TypeError):  # an older Faust without the setting
            setattr(app.conf, name, False)
    web = app.web
    web.blueprints._enabled = [
        (prefix, bp)
        for prefix, bp in web.blueprints._enabled  # noqa: SLF001
        if prefix not in ("/table", "/router")
    ]
