"""Request body size limit (413 problem) enforced before any route reads the body."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["BodySizeLimitMiddleware", "PublicRateLimitMiddleware"]


class _TooLarge(Exception):
    pass


class BodySizeLimitMiddleware:
    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.max_bytes:
                    await self._reject(send)
                    return
        seen = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._reject(send)

    async def _reject(self, send: Send) -> None:
        mib = self.max_bytes // (1024 * 1024)
        body = json.dumps({"type": "https://elicense.example/problems/upload_too_large",
                           "title": "Upload too large", "status": 413,
                           "detail": f"uploads are limited to {mib} MiB (ELICENSE_MAX_UPLOAD_MB)",
                           "code": "upload_too_large"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/problem+json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class PublicRateLimitMiddleware:
    """Token bucket per client address for unauthenticated requests to public endpoints.

    Buckets live in this worker's memory: with N workers a client gets at most N times the
    limit, which is the usual trade-off for a limiter that must never add a database round trip
    to verification. Requests with an Authorization header are not limited here.
    """

    PUBLIC_PREFIXES = ("/v1/verify/", "/v/", "/v1/trust-list", "/pki/", "/v1/certs/verify",
                       "/v1/auth/")

    def __init__(self, app: ASGIApp, *, per_minute: int) -> None:
        import threading
        self.app = app
        self.rate = per_minute / 60.0
        self.capacity = float(per_minute)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def _allow(self, key: str) -> float:
        """0 when allowed, else the seconds until a token is available."""
        import time
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - last) * self.rate)
            if tokens >= 1:
                self._buckets[key] = (tokens - 1, now)
                if len(self._buckets) > 100_000:  # forget idle clients
                    self._buckets.clear()
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1 - tokens) / self.rate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope.get("path", "").startswith(self.PUBLIC_PREFIXES) \
                or any(name == b"authorization" for name, _ in scope.get("headers", ())):
            await self.app(scope, receive, send)
            return
        client = scope.get("client") or ("?", 0)
        wait = self._allow(str(client[0]))
        if wait <= 0:
            await self.app(scope, receive, send)
            return
        retry = str(max(1, int(wait + 0.999)))
        body = json.dumps({"type": "https://elicense.example/problems/rate_limited",
                           "title": "Too many requests", "status": 429,
                           "detail": f"public endpoints are limited per client; retry in "
                                     f"{retry} s", "code": "rate_limited"}).encode()
        await send({"type": "http.response.start", "status": 429,
                    "headers": [(b"content-type", b"application/problem+json"),
                                (b"retry-after", retry.encode()),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
