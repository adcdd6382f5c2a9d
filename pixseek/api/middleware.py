"""The ASGI middlewares around every request: CORS when configured, the request-body read timeout,
and request metrics with the nosniff header.

All are plain ASGI middlewares: ``@app.middleware("http")`` (Starlette's BaseHTTPMiddleware) runs
every request through a task group and a memory stream, which costs more on the event loop than
the handler's own HTTP work.
"""

from __future__ import annotations

import time

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pixseek.api.body_timeout import BodyTimeout
from pixseek.api.config import ServerSettings
from pixseek.api.metrics import Metrics


def install_middleware(app: FastAPI, settings: ServerSettings, metrics: Metrics) -> None:
    """The last one added runs first: Observe is outermost, so it sees BodyTimeout's 408s too."""
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["*"],
        )
    app.add_middleware(BodyTimeout, seconds=settings.body_timeout_s)
    app.add_middleware(Observe, metrics=metrics)


class Observe:
    """Counts and times each request by its route, and sets ``X-Content-Type-Options: nosniff``."""

    def __init__(self, app: ASGIApp, metrics: Metrics):
        self.app = app
        self.metrics = metrics

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
                MutableHeaders(scope=message).setdefault("X-Content-Type-Options", "nosniff")
            await send(message)

        try:
            await self.app(scope, receive, send_with_header)
        finally:
            route = scope.get("route")  # set by the router on this same scope
            self.metrics.observe(getattr(route, "path", "static"), scope["method"], status, started)
