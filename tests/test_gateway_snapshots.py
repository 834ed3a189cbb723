"""Attacks on the gateway's snapshot fetch (edge/gateway/evidence.py), against real HTTP servers on
loopback: a redirect out of the allowlist, a redirect inside it (refused too: no redirect is followed),
a body over the size limit without Content-Length (close-delimited and chunked), a gzip bomb, a server that does not
answer and one that drips bytes. Each is refused, nothing is fetched from the host outside the
allowlist, nothing is stored, and through the gateway app the video event is still accepted with its
URL as ``evidence_ref`` and the reason in the log. No Kafka: the app's bus is a recorder."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hashlib
import logging
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import orjson
import pytest

from edge.gateway.app import create_app
from edge.gateway.evidence import EvidenceError, SnapshotFetcher
from edge.gateway.keys import SourceStore
from riskwatch.domain.catalog import load_catalog
from riskwatch.settings import Settings

JPEG = b"\xff\xd8\xff\xe0" + b"snapshot of a rodent" * 50
LIMIT = 64 * 1024  # bytes
TIMEOUT = 0.6  # seconds, the whole fetch
ALLOWED = ("127.0.0.1",)
GZIP_BOMB = gzip.compress(JPEG + bytes(64 * 1024 * 1024), compresslevel=6)


@dataclass
class Vendor:
    url: str  # on 127.0.0.1, in the allowlist
    outside: str  # on 127.0.0.2, not in the allowlist
    hits: list[str] = field(default_factory=list)
    outside_hits: list[str] = field(default_factory=list)


def _server(host: str, handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    srv = ThreadingHTTPServer((host, 0), handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


@pytest.fixture(scope="module")
def vendor() -> Iterator[Vendor]:
    v = Vendor("", "")

    class Outside(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            v.outside_hits.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", str(len(JPEG)))
            self.end_headers()
            self.wfile.write(JPEG)

        def log_message(self, *a):
            pass

    class Platform(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # chunked responses need it; each answer closes the connection

        def do_GET(self):  # noqa: N802
            v.hits.append(self.path)
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the gateway hung up: the point
                self._answer()
            self.close_connection = True

        def _answer(self) -> None:
            p = self.path
            if p == "/ok.jpg":
                self.send_response(200)
                self.send_header("Content-Length", str(len(JPEG)))
                self.end_headers()
                self.wfile.write(JPEG)
            elif p in ("/redirect-out.jpg", "/redirect-in.jpg"):
                self.send_response(302)
                self.send_header("Location", (v.outside if p == "/redirect-out.jpg" else v.url) + "/ok.jpg")
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif p == "/big-close.jpg":  # no Content-Length, no chunking: the body ends when the socket closes
                self.send_response(200)
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(JPEG)
                for _ in range(64):  # 4 MiB
                    self.wfile.write(b"\0" * 65536)
            elif p == "/big-chunked.jpg":
                self.send_response(200)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for _ in range(64):
                    chunk = JPEG + b"\0" * 65536
                    self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                self.wfile.write(b"0\r\n\r\n")
            elif p == "/gzip.jpg":  # 64 MiB of zeros in 64 KiB: httpx would inflate each read before counting
                body = GZIP_BOMB
                self.send_response(200)
                self.send_header("Content-Encoding", "gzip")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            elif p == "/slow.jpg":  # answers after 5 s
                time.sleep(5)
                self.send_response(200)
                self.send_header("Content-Length", str(len(JPEG)))
                self.end_headers()
                self.wfile.write(JPEG)
            elif p == "/drip.jpg":  # one byte every 0.1 s: no single read waits long, the whole takes 10 s
                self.send_response(200)
                self.send_header("Content-Length", str(len(JPEG)))
                self.end_headers()
                for b in JPEG[:100]:
                    self.wfile.write(bytes([b]))
                    self.wfile.flush()
                    time.sleep(0.1)
            else:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()

        def log_message(self, *a):
            pass

    inside, outside = _server("127.0.0.1", Platform), _server("127.0.0.2", Outside)
    v.url = f"http://127.0.0.1:{inside.server_address[1]}"
    v.outside = f"http://127.0.0.2:{outside.server_address[1]}"
    yield v
    inside.shutdown()
    outside.shutdown()


ATTACKS = {  # path → what the refusal says
    "/redirect-out.jpg": r"HTTP 302 to host '127\.0\.0\.2': redirects are refused",
    "/redirect-in.jpg": r"HTTP 302 to host '127\.0\.0\.1': redirects are refused",
    "/big-close.jpg": rf"over {LIMIT} bytes",
    "/big-chunked.jpg": rf"over {LIMIT} bytes",
    "/gzip.jpg": r"Content-Encoding 'gzip' refused",
    "/slow.jpg": r"ReadTimeout|not complete within",
    "/drip.jpg": rf"not complete within {TIMEOUT:g} s",
}


def _stored(d: Path) -> list[Path]:
    return sorted(p for p in (d / "attachments").rglob("*") if p.is_file()) if (d / "attachments").exists() else []


@pytest.mark.parametrize("path", list(ATTACKS))
def test_a_hostile_snapshot_server_is_refused_in_time_and_nothing_is_stored(vendor, tmp_path, path):
    async def go() -> None:
        f = SnapshotFetcher(tmp_path, max_bytes=LIMIT, timeout=TIMEOUT)
        try:
            with pytest.raises(EvidenceError, match=ATTACKS[path]):
                await f.fetch(vendor.url + path, ALLOWED)
        finally:
            await f.close()

    t0 = time.monotonic()
    asyncio.run(go())
    assert time.monotonic() - t0 < TIMEOUT + 1.5  # the drip would take 10 s, the slow answer 5 s
    assert vendor.outside_hits == [] and _stored(tmp_path) == []
    assert vendor.hits.count("/ok.jpg") == 0  # the redirect inside the allowlist was not followed either


def test_the_allowlist_is_checked_on_the_url_as_parsed(vendor, tmp_path):
    """A host outside the list is refused before any connection, whatever the URL dresses it in."""

    async def go() -> list[str]:
        f = SnapshotFetcher(tmp_path, max_bytes=LIMIT, timeout=TIMEOUT)
        port = vendor.outside.rsplit(":", 1)[1]
        urls = {
            vendor.outside + "/ok.jpg": "not in the source's allowlist",
            f"http://127.0.0.1@127.0.0.2:{port}/ok.jpg": "not in the source's allowlist",  # userinfo
            f"http://127.0.0.1:{port}@127.0.0.2:{port}/ok.jpg": "not in the source's allowlist",
            f"http://[::ffff:127.0.0.2]:{port}/ok.jpg": "not in the source's allowlist",
            f"file:///etc/passwd#{vendor.url}": "only http",
            # both parsers read host 127.0.0.1 (port 80, nothing listens there): not 127.0.0.2
            f"http://127.0.0.2:{port}\\@127.0.0.1/ok.jpg": "ConnectError",
        }
        why = []
        for u, expect in urls.items():
            with pytest.raises(EvidenceError, match=expect) as e:
                await f.fetch(u, ALLOWED)
            why.append(str(e.value))
        await f.close()
        return why

    asyncio.run(go())
    assert vendor.outside_hits == [] and _stored(tmp_path) == []


def test_a_good_snapshot_is_still_kept(vendor, tmp_path):
    async def go() -> str:
        f = SnapshotFetcher(tmp_path, max_bytes=LIMIT, timeout=TIMEOUT)
        try:
            return await f.fetch(vendor.url + "/ok.jpg", ALLOWED)
        finally:
            await f.close()

    sha = hashlib.sha256(JPEG).hexdigest()
    assert asyncio.run(go()) == f"sha256:{sha}"
    assert _stored(tmp_path) == [tmp_path / "attachments" / sha[:2] / f"{sha}.jpg"]


class Recorder:
    """Stands in for the gateway's Kafka producer."""

    def __init__(self) -> None:
        self.sent: list = []

    async def send_all(self, msgs) -> None:
        self.sent.extend(msgs)

    async def close(self) -> None:
        pass


