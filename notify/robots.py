"""Robot adapter: Alertmanager's webhook payload → 企业微信 and 钉钉 group robots (``riskwatch notify robots``).

Alertmanager has no receiver for the robots' JSON formats; like ``prometheus-webhook-dingtalk``
this small HTTP service takes Alertmanager's webhook (``POST /wecom/<dept>/<i>`` or
``/dingtalk/<dept>/<i>``: the *i*-th robot of that department in the receivers file, ``_ops`` for
the ops team) and posts a markdown message to the robot:

* 企业微信: ``{"msgtype": "markdown", "markdown": {"content": ...}}`` to the robot's webhook URL;
* 钉钉: ``{"msgtype": "markdown", "markdown": {"title": ..., "text": ...}}`` to the robot's URL plus
  ``&timestamp=<ms>&sign=<sign>``, sign = URL-encoded base64 of HMAC-SHA256 over
  ``timestamp + "\\n" + secret`` keyed by the secret (:func:`dingtalk_sign`).

Answers to Alertmanager: 200 when every message went out; 503 when a robot stays rate-limited
(企业微信 errcode 45009, 钉钉 130101, HTTP 429) after the adapter's own back-off, or is unreachable
or answers 5xx — Alertmanager then retries; 400 for a refusal that a retry cannot fix (a wrong key
or signature), which Alertmanager logs and counts as failed. Robot keys, tokens and secrets
never reach a log line: URLs are logged without their query string.

Each notification reaches a robot's group once: Alertmanager records a notification only after
its receiver answered, so one in flight when Alertmanager stops is sent again after its restart. The
adapter remembers what each robot was given (the notification's labels and a digest of its text, for
a day) and answers such a repeat with 200 without posting it.

What people wrote is data, never markup: the message is built again from the annotations' parts
(:func:`notify.text.notification_text`), and every part that is data (title, entity, township, the
message with its 理由 and comments, ops summaries) goes through :func:`md_text` first — masked by
:func:`schemas.privacy.mask_pii`, markdown characters replaced by their full-width forms (neither
robot documents backslash escapes) and links defanged — while the template's own structure and the
workbench link stay as they are.

>>> md_text("理由:**紧急** [点此](http://evil.example/x) 联系13812345678 <@all>")
'理由:＊＊紧急＊＊ ［点此］（http：／／evil．example／x） 联系138＊＊＊＊5678 ＜@all＞'

>>> dingtalk_sign("SEC000", 1700000000000)
'ltBBey5eZrWKh1cPzFIdz3v3xpkc4Tjx4lLsPSHqdtA%3D'
>>> redact("https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=abc")
'https://qyapi.weixin.qq.com/cgi-bin/webhook/send?…'
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import re
import time
import urllib.parse
from datetime import datetime

from aiohttp import ClientError, ClientSession, ClientTimeout, web
from cachetools import TTLCache
from prometheus_client import CONTENT_TYPE_LATEST, Counter, generate_latest

from notify.receivers import Channels, DingTalkRobot, Receivers
from notify.text import notification_text
from schemas.privacy import mask_pii

log = logging.getLogger("riskwatch.robots")
SENT = Counter("riskwatch_robot_messages_total", "Messages accepted by a group robot", ["channel", "department"])
FAILED = Counter("riskwatch_robot_failures_total", "Robot posts that failed (after back-off)", ["channel", "reason"])
RATE_LIMITED = Counter("riskwatch_robot_rate_limited_total", "Rate-limit answers from robots (backed off)", ["channel"])
REPEATED = Counter(
    "riskwatch_robot_repeats_total", "Notifications Alertmanager delivered again, not posted twice", ["channel"]
)
# how long a delivered notification is remembered: Alertmanager re-notifies one that was in flight when it
# stopped (its log records a notification only after the receiver answered), within notify_hold_seconds
REMEMBER_SECONDS = 24 * 3600.0
RATE_LIMIT_CODES = {"wecom": {45009, 45033}, "dingtalk": {130101, 660026}}


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """钉钉 robot signature: base64(HMAC-SHA256(key=secret, msg=f"{timestamp}\\n{secret}")), URL-encoded."""
    mac = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return urllib.parse.quote_plus(base64.b64encode(mac).decode())


def dingtalk_url(url: str, secret: str, timestamp_ms: int | None = None) -> str:
    ts = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
    return f"{url}{'&' if '?' in url else '?'}timestamp={ts}&sign={dingtalk_sign(secret, ts)}"


def redact(url: str) -> str:
    return url.split("?", 1)[0] + ("?…" if "?" in url else "")


# markdown of 企业微信 and 钉钉 (CommonMark subset, <font>, <@user> mentions): each character that can
# start markup becomes its full-width form, which both show as the same character
_MD = str.maketrans({c: chr(ord(c) + 0xFEE0) for c in "\\`*_[](){}<>#!|~&"})
_MD_LINE_START = re.compile(r"^([ \t]*)([-+=>]|\d+\.(?=\s))", re.MULTILINE)
# links and bare domains, also glued to Chinese text (where \\b finds no word boundary)
_URL = re.compile(r"(?i)(?<![a-z0-9+.\-])(?:[a-z][a-z0-9+.\-]*:/+|www\d{0,3}\.)[^\s，。；、）】]*")
_DOMAIN = re.compile(
    r"(?i)(?<![a-z0-9\-.])(?:[a-z0-9](?:[a-z0-9\-]{0,61}[a-z0-9])?\.)+"
    r"(?:com|cn|net|org|gov|edu|info|io|co|cc|top|xyz|vip|me|ly|site|online|club|shop|link|app|dev|tk|ru|"
    r"hk|tw)(?![a-z0-9\-])"
)
_DEFANG = str.maketrans({":": "：", "/": "／", ".": "．"})


def md_text(s: str) -> str:
    """User text as inert robot markdown: personal numbers masked, no markup, no clickable link."""
    s = mask_pii(s)
    s = _URL.sub(lambda m: m.group(0).translate(_DEFANG), s)
    s = _DOMAIN.sub(lambda m: m.group(0).replace(".", "．"), s)
    s = s.translate(_MD)
    return _MD_LINE_START.sub(lambda m: m.group(1) + m.group(2).translate(_LINE_START), s)


_LINE_START = str.maketrans({"-": "－", "+": "＋", "=": "＝", ">": "＞", ".": "．"})


def _when(v: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(v) if v else None
    except ValueError:
        return None


def _riskwatch_text(ann: dict, lab: dict) -> str:
    """The notification text of one riskwatch alert, its data escaped (:func:`md_text`). Built again
    from the annotations' parts; a bridge that sends only ``text`` gets that text escaped line by line."""
    link = ann.get("link", "")
    if "title" not in ann or "alert_id" not in lab:
        return "\n".join(
            line if link and line == f"链接:{link}" else md_text(line) for line in ann["text"].splitlines()
        )
    township = lab.get("township", "")
    try:
        revision = int(lab.get("seq", "0"))
    except ValueError:
        revision = 0
    return notification_text(
        kind=lab.get("notification", ""),
        level=lab.get("level", ""),
        title=md_text(ann.get("title", "")),
        entity_name=md_text(ann.get("entity_name", "")),
        entity_id=md_text(ann.get("entity_id", "")),
        township=md_text(township if township != "unknown" else ""),
        status=ann.get("status", ""),
        ack_due=_when(ann.get("ack_due")),
        dispose_due=_when(ann.get("dispose_due")),
        alert_id=md_text(lab["alert_id"]),
        revision=revision,
        message=md_text(ann.get("summary", "")),
        department_name=md_text(ann.get("department_name", "")),
        link=link,
        reminder=md_text(ann.get("credit", "")),
    )


