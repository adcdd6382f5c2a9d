"""One indexed image of a collection, looked up by id, as plain data.

Front ends show and serve images by id (a result's thumbnail, its file, "more like this"); they get
this frozen copy of the row rather than the store's ORM object, and only for an image that is
indexed in the collection they search, never for a failed row or another collection's image.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pixseek.errors import NotFoundError
from pixseek.store.models import STATUS_INDEXED, ImageRecord
from pixseek.store.records import CollectionInfo
from pixseek.store.repository import Store


@dataclass(frozen=True)
class IndexedImage:
    id: int
    path: str  # absolute, as indexed
    size: int  # bytes on disk
    format: str | None
    width: int | None
    height: int | None
    taken_at: datetime | None
    camera: str | None
    gps_lat: float | None
    gps_lon: float | None
    content_hash: str  # of the bytes indexed: a thumbnail's cache key and ETag


def indexed_image(store: Store, collection: CollectionInfo, image_id: int) -> IndexedImage:
    record = store.images([image_id]).get(image_id)
    if (
        record is None
        or record.collection_id != collection.id
        or record.status != STATUS_INDEXED
        or record.content_hash is None  # every indexed row has one: its content was hashed
    ):
        raise NotFoundError(f"no indexed image {image_id}")
    return image_of(record)


def image_of(record: ImageRecord) -> IndexedImage:
    """The frozen copy of an indexed row (its content hash set: every indexed row has one)."""
    return IndexedImage(
        id=record.id,
        path=record.path,
        size=record.size,
        format=record.format,
        width=record.width,
        height=record.height,
        taken_at=record.taken_at,
        camera=record.camera,
        gps_lat=record.gps_lat,
        gps_lon=record.gps_lon,
        content_hash=record.content_hash or "",
    )
