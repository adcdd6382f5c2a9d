"""The metadata the index stores, read from a decoded image's EXIF (and TIFF) tags.

EXIF is written by thousands of cameras and apps and is often malformed, so every field is read on
its own and a field that cannot be read is left empty, never costing the image. Kept apart from
decoding, which only asks for each field.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar
from xml.etree import ElementTree

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


# ---- searchable text: EXIF ImageDescription, Windows XP* tags and the XMP packet --------------------
_XP_TITLE, _XP_COMMENT, _XP_KEYWORDS, _XP_SUBJECT = 0x9C9B, 0x9C9C, 0x9C9E, 0x9C9F
_MAX_XMP_BYTES = 4 << 20  # an XMP packet in a JPEG is at most 64 KB; extended ones stay far below this
_MAX_FIELD_CHARS = 1 << 20  # one text field; the keyword index searches its first 16,383 words anyway
_XMP_NAMESPACES = {
    "x": "adobe:ns:meta/",
    "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
    "dc": "http://purl.org/dc/elements/1.1/",
}


@dataclass(frozen=True)
class DescriptiveText:
    """What an image says about itself in words: a caption, a title, keywords (each or None)."""

    description: str | None = None
    title: str | None = None
    keywords: str | None = None


NO_TEXT = DescriptiveText()


def descriptive_text(img: Image.Image, exif: Image.Exif | None) -> DescriptiveText:
    """Description, title and keywords from EXIF (ImageDescription, XPTitle, XPComment, XPSubject,
    XPKeywords) and XMP (dc:description, dc:title, dc:subject), each field read on its own; both
    sources are joined when they differ (a DAM writes XMP, Windows Explorer the XP tags)."""
    xmp = _attempt(_xmp_fields, img) or {}
    found: dict[str, list[str]] = {"description": [], "title": [], "keywords": []}
    if exif is not None:
        for name, value in (
            ("description", _attempt(_text, exif.get(ExifTags.Base.ImageDescription))),
            ("description", _attempt(_xp_text, exif.get(_XP_COMMENT))),
            ("description", _attempt(_xp_text, exif.get(_XP_SUBJECT))),
            ("title", _attempt(_xp_text, exif.get(_XP_TITLE))),
            ("keywords", _attempt(_xp_text, exif.get(_XP_KEYWORDS))),
        ):
            if value:
                found[name].append(value)
    for name, values in xmp.items():
        found[name].extend(values)
    joined = {name: _join(values) for name, values in found.items()}
    return DescriptiveText(**joined)


def _join(values: list[str]) -> str | None:
    unique = list(dict.fromkeys(value for value in values if value))
    return "; ".join(unique)[:_MAX_FIELD_CHARS] or None


def _xp_text(value: Any) -> str | None:
    """Windows' XP* tags: UTF-16LE bytes, which Pillow hands over as bytes or a tuple of ints."""
    if value is None:
        return None
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, (tuple, list)):
        value = bytes(int(v) & 0xFF for v in value)
    if not isinstance(value, bytes):
        return None
    return _text(value.decode("utf-16-le", "replace"))


def _xmp_packet(img: Image.Image) -> bytes | None:
    """The raw XMP packet: JPEG and WebP keep it in ``info["xmp"]``, PNG in an iTXt chunk, TIFF in
    tag 700. Read here, not with ``Image.getxmp()``, which needs defusedxml."""
    info = img.info
    packet = info.get("xmp") or info.get("XML:com.adobe.xmp")
    if packet is None:
        tags = getattr(img, "tag_v2", None)
        packet = tags.get(700) if tags is not None else None
    if isinstance(packet, str):
        packet = packet.encode("utf-8", "replace")
    return packet if isinstance(packet, bytes) and packet else None


def _xmp_fields(img: Image.Image) -> dict[str, list[str]]:
    """dc:description, dc:title (rdf:Alt, any language) and dc:subject (rdf:Bag) of the packet.
    A packet with a DTD is refused unparsed: entity expansion (a "billion laughs") is the attack
    the standard library's parser does not rule out, and no XMP writer needs a DTD."""
    packet = _xmp_packet(img)
    if packet is None or len(packet) > _MAX_XMP_BYTES or b"<!DOCTYPE" in packet or b"<!ENTITY" in packet:
        return {}
    start = packet.find(b"<x:xmpmeta")
    if start < 0:
        start = packet.find(b"<rdf:RDF")
    end_tag = b"</x:xmpmeta>" if packet[start:].startswith(b"<x:xmpmeta") else b"</rdf:RDF>"
    end = packet.find(end_tag, start)
    if start < 0 or end < 0:
        return {}
    root = ElementTree.fromstring(packet[start : end + len(end_tag)])
    out: dict[str, list[str]] = {}
    for field, name in (("description", "description"), ("title", "title"), ("keywords", "subject")):
        values = [
            cleaned
            for element in root.iterfind(f".//dc:{name}//rdf:li", _XMP_NAMESPACES)
            if (cleaned := _text("".join(element.itertext())))
        ]
        # Some writers store dc:title as an attribute of rdf:Description, or as plain element text.
        for element in root.iterfind(f".//dc:{name}", _XMP_NAMESPACES):
            if not len(element) and (cleaned := _text(element.text)):
                values.append(cleaned)
        for description in root.iterfind(".//rdf:Description", _XMP_NAMESPACES):
            if cleaned := _text(description.get(f"{{{_XMP_NAMESPACES['dc']}}}{name}")):
                values.append(cleaned)
        if values:
            out[field] = values
    return out