def _callback(url: str, alarm: str) -> dict:
    at = (datetime.now(UTC) + timedelta(hours=8) - timedelta(minutes=3)).strftime("%Y-%m-%d %H:%M:%S")
    return {
        "alarmId": alarm,
        "deviceSerial": "CAM-33021-07",
        "storeCode": "E-cafe",
        "alarmType": "老鼠",
        "score": 91,
        "alarmTime": at,
        "picUrl": url,
    }


def test_through_the_gateway_every_event_is_kept_and_the_reason_logged(vendor, tmp_path, caplog):
    """The mingchu_video mapping's allowlist is the vendor's host; the settings add 127.0.0.1 (the local
    vendor): 127.0.0.2 is outside it. Every callback is accepted (202); a refused snapshot leaves the URL in
    ``evidence_ref`` and a warning naming the event and the reason."""
    s = Settings(
        _env_file=None,
        gateway_dir=tmp_path / "gateway",
        workbench_dir=tmp_path / "web",
        gateway_snapshot_max_bytes=LIMIT,
        gateway_snapshot_timeout_seconds=TIMEOUT,
        gateway_snapshot_extra_hosts=["127.0.0.1"],  # the local vendor; the shipped mapping allows no loopback
    )
    store = SourceStore.at(s.gateway_dir)
    _, key = store.add("mingchu", ("video",), mapping="mingchu_video")
    app = create_app(s, load_catalog(), store)
    bus = Recorder()
    app.state.gateway.bus = bus
    paths = ["/ok.jpg", *ATTACKS]
    body = [_callback(vendor.url + p, f"X{i}") for i, p in enumerate(paths)]
    body.append(_callback(vendor.outside + "/ok.jpg", "OUT"))

    async def go() -> httpx.Response:
        t = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=t, base_url="http://gw") as c:
            r = await c.post("/v1/video", json=body, headers={"Authorization": f"Bearer {key}"})
        await app.state.gateway.fetcher.close()
        return r

    with caplog.at_level(logging.WARNING, logger="riskwatch.edge.gateway"):
        r = asyncio.run(go())
    assert r.status_code == 202 and r.json()["accepted"] == len(body), r.text
    refs = {(v := orjson.loads(m.value))["event_id"]: v["evidence_ref"] for m in bus.sent if m.topic == "events.video"}
    assert len(refs) == len(body)
    sha = hashlib.sha256(JPEG).hexdigest()
    assert refs["mingchu:X0"] == f"sha256:{sha}"
    for i, p in enumerate(paths[1:], start=1):
        assert refs[f"mingchu:X{i}"] == vendor.url + p  # kept, with the vendor's URL
    assert refs["mingchu:OUT"] == vendor.outside + "/ok.jpg"
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for i, p in enumerate(paths[1:], start=1):
        line = next(x for x in logged.splitlines() if f"event mingchu:X{i}:" in x)
        assert "snapshot not kept" in line and re.search(ATTACKS[p], line), line
    assert "event mingchu:OUT: snapshot not kept: snapshot host '127.0.0.2' is not in the source's allowlist" in logged
    assert vendor.outside_hits == []
    assert _stored(s.workbench_dir) == [s.workbench_dir / "attachments" / sha[:2] / f"{sha}.jpg"]
