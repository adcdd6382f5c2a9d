"""An indexed image by id: its metadata, a thumbnail, the original file.

Only images indexed in the collection and lying inside a library root are served; files are read
through the server's opener, which never follows a symlink out of a root.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import FileResponse, Response

from pixseek.api.deps import ImageId, State
from pixseek.api.errors import ERRORS
from pixseek.api.files import OpenFileResponse
from pixseek.api.presenters import image_info
from pixseek.api.schemas import ImageInfo
from pixseek.errors import NotFoundError
from pixseek.media.errors import DecodeError
from pixseek.media.files import UnsafeFileError

router = APIRouter(tags=["images"])

MEDIA_TYPES = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "GIF": "image/gif",
    "WEBP": "image/webp",
    "TIFF": "image/tiff",
    "BMP": "image/bmp",
    "HEIF": "image/heif",
    "AVIF": "image/avif",
}


@router.get("/images/{image_id}", response_model=ImageInfo, responses=ERRORS)
def image(image_id: ImageId, state: State) -> ImageInfo:
    info = image_info(state.served_image(image_id), state.roots)
    if info is None:  # its path stopped resolving inside a root since served_image looked
        raise NotFoundError(f"image {image_id} is outside the folders this server serves")
    return info


@router.get(
    "/images/{image_id}/thumbnail",
    responses={**ERRORS, 304: {"description": "Not modified (ETag)"}},
    response_class=FileResponse,
)
def thumbnail(
    request: Request,
    image_id: ImageId,
    state: State,
    # The sizes this server makes are listed in the OpenAPI document (openapi.describe_this_server).
    size: Annotated[int, Query(description="Longest side in pixels")] = 256,
) -> Response:
    """A JPEG thumbnail (sizes 128, 256 or 512), cached on disk and by browsers (ETag)."""
    sizes = state.settings.thumbnail_sizes
    if size not in sizes:
        raise HTTPException(400, f"size must be one of {', '.join(map(str, sizes))}")
    record = state.served_image(image_id)
    etag = f'"{record.content_hash}-{size}"'
    headers = {"ETag": etag, "Cache-Control": "public, max-age=604800"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    try:
        path = state.thumbnails.get(record.path, record.content_hash, size)
    except (FileNotFoundError, UnsafeFileError):  # gone, or no longer a plain file inside the root
        raise NotFoundError(f"the file of image {image_id} is gone; re-index its folder") from None
    except (OSError, DecodeError) as error:
        raise HTTPException(422, f"cannot make a thumbnail: {getattr(error, 'reason', error)}") from None
    return FileResponse(path, media_type="image/jpeg", headers=headers)


@router.get("/images/{image_id}/file", responses=ERRORS, response_class=FileResponse)
def original(image_id: ImageId, state: State) -> Response:
    """The original file of an indexed image inside a library root (never any other path).

    Opened once, beneath its root without following any symlink, and streamed from that
    descriptor: a path checked and then opened again by name could meanwhile lead anywhere.
    """
    record = state.served_image(image_id)
    try:
        opened = state.files.open(record.path)
    except (FileNotFoundError, UnsafeFileError):
        raise NotFoundError(f"the file of image {image_id} is gone; re-index its folder") from None
    except OSError as error:
        raise HTTPException(422, f"cannot read the file: {error.strerror or error}") from None
    return OpenFileResponse(
        opened,
        media_type=MEDIA_TYPES.get(record.format or "", "application/octet-stream"),
        headers={"Cache-Control": "private, max-age=3600"},
    )
