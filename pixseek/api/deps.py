"""What route handlers take besides their request: the server's state, the API-key check, and the
image-id path parameter several resources share.

Both dependencies are ``async``: FastAPI runs a plain ``def`` dependency in its thread pool, a
thread hop per request for what is an attribute read or a header comparison.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi import Path as PathParam

from pixseek.api.state import AppState


async def get_state(request: Request) -> AppState:
    """The state ``create_app`` put on the application (one per app: tests run several)."""
    state: AppState = request.app.state.pixseek
    return state


State = Annotated[AppState, Depends(get_state)]

ImageId = Annotated[int, PathParam(ge=1, le=2**63 - 1, description="Image id, as in search results")]


async def require_key(request: Request, state: State) -> None:
    """Mutating endpoints: the configured key in X-API-Key or 'Authorization: Bearer <key>'."""
    expected = state.settings.api_key
    if expected is None:
        return
    supplied = request.headers.get("x-api-key") or ""
    bearer = request.headers.get("authorization", "")
    if bearer.lower().startswith("bearer "):
        supplied = supplied or bearer[7:].strip()
    if not hmac.compare_digest(supplied.encode(), expected.encode()):
        raise HTTPException(401, "missing or wrong API key", headers={"WWW-Authenticate": "Bearer"})
