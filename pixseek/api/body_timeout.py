"""A read timeout for request bodies, as a plain ASGI middleware.

uvicorn times out idle keep-alive connections, but not a request whose body stops arriving: a
client that declares ``Content-Length: 1000`` and sends ten bytes holds its connection (and the
handler waiting on it) for as long as it likes, and a few hundred such clients hold the server.
Here every wait for the next body chunk is bounded; past it the request ends with 408 and
``Connection: close``, which makes uvicorn close the connection.
"""

from __future__ import annotations

import asyncio
import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

DISCONNECT: Message = {"type": "http.disconnect"}


class BodyTimeout:
    """Ends a request whose body sends nothing for ``seconds`` with 408 and closes its connection.

    The timeout is per chunk, like nginx's ``client_body_timeout``: a large upload on a slow link
    keeps going as long as bytes keep coming. Once the body is complete, ``receive`` is passed
    through untouched (responses wait on it for a disconnect, for as long as they stream)."""

    def __init__(self, app: ASGIApp, seconds: float):
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body_done = False
        timed_out = False
        response_started = False

        async def receive_with_timeout() -> Message:
            nonlocal body_done, timed_out
            if timed_out:
                return DISCONNECT
            if body_done:
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), self.seconds)
            except TimeoutError:
                timed_out = True
                if not response_started:
                    await _send_408(send, self.seconds)
                return DISCONNECT  # the app reads a client that went away, and gives up
            body_done = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        async def send_unless_timed_out(message: Message) -> None:
            nonlocal response_started
            if timed_out:
                return  # the 408 was the response; what the app answers to the "disconnect" is dropped
            response_started = response_started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive_with_timeout, send_unless_timed_out)
        except Exception:
            if not timed_out:
                raise
            # The app's error on the cut-off body (ClientDisconnect, a parser's) is this timeout's.


async def _send_408(send: Send, seconds: float) -> None:
    body = json.dumps({"detail": f"the request body stalled: nothing arrived for {seconds:g} s"}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 408,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
