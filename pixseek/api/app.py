"""The REST API and the web page, as one FastAPI application.

``create_app(ServerSettings(library_roots=[...], data_dir=..., api_key=...))`` builds it; ``pixseek
serve`` runs it with uvicorn. It only assembles: the routes are in ``routers/`` (one module per
resource), what handlers take in ``deps.py``, error responses in ``errors.py``, the middlewares in
``middleware.py``, and the server's state (the library and what is the server's own) in
``state.py``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI

import pixseek
from pixseek.api.config import ServerSettings
from pixseek.api.docs import install_docs
from pixseek.api.errors import install_error_handlers
from pixseek.api.middleware import install_middleware
from pixseek.api.openapi import describe_this_server
from pixseek.api.routers import duplicates, images, indexing, search, service
from pixseek.api.routers.page import install_web_page
from pixseek.api.state import AppState


def create_app(settings: ServerSettings | None = None) -> FastAPI:
    settings = settings or ServerSettings()
    state = AppState(settings)

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
    install_middleware(app, settings, state.metrics)
    install_error_handlers(app, state.roots.redact)
    for router in (search.router, images.router, duplicates.router, indexing.router, service.router):
        app.include_router(router)
    install_web_page(app)
    return app
