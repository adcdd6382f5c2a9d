"""A response that streams a file from a descriptor opened (and checked) before it was created.

Starlette's FileResponse takes a path and opens it again when the body is sent, after any check the
handler made on that path; this one never looks at a path.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from email.utils import formatdate

import anyio.to_thread
from starlette.responses import StreamingResponse

from pixseek.media.files import OpenFile

CHUNK_BYTES = 64 * 1024


class OpenFileResponse(StreamingResponse):
    """The bytes of ``opened`` (a checked regular file), with Content-Length and Last-Modified from
    its ``fstat``; the descriptor is closed when the body is sent, fails, or the response is
    dropped unsent (the file object closes it when collected).

    A file that shrinks while it is sent ends short of its Content-Length, so the server cuts the
    connection rather than pass off a truncated body; one that grows is sent up to its fstat size.
    """

    def __init__(self, opened: OpenFile, *, media_type: str, headers: Mapping[str, str] | None = None):
        size = opened.stat.st_size
        all_headers = {
            **(headers or {}),
            "Content-Length": str(size),
            "Last-Modified": formatdate(opened.stat.st_mtime, usegmt=True),
        }
        super().__init__(_chunks(opened, size), media_type=media_type, headers=all_headers)


async def _chunks(opened: OpenFile, size: int) -> AsyncIterator[bytes]:
    try:
        remaining = size
        while remaining > 0:
            chunk = await anyio.to_thread.run_sync(opened.file.read, min(CHUNK_BYTES, remaining))
            if not chunk:
                return
            remaining -= len(chunk)
            yield chunk
    finally:
        opened.close()
