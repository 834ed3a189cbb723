"""Evidence from video callbacks: fetch a snapshot once, keep it content-addressed.

A 明厨亮灶 platform's image URL expires within days; the alert's evidence must not. The gateway
fetches the image once (httpx; one deadline for the whole fetch, not per read, so a server that
drips bytes is cut off; a size limit counted on the bytes read, whatever ``Content-Length`` says, and no
``Content-Encoding``: a gzip bomb would inflate before it is counted; only
from the hosts the source's mapping allows; no redirect is followed, not even to an allowed host,
so the allowlist is checked on the one URL that is fetched), stores it where the workbench keeps attachments
(``<workbench_dir>/attachments/<sha[:2]>/<sha><ext>``, the layout of ``web/routes/alert.py``) and
sets the detection's ``evidence_ref`` to ``sha256:<hex>``. A failed fetch does not refuse the
detection: its ``evidence_ref`` keeps the URL and the gateway logs a warning with the event id and
the reason (``edge.gateway.app._evidence``).

>>> import tempfile
>>> d = tempfile.mkdtemp()
>>> sha = store_content(d, b"\\xff\\xd8\\xff\\xe0 a jpeg", ".jpg")
>>> (Path(d) / "attachments" / sha[:2] / f"{sha}.jpg").exists()
True
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from collections import OrderedDict
from pathlib import Path
from urllib.parse import urlsplit

import httpx

log = logging.getLogger("riskwatch.edge.gateway.evidence")

IMAGE_MAGIC = {b"\xff\xd8\xff": ".jpg", b"\x89PNG\r\n\x1a\n": ".png"}


class EvidenceError(RuntimeError):
    pass


def store_content(workbench_dir: Path | str, data: bytes, ext: str) -> str:
    """Content-addressed store of the workbench's attachments; returns the SHA-256 (hex)."""
    sha = hashlib.sha256(data).hexdigest()
    d = Path(workbench_dir) / "attachments" / sha[:2]
    d.mkdir(parents=True, exist_ok=True)
    target = d / f"{sha}{ext}"
    if not target.exists():
        tmp = d / f".{sha}.{os.getpid()}.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, target)
    return sha


class SnapshotFetcher:
    """Fetches each URL at most once per process (a re-sent callback reuses the stored hash)."""

    def __init__(self, workbench_dir: Path | str, max_bytes: int, timeout: float, remember: int = 10_000):
        self.dir, self.max_bytes, self.timeout = Path(workbench_dir), max_bytes, timeout
        self._done: OrderedDict[str, str] = OrderedDict()
        self._remember = remember
        self._client: httpx.AsyncClient | None = None

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    async def fetch(self, url: str, hosts: tuple[str, ...]) -> str:
        """``sha256:<hex>`` of the stored image; raises :class:`EvidenceError` saying why not."""
        if url in self._done:
            return self._done[url]
        try:
            parts = httpx.URL(url)  # the parser that fetches checks the host: no parser differential
        except httpx.InvalidURL as e:
            raise EvidenceError(f"snapshot URL {url[:200]!r}: {e}") from None
        if parts.scheme not in ("http", "https"):
            raise EvidenceError(f"snapshot URL {url!r}: only http(s)")
        if parts.host not in hosts:
            raise EvidenceError(f"snapshot host {parts.host!r} is not in the source's allowlist {list(hosts)}")
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout, follow_redirects=False)
        buf = bytearray()
        try:
            async with asyncio.timeout(self.timeout):  # the whole fetch: httpx's timeout is per read
                async with self._client.stream("GET", parts, headers={"Accept-Encoding": "identity"}) as r:
                    if r.is_redirect:
                        where = urlsplit(r.headers.get("location", "")).hostname or "?"
                        raise EvidenceError(
                            f"snapshot {url}: HTTP {r.status_code} to host {where!r}: redirects are refused"
                        )
                    if r.status_code != 200:
                        raise EvidenceError(f"snapshot {url}: HTTP {r.status_code}")
                    coding = r.headers.get("content-encoding", "identity").strip().lower()
                    if coding not in ("", "identity"):  # a gzip bomb inflates a whole read before it is counted
                        raise EvidenceError(
                            f"snapshot {url}: Content-Encoding {coding[:40]!r} refused (an image is sent as is)"
                        )
                    declared = r.headers.get("content-length")
                    if declared and declared.isdigit() and int(declared) > self.max_bytes:
                        raise EvidenceError(f"snapshot {url}: {declared} bytes, over {self.max_bytes}")
                    async for chunk in r.aiter_raw():
                        buf += chunk
                        if len(buf) > self.max_bytes:
                            raise EvidenceError(f"snapshot {url}: over {self.max_bytes} bytes")
        except TimeoutError:
            raise EvidenceError(f"snapshot {url}: not complete within {self.timeout:g} s") from None
        except httpx.HTTPError as e:
            raise EvidenceError(f"snapshot {url}: {type(e).__name__}: {e}") from None
        data = bytes(buf)
        ext = next((x for magic, x in IMAGE_MAGIC.items() if data.startswith(magic)), None)
        if ext is None:
            raise EvidenceError(f"snapshot {url}: not a JPEG or PNG image")
        ref = "sha256:" + store_content(self.dir, data, ext)
        self._done[url] = ref
        if len(self._done) > self._remember:
            self._done.popitem(last=False)
        return ref
