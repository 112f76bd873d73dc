"""The web page's request guard, before every route but ``/health``: Host allow-list, password, body-size cap.

The page writes posts with the model and reads the knowledge base, so a stranger's browser must not reach it
through DNS rebinding (a site whose name resolves to 127.0.0.1 and sends its own Host), and one request must not
make it buffer an unbounded body. Where others share the network (a cluster), a password (HTTP Basic, which
every browser asks for by itself) keeps the page to the people given it. ``/health`` stays open: the kubelet
probes it by the pod's IP.
"""

from __future__ import annotations

import base64
import binascii
import secrets
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


def password_given(authorization: str, password: str) -> bool:
    """Whether an ``Authorization: Basic`` header carries ``password`` (any user name), compared in constant time."""
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        given = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return False
    return secrets.compare_digest(given.partition(":")[2].encode(), password.encode())


class RequestGuard:
    """ASGI middleware: 400 for a Host not allowed, 401 without the password, 413 for a body over ``max_bytes``.

    The password is asked only when one is set; the body cap holds for declared and streamed (chunked) bodies.
    """

    def __init__(
        self, app: ASGIApp, *, allowed_hosts: Iterable[str], max_bytes: int, password: str | None = None
    ) -> None:
        self.app = app
        self.allowed_hosts = [name.lower() for name in allowed_hosts]
        self.max_bytes = max_bytes
        self.password = password

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if not host_allowed(host_name(headers.get("host", "")), self.allowed_hosts):
            detail = "this Host is not one the page answers (PIPELINE_WEB_PAGE__ALLOWED_HOSTS)"
            await JSONResponse({"detail": detail}, 400)(scope, receive, send)
            return
        if self.password is not None and not password_given(headers.get("authorization", ""), self.password):
            challenge = {"WWW-Authenticate": 'Basic realm="genai-pipeline", charset="UTF-8"'}
            await JSONResponse({"detail": "this page needs its password"}, 401, challenge)(scope, receive, send)
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
