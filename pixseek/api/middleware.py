"""The ASGI middlewares around every request: CORS when configured, the request-body read timeout,
and request metrics with the nosniff header (and, with several worker processes, which worker
answered: ``X-Pixseek-Worker: PID`` and ``X-Pixseek-Role: writer|reader``).

All are plain ASGI middlewares: ``@app.middleware("http")`` (Starlette's BaseHTTPMiddleware) runs
every request through a task group and a memory stream, which costs more on the event loop than
the handler's own HTTP work.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pixseek.api.body_timeout import BodyTimeout
from pixseek.api.config import ServerSettings
from pixseek.api.metrics import Metrics


def install_middleware(
    app: FastAPI, settings: ServerSettings, metrics: Metrics, role: Callable[[], str] | None = None
) -> None:
    """The last one added runs first: Observe is outermost, so it sees BodyTimeout's 408s too.
    ``role``: with several worker processes, this one's role, sent with every response."""
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["*"],
        )
    app.add_middleware(BodyTimeout, seconds=settings.body_timeout_s)
    app.add_middleware(Observe, metrics=metrics, role=role)


class Observe:
    """Counts and times each request by its route, and sets ``X-Content-Type-Options: nosniff``
    (and the worker headers when given ``role``)."""

    def __init__(self, app: ASGIApp, metrics: Metrics, role: Callable[[], str] | None = None):
        self.app = app
        self.metrics = metrics
        self.role = role

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # if the app fails before it starts a response

        async def send_with_header(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = MutableHeaders(scope=message)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                if self.role is not None:
                    headers["X-Pixseek-Worker"] = str(os.getpid())
                    headers["X-Pixseek-Role"] = self.role()
            await send(message)

        try:
            await self.app(scope, receive, send_with_header)
        finally:
            route = scope.get("route")  # set by the router on this same scope
            self.metrics.observe(getattr(route, "path", "static"), scope["method"], status, started)
