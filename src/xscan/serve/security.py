"""Request guards: API token, request-body limit, identifier validation.

* The token is compared in constant time (:func:`hmac.compare_digest`) whether it arrives as
  ``Authorization: Bearer <token>`` or ``X-API-Token: <token>``.
* The body limit is enforced while the body streams in (an ASGI ``receive`` wrapper), so an
  oversized upload is refused after at most ``limit`` bytes, never read whole. A declared
  ``Content-Length`` above the limit is refused before any byte is read.
* Lane and scan ids are short, safe strings: they end up in the audit log and in metric labels.
"""

from __future__ import annotations

import hmac
import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,63}$")


class BodyTooLarge(Exception):
    """The request body is larger than the configured limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body exceeds the limit of {limit} bytes")
        self.limit = limit


class TokenChecker:
    """Constant-time API token check; ``token=None`` disables authentication."""

    def __init__(self, token: str | None) -> None:
        self._token = token.encode() if token else None

    @property
    def enabled(self) -> bool:
        return self._token is not None

    def check(self, headers: dict[str, str] | object) -> bool:
        """True when ``headers`` (a case-insensitive mapping) carry the right token."""
        if self._token is None:
            return True
        supplied = b""
        auth = headers.get("authorization", "")  # type: ignore[attr-defined]
        if auth[:7].lower() == "bearer ":
            supplied = auth[7:].strip().encode()
        else:
            supplied = headers.get("x-api-token", "").strip().encode()  # type: ignore[attr-defined]
        # compare_digest on equal-purpose bytes; a missing token compares against b"".
        return hmac.compare_digest(supplied, self._token)


def validate_id(name: str, value: str | None) -> str | None:
    """``None`` or a short safe identifier; raises ``ValueError`` naming ``name`` otherwise."""
    if value is None or value == "":
        return None
    if not ID_PATTERN.match(value):
        raise ValueError(
            f"{name}: expected 1-64 characters of letters, digits and . _ : - "
            f"(starting with a letter or digit), got {value[:80]!r}"
        )
    return value


class BodyLimitMiddleware:
    """ASGI middleware refusing request bodies above ``max_bytes`` while they stream.

    The endpoint sees :class:`BodyTooLarge` raised from ``receive()`` and answers 413 itself
    (with the service's JSON error body).
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        declared = None
        for key, value in scope.get("headers", ()):
            if key == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = None
        total = 0

        async def limited_receive() -> Message:
            nonlocal total
            if declared is not None and declared > limit:
                raise BodyTooLarge(limit)
            message = await receive()
            if message["type"] == "http.request":
                total += len(message.get("body", b""))
                if total > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, limited_receive, send)
