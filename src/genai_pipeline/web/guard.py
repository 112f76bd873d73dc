"""The web page's request guard: a Host allow-list and a body-size cap, in front of every route but ``/health``.

The page writes posts with the model and reads the knowledge base, so a stranger's browser must not reach it
through DNS rebinding (a site whose name resolves to 127.0.0.1 and sends its own Host), and one request must not
make it buffer an unbounded body. ``/health`` stays open: the kubelet probes it by the pod's IP.
"""

from __future__ import annotations

from collections.abc import Iterable

from fastapi import HTTPException
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

OPEN_PATHS = frozenset({"/health"})


def host_name(header: str) -> str:
    """The Host header without its port, lower-cased (``[::1]:8090`` gives ``[::1]``)."""
    header = header.strip().lower()
    if header.startswith("["):
        return header.split("]", 1)[0] + "]"
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def host_allowed(host: str, allowed: Iterable[str]) -> bool:
    """Exact names, or ``*.suffix`` patterns for any subdomain of ``suffix``."""
    return any(host == name or (name.startswith("*.") and host.endswith(name[1:])) for name in allowed)


class RequestGuard:
    """ASGI middleware: 400 for a Host not allowed, 413 for a body over ``max_bytes`` (declared or streamed)."""

    def __init__(self, app: ASGIApp, *, allowed_hosts: Iterable[str], max_bytes: int) -> None:
        self.app = app
        self.allowed_hosts = [name.lower() for name in allowed_hosts]
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if not host_allowed(host_name(headers.get("host", "")), self.allowed_hosts):
            detail = "this Host is not one the page answers (PIPELINE_WEB_PAGE__ALLOWED_HOSTS)"
            await JSONResponse({"detail": detail}, 400)(scope, receive, send)
            return
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await JSONResponse({"detail": f"request body over {self.max_bytes} bytes"}, 413)(scope, receive, send)
            return
        received = 0

        async def capped() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:  # a chunked body declares no length
                raise HTTPException(413, f"request body over {self.max_bytes} bytes")
            return message

        await self.app(scope, capped, send)
