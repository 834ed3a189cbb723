"""The county's receivers file: which channels reach each department (and the ops team).

``riskwatch/data/receivers.yaml`` by default (``RISKWATCH_RECEIVERS_PATH``). String values may name
environment variables as ``${NAME}`` so that secrets (robot keys, the 钉钉 signing secret, the
企业微信 application secret) stay out of the file. A file with an unknown department, a malformed
URL, a missing secret or an unset variable is refused at start-up; the error names the line::

    receivers.yaml line 12 (departments.amr.dingtalk.0.secret): missing: a 钉钉 robot needs its signing secret

>>> from riskwatch.domain.catalog import load_catalog
>>> env = {name: "x" for name in variables()}     # the secrets it names, as the county's environment sets them
>>> r = load_receivers(catalog=load_catalog(), env=env)
>>> r.for_department("amr").channel_names()
['wecom_robot', 'dingtalk', 'email']
>>> load_receivers(catalog=load_catalog(), env={})   # doctest: +ELLIPSIS, +NORMALIZE_WHITESPACE
Traceback (most recent call last):
...
notify.receivers.ReceiversError: invalid receivers file ...
  receivers.yaml line 21 (wechat.corp_id): environment variable RISKWATCH_WECHAT_CORP_ID is not set
  (export it or put it in riskwatch.env)
...
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from riskwatch.domain.catalog import Catalog, _line_for, load_catalog, load_yaml_with_lines
from riskwatch.settings import DATA_DIR

DEFAULT_RECEIVERS_PATH = DATA_DIR / "receivers.yaml"
_EMAIL = re.compile(r"^[^@\s,<>]+@[^@\s,<>]+\.[^@\s,<>]+$")
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class ReceiversError(ValueError):
    """An invalid receivers file; the message names line and field of every problem."""


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DingTalkRobot(_M):
    """A 钉钉 group robot with 加签 (signing): the adapter adds timestamp and sign to ``url``."""

    url: AnyHttpUrl
    secret: SecretStr = Field(description="The robot's signing secret (SEC...)")

    @field_validator("secret")
    @classmethod
    def _secret(cls, v: SecretStr) -> SecretStr:
        if not v.get_secret_value().strip():
            raise ValueError("missing: a 钉钉 robot needs its signing secret")
        return v


class WeChatApp(_M):
    """企业微信 application message (Alertmanager's own ``wechat_configs``)."""

    agent_id: str = Field(min_length=1)
    to_party: str = ""
    to_user: str = ""
    to_tag: str = ""

    @model_validator(mode="after")
    def _someone(self) -> WeChatApp:
        if not (self.to_party or self.to_user or self.to_tag):
            raise ValueError("a 企业微信 application message needs to_party, to_user or to_tag")
        return self


class Channels(_M):
    """The channels of one department (or of the ops team). Every list may be empty."""

    wecom_robot: list[AnyHttpUrl] = Field(
        default_factory=list, description="企业微信 group robot webhook URLs (…/webhook/send?key=…)"
    )
    dingtalk: list[DingTalkRobot] = Field(default_factory=list)
    email: list[str] = Field(default_factory=list)
    webhook: list[AnyHttpUrl] = Field(default_factory=list, description="Generic webhooks: Alertmanager's JSON payload")
    wechat_app: WeChatApp | None = None

    @field_validator("email")
    @classmethod
    def _emails(cls, v: list[str]) -> list[str]:
        for a in v:
            if not _EMAIL.match(a):
                raise ValueError(f"not an email address: {a!r}")
        return v

    @property
    def empty(self) -> bool:
        return not (self.wecom_robot or self.dingtalk or self.email or self.webhook or self.wechat_app)

    def channel_names(self) -> list[str]:
        return [
            n
            for n, on in (
                ("wecom_robot", self.wecom_robot),
                ("dingtalk", self.dingtalk),
                ("email", self.email),
                ("webhook", self.webhook),
                ("wechat_app", self.wechat_app),
            )
            if on
        ]


class EmailServer(_M):
    smarthost: str = Field(pattern=r"^[^:\s]+:\d{1,5}$", description="host:port of the SMTP relay")
    sender: str = Field(alias="from")
    require_tls: bool = True
    auth_username: str = ""
    auth_password: SecretStr = SecretStr("")

    @field_validator("sender")
    @classmethod
    def _sender(cls, v: str) -> str:
        if not _EMAIL.match(v):
            raise ValueError(f"not an email address: {v!r}")
        return v


class WeChatAccount(_M):
    """The county's 企业微信 corporation (for application messages)."""

    corp_id: str = Field(min_length=1)
    api_secret: SecretStr
    api_url: AnyHttpUrl = AnyHttpUrl("https://qyapi.weixin.qq.com/cgi-bin/")

    @field_validator("api_secret")
    @classmethod
    def _secret(cls, v: SecretStr) -> SecretStr:
        if not v.get_secret_value().strip():
            raise ValueError("missing: 企业微信 application messages need the application secret")
        return v


class Receivers(_M):
    email_server: EmailServer | None = None
    wechat: WeChatAccount | None = None
    ops: Channels = Field(default_factory=Channels, description="Pipeline alerts (Prometheus rules)")
    departments: dict[str, Channels]
    sources: dict[str, Channels] = Field(
        default_factory=dict,
        description="Data sources' owners (vendors): their source's silence, garbage and clock-skew alarms "
        "(Prometheus rules, label event_source) reach them as well as ops; email or webhook",
    )

    @model_validator(mode="after")
    def _servers(self) -> Receivers:
        for name, ch in self.sources.items():
            if ch.wecom_robot or ch.dingtalk or ch.wechat_app:
                raise _FieldError(
                    ("sources", name),
                    "a source's owner is outside the county: give an email or a webhook (group robots and "
                    "企业微信 application messages are for the county's departments)",
                )
            if ch.email and self.email_server is None:
                raise _FieldError(("sources", name, "email"), "email addresses need an email_server at the top")
        for name, ch in [("ops", self.ops), *self.departments.items()]:
            if ch.email and self.email_server is None:
                raise _FieldError(
                    ("departments", name, "email") if name != "ops" else ("ops", "email"),
                    "email addresses need an email_server (smarthost, from) at the top of the file",
                )
            if ch.wechat_app and self.wechat is None:
                raise _FieldError(
                    ("departments", name, "wechat_app") if name != "ops" else ("ops", "wechat_app"),
                    "wechat_app needs the county's 企业微信 account (wechat: corp_id, api_secret) "
                    "at the top of the file",
                )
        return self

    def for_department(self, code: str) -> Channels:
        return self.departments.get(code) or Channels()


class _FieldError(ValueError):
    def __init__(self, loc: tuple, msg: str):
        super().__init__(msg)
        self.loc = loc


def _expand(node, env: Mapping[str, str], path: tuple, missing: list[tuple[tuple, str]]):
    if isinstance(node, dict):
        return {k: _expand(v, env, (*path, k), missing) for k, v in node.items()}
    if isinstance(node, list):
        return [_expand(v, env, (*path, i), missing) for i, v in enumerate(node)]
    if isinstance(node, str):

        def sub(m: re.Match) -> str:
            if m.group(1) not in env:
                missing.append((path, m.group(1)))
                return ""
            return env[m.group(1)]

        return _VAR.sub(sub, node)
    return node


def variables(path: Path | str | None = None) -> list[str]:
    """The ``${NAME}`` environment variables a receivers file refers to, in order of appearance."""
    text = Path(path or DEFAULT_RECEIVERS_PATH).read_text(encoding="utf-8")
    return list(
        dict.fromkeys(
            m.group(1) for line in text.splitlines() if not line.lstrip().startswith("#") for m in _VAR.finditer(line)
        )
    )


def load_receivers(
    path: Path | str | None = None, catalog: Catalog | None = None, env: Mapping[str, str] | None = None
) -> Receivers:
    """Load, expand ``${VAR}`` and validate a receivers file against the catalog's departments."""
    path = Path(path) if path else DEFAULT_RECEIVERS_PATH
    catalog = catalog or load_catalog()
    env = os.environ if env is None else env
    if not path.exists():
        raise ReceiversError(
            f"{path}: no such receivers file; copy riskwatch/data/receivers.yaml and set RISKWATCH_RECEIVERS_PATH"
        )
    raw, lines = load_yaml_with_lines(path, ReceiversError)
    if not isinstance(raw, dict):
        raise ReceiversError(f"{path.name} line 1: expected a mapping with a 'departments' key")
    msgs: list[str] = []
    missing: list[tuple[tuple, str]] = []
    raw = _expand(raw, env, (), missing)
    for loc, var in missing:
        msgs.append(
            f"{path.name} line {_line_for(lines, loc)} ({'.'.join(map(str, loc))}): "
            f"environment variable {var} is not set (export it or put it in riskwatch.env)"
        )
    for code in raw.get("departments") or {}:
        if code not in catalog.departments:
            msgs.append(
                f"{path.name} line {_line_for(lines, ('departments', code))} (departments.{code}): "
                f"unknown department code {code!r}; known: {', '.join(catalog.departments)}"
            )
    if not msgs:
        try:
            return Receivers.model_validate(raw)
        except ValidationError as e:
            for err in e.errors():
                loc = tuple(err["loc"])
                ctx = (err.get("ctx") or {}).get("error")
                msg = err["msg"]
                if isinstance(ctx, _FieldError):
                    loc, msg = ctx.loc, str(ctx)
                msg = msg.removeprefix("Value error, ")
                msgs.append(f"{path.name} line {_line_for(lines, loc)} ({'.'.join(map(str, loc)) or '<top>'}): {msg}")
    raise ReceiversError(f"invalid receivers file {path}:\n  " + "\n  ".join(msgs))
