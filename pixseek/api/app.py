"""The REST API and the web page, as one FastAPI application.

``create_app(ServerSettings(library_roots=[...], data_dir=..., api_key=...))`` builds it; ``pixseek
serve`` runs it with uvicorn (``serve --workers N``: uvicorn's worker processes each build one
with :func:`worker_app` from the settings the command put in the environment). It only
assembles: the routes are in ``routers/`` (one module per resource), what handlers take in
``deps.py``, error responses in ``errors.py``, the middlewares in ``middleware.py``, and the
server's state (the library and what is the server's own) in ``state.py``.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import AsyncIterator

from fastapi import FastAPI

import pixseek
from pixseek.api.config import ServerSettings
from pixseek.api.docs import install_docs
from pixseek.api.errors import install_error_handlers
from pixseek.api.middleware import install_middleware
from pixseek.api.openapi import describe_this_server
from pixseek.api.routers import collections, duplicates, images, indexing, search, service
from pixseek.api.routers.page import install_web_page
from pixseek.api.state import AppState

WORKER_SETTINGS_ENV = "PIXSEEK_SERVE_WORKER_SETTINGS"  # JSON {"workers": N, "settings": {...}}


def create_app(settings: ServerSettings | None = None, *, workers: int = 1) -> FastAPI:
    """``workers``: how many processes serve the collection (each builds its own app); with more
    than one, they elect the one that writes (docs/scaling.md, "Several server processes")."""
    settings = settings or ServerSettings()
    state = AppState(settings, workers=workers)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        state.warm_up()
        yield
        state.close()

    app = FastAPI(
        title="pixseek",
        version=pixseek.__version__,
        summary="Semantic image search over your image folders",
        lifespan=lifespan,
        docs_url=None,  # install_docs serves them with local assets: the defaults load a CDN
        redoc_url=None,
    )
    app.state.pixseek = state  # what deps.get_state hands to every handler
    install_docs(app)
    describe_this_server(app, state.rerankers, settings.thumbnail_sizes)
    role = (lambda: "writer" if state.is_writer else "reader") if workers > 1 else None
    install_middleware(app, settings, state.metrics, role)
    install_error_handlers(app, state.roots.redact)
    routers = (search, images, duplicates, indexing, collections, service)
    for router in (module.router for module in routers):
        app.include_router(router)
    install_web_page(app)
    return app


def worker_app() -> FastAPI:
    """The app of one of ``pixseek serve --workers N``'s processes (uvicorn's factory): the
    settings ``serve`` resolved, from the environment it started the workers with."""
    passed = json.loads(os.environ[WORKER_SETTINGS_ENV])
    return create_app(ServerSettings(**passed["settings"]), workers=int(passed["workers"]))
