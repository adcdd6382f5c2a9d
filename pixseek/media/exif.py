"""The metadata the index stores, read from a decoded image's EXIF (and TIFF) tags.

EXIF is written by thousands of cameras and apps and is often malformed, so every field is read on
its own and a field that cannot be read is left empty, never costing the image. Kept apart from
decoding, which only asks for each field.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from PIL import ExifTags, Image

log = logging.getLogger(__name__)

ORIENTATION = ExifTags.Base.Orientation


def pillow_applied_orientation(img: Image.Image) -> int | None:
    """The orientation Pillow's TIFF reader applies by itself while loading (and then drops the
    tag): read before ``load()``, for the metadata."""
    return _attempt(_tiff_orientation, img)


def read_exif(img: Image.Image) -> Image.Exif | None:
    return _attempt(img.getexif)


def orientation(exif: Image.Exif | None) -> int | None:
    """The EXIF orientation (1-8) still to apply, or None."""
    return _attempt(_orientation_value, exif.get(ORIENTATION)) if exif is not None else None


def taken_at(exif: Image.Exif | None) -> datetime | None:
    return _attempt(_taken_at, exif) if exif is not None else None


def camera(exif: Image.Exif | None) -> str | None:
    return _attempt(_camera, exif) if exif is not None else None


def gps_position(exif: Image.Exif | None) -> tuple[float | None, float | None]:
    """(latitude, longitude) in signed decimal degrees, or (None, None)."""
    return (_attempt(_gps, exif) if exif is not None else None) or (None, None)


_T = TypeVar("_T")


def _attempt(func: Callable[..., _T], *args: Any) -> _T | None:
    """Run one metadata step; malformed EXIF is common and must cost a field, never the image."""
    try:
        return func(*args)
    except Exception as exc:
        log.debug("ignoring malformed metadata (%s): %s", getattr(func, "__name__", func), exc)
        return None


def _orientation_value(value: Any) -> int | None:
    if isinstance(value, (tuple, list)):
        value = value[0] if value else None
    return int(value) if isinstance(value, int) and 1 <= value <= 8 else None


def _tiff_orientation(img: Image.Image) -> int | None:
    tags = getattr(img, "tag_v2", None)
    return _orientation_value(tags.get(ORIENTATION)) if tags is not None else None


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return None
    cleaned = " ".join(value.replace("\x00", " ").split())
    return cleaned or None


def _taken_at(exif: Image.Exif) -> datetime | None:
    exif_ifd = exif.get_ifd(ExifTags.IFD.Exif)
    for value in (
        exif_ifd.get(ExifTags.Base.DateTimeOriginal),
        exif.get(ExifTags.Base.DateTimeOriginal),  # some writers misplace it in IFD0
        exif.get(ExifTags.Base.DateTime),
    ):
        parsed = _parse_datetime(_text(value))
        if parsed is not None:
            return parsed
    return None


def _parse_datetime(text: str | None) -> datetime | None:
    """Parse EXIF's "YYYY:MM:DD HH:MM:SS" and the common variants; "0000:00:00 ..." means unset."""
    if not text:
        return None
    for pattern in ("%Y:%m:%d %H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y:%m:%d %H:%M"):
        try:
            return datetime.strptime(text[:19], pattern)
        except ValueError:
            continue
    return None


def _camera(exif: Image.Exif) -> str | None:
    make = _text(exif.get(ExifTags.Base.Make))
    model = _text(exif.get(ExifTags.Base.Model))
    if make and model and model.lower().startswith(make.lower()):
        return model  # "Canon" + "Canon EOS R5" reads better as "Canon EOS R5"
    return " ".join(part for part in (make, model) if part) or None


def _gps(exif: Image.Exif) -> tuple[float, float] | None:
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    lat = _gps_coordinate(gps.get(ExifTags.GPS.GPSLatitude), gps.get(ExifTags.GPS.GPSLatitudeRef), 90)
    lon = _gps_coordinate(gps.get(ExifTags.GPS.GPSLongitude), gps.get(ExifTags.GPS.GPSLongitudeRef), 180)
    return (lat, lon) if lat is not None and lon is not None else None  # half a position is no use


def _gps_coordinate(value: Any, ref: Any, bound: float) -> float | None:
    """Degrees/minutes/seconds rationals plus an N/S/E/W ref to signed decimal degrees."""
    if value is None:
        return None
    parts = [float(part) for part in value] if isinstance(value, (tuple, list)) else [float(value)]
    if not 1 <= len(parts) <= 3:
        return None
    degrees = sum(part / 60**i for i, part in enumerate(parts))
    if not math.isfinite(degrees) or not 0 <= degrees <= bound:
        return None
    return -degrees if (_text(ref) or "").upper().startswith(("S", "W")) else degrees
