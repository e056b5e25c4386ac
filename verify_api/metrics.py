"""A small Prometheus text-format registry (per worker process, as Prometheus expects)."""

from __future__ import annotations

import threading
import time
from collections import defaultdict

from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["Metrics", "MetricsMiddleware"]


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self._seconds: dict[tuple[str, str], float] = defaultdict(float)
        self._counters: dict[str, int] = defaultdict(int)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self._requests[(method, route, status)] += 1
            self._seconds[(method, route)] += seconds

    def inc(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._counters[name] += amount

    def render(self) -> str:
        lines = ["# HELP elicense_http_requests_total HTTP requests by route and status",
                 "# TYPE elicense_http_requests_total counter"]
        with self._lock:
            for (method, route, status), n in sorted(self._requests.items()):
                lines.append(f'elicense_http_requests_total{{method="{method}",route="{route}",'
                             f'status="{status}"}} {n}')
            lines += ["# HELP elicense_http_request_seconds_total time spent per route",
                      "# TYPE elicense_http_request_seconds_total counter"]
            for (method, route), s in sorted(self._seconds.items()):
                lines.append(f'elicense_http_request_seconds_total{{method="{method}",'
                             f'route="{route}"}} {s:.6f}')
            for name, n in sorted(self._counters.items()):
                lines += [f"# TYPE elicense_{name}_total counter", f"elicense_{name}_total {n}"]
        return "\n".join(lines) + "\n"


class MetricsMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = {"code": 500}

        async def _send(message: dict) -> None:  # type: ignore[type-arg]
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, _send)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            self.metrics.observe(scope.get("method", "?"), path, status["code"],
                                 time.perf_counter() - start)