def _lines(payload: dict) -> tuple[str, list[str]]:
    """(title, message lines) of one webhook payload: riskwatch's text, or an ops alert; data escaped."""
    texts, title = [], ""
    for a in payload.get("alerts", []):
        ann, lab = a.get("annotations", {}), a.get("labels", {})
        if ann.get("text"):
            texts.append(_riskwatch_text(ann, lab))
            title = title or md_text(ann["text"].splitlines()[0])
        else:
            state = "已恢复" if a.get("status") == "resolved" else "告警"
            head = f"【运维{state}】{lab.get('alertname', '')} {lab.get('instance', '')}".strip()
            texts.append("\n".join(md_text(x) for x in (head, ann.get("summary", ""), ann.get("description", "")) if x))
            title = title or md_text(head)
    return title or "riskwatch", texts


def wecom_body(payload: dict) -> dict:
    _, texts = _lines(payload)
    return {"msgtype": "markdown", "markdown": {"content": "\n\n".join(texts)[:4000]}}


def dingtalk_body(payload: dict) -> dict:
    title, texts = _lines(payload)
    md = "\n\n---\n\n".join("\n\n".join(t.splitlines()) for t in texts)
    return {"msgtype": "markdown", "markdown": {"title": title[:64], "text": md[:5000]}}


def notification_key(alert: dict) -> tuple | None:
    """What identifies one riskwatch notification: its labels (notify/bridge.py) and a digest of its
    whole text, so only a repeat of the very same message is dropped — a post that copies the labels
    of a notification to come, with other words, cannot silence it. None for an ops alert.

    >>> a = {"labels": {"source": "riskwatch", "alert_id": "a1", "seq": "3"}, "annotations": {"text": "甲"}}
    >>> b = {"labels": a["labels"], "annotations": {"text": "乙"}}
    >>> notification_key(a) == notification_key(dict(a)), notification_key(a) == notification_key(b)
    (True, False)
    """
    lab = alert.get("labels", {})
    if lab.get("source") != "riskwatch":
        return None
    body = repr((sorted(lab.items()), sorted(alert.get("annotations", {}).items()))).encode()
    return (lab.get("alert_id"), lab.get("seq"), lab.get("notification"), hashlib.sha256(body).hexdigest())


