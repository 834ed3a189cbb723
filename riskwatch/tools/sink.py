"""A local receiver sink standing in for the channels outside the county (demo and tests), on 127.0.0.1.

* :class:`ReceiverSink` — one HTTP server for every department's generic webhook (``/hook/<dept>``),
  the 企业微信 robot API (``/wecom/<dept>?key=...``) and the 钉钉 robot API
  (``/dingtalk/<dept>?access_token=...&timestamp=...&sign=...``, which verifies the signature the
  way 钉钉 documents it and answers errcode 310000 when it is wrong). Faults can be scripted:
  ``fail(path, n, status)`` answers ``status`` to the next *n* requests on a path;
  ``rate_limit(path, n)`` answers the robot's rate-limit errcode *n* times.
* :class:`SmtpSink` — an aiosmtpd server recording every message (aiosmtpd is a test/demo dependency).
"""

from __future__ import annotations

import base64
import email
import email.policy
import hashlib
import hmac
import json
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Request:
    path: str  # without query
    query: dict
    body: dict
    at: float  # wall clock
    status: int
    answer: dict = field(default_factory=dict)


@dataclass
class ReceiverSink:
    port: int = 0  # 0: any free port (see .port after start)
    dingtalk_secret: str = "SECtest-signing-secret"
    on_request: object = None  # called with each Request (the demo prints them)
    requests: list[Request] = field(default_factory=list)
    _faults: dict = field(default_factory=dict)  # path -> [remaining, status]
    _limits: dict = field(default_factory=dict)  # path -> remaining rate-limit answers
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> ReceiverSink:
        outer = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n)
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = {"_raw": raw.decode(errors="replace")}
                path, _, q = self.path.partition("?")
                status, answer = outer._answer(path, dict(urllib.parse.parse_qsl(q)), q)
                req = Request(path, dict(urllib.parse.parse_qsl(q)), body, time.time(), status, answer)
                with outer.lock:
                    outer.requests.append(req)
                if outer.on_request is not None:
                    outer.on_request(req)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        class Server(ThreadingHTTPServer):
            request_queue_size = (
                1024  # Alertmanager flushes hundreds of groups at once (the default 5 drops SYNs: 1 s retries)
            )
            daemon_threads = True

        self.server = Server(("127.0.0.1", self.port), H)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True, name="fake-receivers").start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def fail(self, path: str, n: int, status: int = 500) -> None:
        self._faults[path] = [n, status]

    def rate_limit(self, path: str, n: int) -> None:
        self._limits[path] = n

    def _answer(self, path: str, query: dict, raw_query: str) -> tuple[int, dict]:
        with self.lock:
            f = self._faults.get(path)
            if f and f[0] > 0:
                f[0] -= 1
                return f[1], {"error": "scripted failure"}
            if self._limits.get(path, 0) > 0:
                self._limits[path] -= 1
                code = 45009 if path.startswith("/wecom") else 130101
                return 200, {"errcode": code, "errmsg": "api freq out of limit"}
        if path.startswith("/dingtalk"):
            ts, sign = query.get("timestamp", ""), query.get("sign", "")
            mac = hmac.new(
                self.dingtalk_secret.encode(), f"{ts}\n{self.dingtalk_secret}".encode(), hashlib.sha256
            ).digest()
            # the sign arrives URL-encoded in the query string; parse_qsl decoded it once
            if not ts or sign != base64.b64encode(mac).decode() or abs(time.time() * 1000 - int(ts)) > 3600_000:
                return 200, {"errcode": 310000, "errmsg": "sign not match"}
            return 200, {"errcode": 0, "errmsg": "ok"}
        if path.startswith("/wecom"):
            if not query.get("key"):
                return 200, {"errcode": 93000, "errmsg": "invalid webhook url"}
            return 200, {"errcode": 0, "errmsg": "ok"}
        return 200, {"status": "ok"}

    def ok(self, prefix: str) -> list[Request]:
        with self.lock:
            return [
                r
                for r in self.requests
                if r.path.startswith(prefix) and r.status == 200 and r.answer.get("errcode", 0) == 0
            ]

    def hook_alerts(self, dept: str) -> list[dict]:
        """Every alert Alertmanager delivered (HTTP 200) to a department's generic webhook."""
        return [a for r in self.ok(f"/hook/{dept}") if r.path == f"/hook/{dept}" for a in r.body.get("alerts", [])]


@dataclass
class SmtpSink:
    port: int
    messages: list = field(default_factory=list)
    on_message: object = None

    def start(self) -> SmtpSink:
        from aiosmtpd.controller import Controller

        outer = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
                outer.messages.append((list(envelope.rcpt_tos), msg))
                if outer.on_message is not None:
                    outer.on_message(list(envelope.rcpt_tos), msg)
                return "250 OK"

        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    def to(self, address: str) -> list:
        return [m for rcpt, m in self.messages if address in rcpt]
