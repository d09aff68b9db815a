"""Security headers on every response, and requests refused before any route sees them.

- Headers: a Content-Security-Policy (own origin only; no inline script; the dashboard's
  one inline ``<style>`` allowed by its hash; no framing), ``X-Frame-Options: DENY``,
  ``X-Content-Type-Options: nosniff``, ``Referrer-Policy: no-referrer``. The API docs page
  (Swagger UI from a CDN) gets no CSP.
- Refused: a NUL character in the path, the query or a JSON / form body (400). PostgreSQL
  cannot store one and raises, which would be a 500.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

DOCS_PATHS = ("/api/v1/docs", "/api/v1/redoc")
MAX_CHECKED_BODY = 4 * 1024 * 1024  # JSON/form bodies above this are left to the route
_STYLE = re.compile(rb"<style>(.*?)</style>", re.DOTALL)


def inline_style_hashes(html_files: Iterable[Path]) -> list[str]:
    """CSP source expressions for the inline ``<style>`` blocks of ``html_files``."""
    out = []
    for path in html_files:
        for block in _STYLE.findall(path.read_bytes()):
            digest = base64.b64encode(hashlib.sha256(block).digest()).decode()
            out.append(f"'sha256-{digest}'")
    return out


def content_security_policy(style_hashes: Iterable[str] = ()) -> str:
    styles = " ".join(["'self'", *style_hashes])
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            f"style-src {styles}",
            "img-src 'self' data: blob:",
            "media-src 'self' blob:",  # evidence clips play from authenticated blobs
            "connect-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


class Guard:
    """Pure ASGI middleware (streaming responses such as SSE pass through untouched)."""

    def __init__(self, app: ASGIApp, csp: str) -> None:
        self.app = app
        self.headers = [
            (b"x-frame-options", b"DENY"),
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"no-referrer"),
        ]
        self.csp = (b"content-security-policy", csp.encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = list(self.headers)
        if not str(scope.get("path", "")).startswith(DOCS_PATHS):
            headers.append(self.csp)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *headers]}
            await send(message)

        if _has_nul(scope.get("raw_path") or b"") or _has_nul(scope.get("query_string", b"")):
            await _refuse(send_with_headers, "a NUL character in the URL")
            return
        kind = _checked_body(scope)
        if kind is not None:
            body, receive = await _buffer(receive)
            nul = (
                _has_nul(body) if kind == b"application/x-www-form-urlencoded" else b"\x00" in body
            )
            if nul or b"\\u0000" in body:
                await _refuse(send_with_headers, "a NUL character in the request body")
                return
        await self.app(scope, receive, send_with_headers)


def _has_nul(raw: bytes) -> bool:
    return b"\x00" in raw or b"%00" in raw


def _checked_body(scope: Scope) -> bytes | None:
    """The content type of a body to check for NUL (JSON or a form), or None."""
    headers = dict(scope.get("headers", []))
    kind: bytes = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
    if kind not in (b"application/json", b"application/x-www-form-urlencoded"):
        return None
    length = headers.get(b"content-length", b"0")
    return kind if not length.isdigit() or int(length) <= MAX_CHECKED_BODY else None


async def _buffer(receive: Receive) -> tuple[bytes, Receive]:
    """The whole body, and a ``receive`` that replays it to the app."""
    chunks: list[bytes] = []
    more = True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    body = b"".join(chunks)
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return body, replay


async def _refuse(send: Send, why: str) -> None:
    payload: dict[str, Any] = {"detail": f"refused: {why}"}
    body = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 400,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