class RobotAdapter:
    def __init__(self, receivers: Receivers, backoff: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0)):
        self.receivers = receivers
        self.backoff = backoff
        self.session: ClientSession | None = None
        # (channel, department, robot, notification) already posted: a group reads each notification once
        self.delivered: TTLCache = TTLCache(maxsize=200_000, ttl=REMEMBER_SECONDS)

    def channels(self, who: str) -> Channels | None:
        if who == "_ops":
            return self.receivers.ops
        return self.receivers.departments.get(who)

    async def _post(self, channel: str, url: str, body: dict, secret: str = "") -> tuple[int, str]:
        """(status for Alertmanager, reason). Backs off on rate-limit answers."""
        assert self.session is not None
        for attempt, pause in enumerate((*self.backoff, None)):
            target = url
            if channel == "dingtalk":
                target = dingtalk_url(url, secret)
            try:
                async with self.session.post(target, json=body) as r:
                    text = await r.text()
                    try:
                        errcode = int((await r.json(content_type=None) or {}).get("errcode", 0))
                    except (ValueError, TypeError, AttributeError):
                        errcode = 0 if r.status == 200 else -1
                    status = r.status
            except (TimeoutError, ClientError) as e:
                FAILED.labels(channel, "unreachable").inc()
                return 503, f"{redact(url)} unreachable ({type(e).__name__})"
            if status == 200 and errcode == 0:
                return 200, "ok"
            if status == 429 or errcode in RATE_LIMIT_CODES[channel]:
                RATE_LIMITED.labels(channel).inc()
                if pause is None:
                    FAILED.labels(channel, "rate_limited").inc()
                    return 503, f"{redact(url)} still rate-limited after {attempt} back-offs"
                log.warning(
                    "%s robot %s rate-limited (errcode %s); backing off %.1fs", channel, redact(url), errcode, pause
                )
                await asyncio.sleep(pause)
                continue
            if status >= 500:
                FAILED.labels(channel, str(status)).inc()
                return 503, f"{redact(url)} answered {status}"
            FAILED.labels(channel, f"errcode_{errcode}").inc()
            return 400, f"{redact(url)} refused the message (HTTP {status}, errcode {errcode}): {text[:200]}"
        return 503, "unreachable"

    async def handle(self, request: web.Request) -> web.Response:
        channel, who, idx = request.match_info["channel"], request.match_info["who"], int(request.match_info["i"])
        ch = self.channels(who)
        robots = (ch.wecom_robot if channel == "wecom" else ch.dingtalk) if ch else []
        if idx >= len(robots):
            return web.Response(
                status=404,
                text=f"no {channel} robot #{idx} for {who} in the receivers file; "
                "regenerate alertmanager.yml with `riskwatch alertmanager config`",
            )
        try:
            payload = await request.json()
        except ValueError:
            return web.Response(status=400, text="not JSON")
        keys = [(channel, who, idx, notification_key(a)) for a in payload.get("alerts", [])]
        fresh = [
            a for a, k in zip(payload.get("alerts", []), keys, strict=True) if k[3] is None or k not in self.delivered
        ]
        if keys and not fresh:  # Alertmanager's repeat of a notification this robot already posted
            REPEATED.labels(channel).inc()
            return web.Response(status=200, text="already delivered")
        payload = {**payload, "alerts": fresh}
        if channel == "wecom":
            url, body, secret = str(robots[idx]), wecom_body(payload), ""
        else:
            robot = robots[idx]
            assert isinstance(robot, DingTalkRobot)  # the dingtalk channel's robots
            url, body, secret = str(robot.url), dingtalk_body(payload), robot.secret.get_secret_value()
        status, reason = await self._post(channel, url, body, secret)
        if status == 200:
            SENT.labels(channel, who).inc()
            self.delivered.update((k, True) for k in keys if k[3] is not None)
        else:
            log.warning("%s robot of %s: %s", channel, who, reason)
        return web.Response(status=status, text=reason)

    async def metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post(r"/{channel:wecom|dingtalk}/{who}/{i:\d+}", self.handle)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/-/healthy", healthy)

        async def session(app):
            self.session = ClientSession(timeout=ClientTimeout(total=10))
            yield
            await self.session.close()

        app.cleanup_ctx.append(session)
        return app


def serve(receivers: Receivers, host: str, port: int) -> None:
    web.run_app(RobotAdapter(receivers).app(), host=host, port=port, print=None, access_log=None)


async def healthy(request: web.Request) -> web.Response:
    return web.Response(text="ok")
