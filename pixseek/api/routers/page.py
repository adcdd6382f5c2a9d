"""The search page at / and its files under /static/.

Not a StaticFiles mount at /: a mount there matched every path, so a method an API route lacks
(OPTIONS /search) answered the mount's 405 with ``Allow: GET, HEAD`` instead of the route's own.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

WEB_DIR = Path(__file__).resolve().parents[2] / "web" / "static"

router = APIRouter(include_in_schema=False)


@router.api_route("/", methods=["GET", "HEAD"])
def web_page() -> FileResponse:
    return FileResponse(WEB_DIR / "index.html", media_type="text/html")


def install_web_page(app: FastAPI) -> None:
    """The page and its files, when the package ships them."""
    if WEB_DIR.is_dir():
        app.mount("/static", StaticFiles(directory=WEB_DIR), name="web")
        app.include_router(router)
