"""Who the client is and whether it came over TLS, for cookies and throttles.

Behind a TLS-terminating reverse proxy set ``workbench_trusted_proxy`` to its address: only
requests from that address have their ``X-Forwarded-For`` / ``X-Forwarded-Proto`` believed
(uvicorn's ProxyHeadersMiddleware), so the login throttle counts the real client and an
``https`` request is known as such. Anyone else sending those headers changes nothing.
:class:`SecureCookies` marks every cookie ``Secure`` on a request that arrived over https
(directly or through the trusted proxy), and always when ``workbench_cookie_secure`` is set.

>>> secure_cookie(b"rw_session=x; path=/; httponly")
b'rw_session=x; path=/; httponly; secure'
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send


def secure_cookie(value: bytes) -> bytes:
    return value if b"secure" in value.lower() else value + b"; secure"


class SecureCookies:
    def __init__(self, app: ASGIApp, always: bool = False):
        self.app, self.always = app, always

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not (self.always or scope.get("scheme") == "https"):
            await self.app(scope, receive, send)
            return

        async def marked(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    (k, secure_cookie(v) if k.lower() == b"set-cookie" else v) for k, v in message.get("headers", [])
                ]
            await send(message)

        await self.app(scope, receive, marked)
