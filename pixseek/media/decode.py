"""Turn the bytes of a photo file into a model-ready RGB image plus the metadata the index stores.

Photo folders are hostile input: truncated uploads, renamed text files, CMYK scans, 16-bit exports,
decompression bombs. Every one of those must end as a :class:`DecodeError` with a short reason the
indexer can record and show, never as a crash of the worker or an out-of-memory kill.
"""

from __future__ import annotations

import io
import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import numpy as np
from PIL import ExifTags, Image, UnidentifiedImageError
from PIL.JpegImagePlugin import JpegImageFile

log = logging.getLogger(__name__)

# The biggest legitimate inputs we expect are ~100-150 MP (medium-format sensors, stitched phone
# panoramas). This keeps those while bounding one decode at ~540 MB of RGB, which a few parallel
# workers can afford; a 1-bit PNG can claim far more in a few kB. It equals Pillow's own refusal
# threshold (2 x Image.MAX_IMAGE_PIXELS): Image.open refuses anything larger before we see it, so a
# larger max_pixels has no effect unless the application raises Pillow's limit too.
DEFAULT_MAX_PIXELS = 178_956_970

HEIF_HINT = "HEIF support needs pillow-heif: pip install pixseek[heif]"


class DecodeError(Exception):
    """A file that cannot become an image; ``reason`` is short enough to store and show per file."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ImageMetadata:
    format: str
    width: int  # full-resolution size as displayed (after EXIF orientation), even when draft-decoded
    height: int
    taken_at: datetime | None
    camera: str | None
    orientation: int | None
    gps_lat: float | None
    gps_lon: float | None


@dataclass(frozen=True)
class DecodedImage:
    image: Image.Image  # mode "RGB", upright
    metadata: ImageMetadata


# --- format sniffing --------------------------------------------------------------------------------

# DIB header sizes of real BMP variants: "BM" alone is too weak, plenty of text starts with it.
_BMP_HEADER_SIZES = frozenset({12, 16, 40, 52, 56, 64, 108, 124})
_AVIF_BRANDS = frozenset({b"avif", b"avis"})
_HEIF_BRANDS = frozenset(
    {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs", b"mif1", b"msf1"}
)


def sniff_format(head: bytes) -> str | None:
    """Name the image format from the first bytes (32 suffice), as Pillow names it.

    Content decides, not the extension, so renamed files are found and non-images are rejected
    before any decoder (and its attack surface) sees them.
    """
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):  # classic and BigTIFF
        return "TIFF"
    if head[:2] == b"BM" and int.from_bytes(head[14:18], "little") in _BMP_HEADER_SIZES:
        return "BMP"
    if head[4:8] == b"ftyp":
        return _sniff_ftyp(head)
    return None


def _sniff_ftyp(head: bytes) -> str | None:
    """Tell AVIF from HEIC by the ftyp brands; both share the ISO-BMFF container with video files."""
    box_end = min(int.from_bytes(head[:4], "big"), len(head))
    brands = {head[8:12]} | {head[i : i + 4] for i in range(16, box_end - 3, 4)}
    if brands & _AVIF_BRANDS:
        return "AVIF"
    if brands & _HEIF_BRANDS:
        return "HEIF"
    return None


# Pillow format names that may open each sniffed format. Opening with only these keeps exotic
# plugins (EPS runs Ghostscript) away from hostile files. JPEG with an MPF block opens as "MPO".
_PILLOW_FORMATS = {
    "JPEG": ("JPEG",),
    "PNG": ("PNG",),
    "GIF": ("GIF",),
    "WEBP": ("WEBP",),
    "TIFF": ("TIFF",),
    "BMP": ("BMP",),
    "AVIF": ("AVIF",),
    "HEIF": ("HEIF", "AVIF"),  # a "mif1" file may be AVIF, which Pillow reads without pillow-heif
}


# --- container checks, at C speed, before Pillow's Python parsers see the data ----------------------

# Pillow's JPEG header parser takes one Python step per byte of garbage between markers, per fill
# byte and per length-less marker: 1.5 s for a 19 MB upload of zeros after a JPEG header, 200 s for
# a 2 GB file, holding the GIL throughout. Real files have a few dozen steps (their segments) and
# at most a few kB of padding; this bound is far above that and costs Pillow ~50 ms.
MAX_JPEG_HEADER_STEPS = 65_536
_JPEG_SOS = 0xDA
# Markers Pillow reads without a length (SOI, EOI, RST0-7, JPG, JPG0-13). 0xFF01-0xFFBF are not
# markers at all (Pillow: "no marker found"); every other one is followed by a 2-byte length.
_JPEG_LENGTHLESS = frozenset({0xD8, 0xD9, 0xC8, *range(0xD0, 0xD8), *range(0xF0, 0xFE)})
_JPEG_GARBAGE = "corrupt JPEG (garbage between markers)"


def check_jpeg_markers(data: bytes) -> None:
    """Walk a JPEG's marker segments up to the start of scan, as Pillow will, and raise DecodeError
    if Pillow would take more than MAX_JPEG_HEADER_STEPS one-byte steps to do it.

    Garbage is skipped with ``bytes.find`` and segments by their length, so this costs microseconds
    whatever the file holds. Anything else wrong (a bad length, a missing scan) is left to Pillow,
    which reports it as usual. The entropy-coded data after the scan header is libjpeg's (C) job.
    """
    view = memoryview(data)
    pos, steps, end = 2, 0, len(data)  # data[2] is 0xFF: sniff_format saw FF D8 FF
    while pos < end:
        if view[pos] != 0xFF:
            found = data.find(b"\xff", pos, pos + MAX_JPEG_HEADER_STEPS - steps + 1)
            if found < 0:
                if end - pos > MAX_JPEG_HEADER_STEPS - steps:
                    raise DecodeError(_JPEG_GARBAGE)
                return  # the file ends in garbage: Pillow reports it as truncated
            steps += found - pos
            pos = found
            continue
        if pos + 1 >= end:
            return
        marker = view[pos + 1]
        if marker == _JPEG_SOS or (marker < 0xC0 and marker not in (0x00, 0xFF)):
            return  # the scan starts (libjpeg's part), or Pillow refuses a non-marker
        if marker in (0x00, 0xFF) or marker in _JPEG_LENGTHLESS:
            steps += 1  # escaped 0xFF, fill byte or length-less marker: one Python step each
            pos += 1 if marker == 0xFF else 2
        elif pos + 4 > end:
            return
        else:
            length = int.from_bytes(view[pos + 2 : pos + 4], "big")
            steps += 1
            pos += 2 + max(length, 2)  # Pillow reads no payload for a length below 2, and goes on
        if steps > MAX_JPEG_HEADER_STEPS:
            raise DecodeError(_JPEG_GARBAGE)


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Chunks that only carry text or a colour profile: the decoder never needs them (colours are not
# converted by profile here), and Pillow refuses compressed ones over its limits.
_PNG_METADATA_CHUNKS = frozenset({b"iCCP", b"zTXt", b"iTXt", b"tEXt"})


def _is_png_metadata_limit(exc: ValueError) -> bool:
    """Pillow's refusal of an oversized iCCP/zTXt/iTXt chunk or of too much text in all."""
    return "MAX_TEXT_CHUNK" in str(exc) or "MAX_TEXT_MEMORY" in str(exc)


def strip_png_metadata(data: bytes) -> bytes:
    """The PNG without its iCCP, zTXt, iTXt and tEXt chunks; other chunks are copied as they are.
    A damaged chunk structure ends the walk: the rest is kept for Pillow to judge."""
    kept = [data[: len(_PNG_SIGNATURE)]]
    pos, end = len(_PNG_SIGNATURE), len(data)
    while pos + 8 <= end:
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8]
        chunk_end = pos + 12 + length  # length, type, data, CRC
        if chunk_end > end:
            break
        if kind not in _PNG_METADATA_CHUNKS:
            kept.append(data[pos:chunk_end])
        pos = chunk_end
        if kind == b"IEND":
            break
    kept.append(data[pos:])
    return b"".join(kept)


# --- HEIF ---------------------------------------------------------------------------------------------

_heif_lock = threading.Lock()
_heif_available: bool | None = None


def _ensure_heif_opener() -> bool:
    """Register pillow-heif on first need only, so JPEG-only libraries never pay for importing it."""
    global _heif_available
    with _heif_lock:
        if _heif_available is None:
            try:
                from pillow_heif import register_heif_opener
            except ImportError:
                _heif_available = False
            else:
                register_heif_opener()
                _heif_available = True
        return _heif_available


# --- pixel limit ----------------------------------------------------------------------------------

# --- decoding ---------------------------------------------------------------------------------------

_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_ORIENTATION = ExifTags.Base.Orientation
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})


def decode_image(
    data: bytes, *, min_side: int | None = None, max_pixels: int = DEFAULT_MAX_PIXELS
) -> DecodedImage:
    """Decode file bytes into an upright RGB image; every data problem becomes a DecodeError.

    ``min_side`` is the smallest shorter side the caller still needs (the model input size). JPEGs
    are then decoded at 1/2, 1/4 or 1/8 scale by libjpeg, which is several times faster for camera
    photos; the metadata keeps the full size. Invalid arguments raise ValueError: that is a caller
    bug, not a bad file.
    """
    if min_side is not None and min_side < 1:
        raise ValueError(f"min_side must be >= 1, got {min_side}")
    if max_pixels < 1:
        raise ValueError(f"max_pixels must be >= 1, got {max_pixels}")
    fmt = check_head(bytes(data[:512]))
    if fmt == "HEIF":
        _ensure_heif_opener()
    if fmt == "JPEG":
        check_jpeg_markers(data)

    try:
        try:
            return _decode(data, fmt, min_side, max_pixels)
        except ValueError as exc:
            if fmt != "PNG" or not _is_png_metadata_limit(exc):
                raise
            # Pillow refuses a compressed text chunk or ICC profile over its limit (1 MB each,
            # 64 MB of text in all), and with it the whole image. We use neither: drop them.
            log.debug("PNG metadata over Pillow's limit (%s): decoding without it", exc)
            return _decode(strip_png_metadata(data), fmt, min_side, max_pixels)
    except DecodeError:
        raise
    except Exception as exc:
        if _declared_longer(data, fmt):  # libwebp only says "could not create decoder object"
            raise DecodeError("truncated image") from exc
        raise DecodeError(_reason_for(exc, fmt)) from exc


def check_head(head: bytes) -> str:
    """The format of a file from its first bytes (512 give the best reason), or DecodeError saying
    why it is no image. Callers that read files run it first, so a non-image is never read whole."""
    if not head:
        raise DecodeError("empty file")
    fmt = sniff_format(head[:32])
    if fmt is None:
        raise DecodeError(_describe_non_image(head[:512]))
    return fmt


def _decode(data: bytes, fmt: str, min_side: int | None, max_pixels: int) -> DecodedImage:
    Image.init()  # Image.open raises KeyError for a format name whose plugin is not loaded yet
    formats = [name for name in _PILLOW_FORMATS[fmt] if name in Image.OPEN]
    if not formats:
        raise DecodeError(HEIF_HINT if fmt == "HEIF" else f"{fmt} support missing from this Pillow build")
    try:
        img = Image.open(io.BytesIO(data), formats=formats)
    except UnidentifiedImageError:
        if fmt == "HEIF" and not _ensure_heif_opener():
            raise DecodeError(HEIF_HINT) from None
        raise
    width, height = img.size  # TIFF already reports this upright, see below
    if width * height > max_pixels:  # checked from the header, before any pixel is decoded
        raise DecodeError(f"too many pixels ({width * height} > limit {max_pixels})")
    if min_side is not None and isinstance(img, JpegImageFile):
        # The shorter side scales with the longer one, so a square request keeps it >= min_side
        # whichever way EXIF later rotates the picture.
        img.draft("RGB", (min_side, min_side))
    # Pillow's TIFF reader rotates by itself while loading and then drops the tag, so remember it
    # for the metadata; what getexif() still reports after load() is what is left for us to apply.
    applied_by_pillow = _attempt(_tiff_orientation, img)
    img.load()  # decode now, inside the caller's try, so truncation surfaces here

    exif = _attempt(img.getexif)
    orientation = _attempt(_orientation_value, exif.get(_ORIENTATION)) if exif is not None else None
    rgb = _to_rgb(img)
    if orientation in _TRANSPOSE:
        rgb = rgb.transpose(_TRANSPOSE[orientation])
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    lat, lon = (_attempt(_gps, exif) if exif is not None else None) or (None, None)
    metadata = ImageMetadata(
        format="JPEG" if img.format == "MPO" else (img.format or fmt),
        width=width,
        height=height,
        taken_at=_attempt(_taken_at, exif) if exif is not None else None,
        camera=_attempt(_camera, exif) if exif is not None else None,
        orientation=orientation or applied_by_pillow,
        gps_lat=lat,
        gps_lon=lon,
    )
    return DecodedImage(image=rgb, metadata=metadata)


def _to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode to RGB the way a viewer would show it.

    Transparent areas become white, not the black of a plain convert: models (and people) see a
    logo on a white page, not a silhouette. High-bit-depth greyscale is rescaled, not clipped.
    """
    if img.mode.startswith("I") or img.mode == "F":  # I, I;16, I;16B, I;16L, F
        img = _to_8bit(img)
    if img.mode in _ALPHA_MODES or img.info.get("transparency") is not None:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img if img.mode == "RGB" else img.convert("RGB")


def _to_8bit(img: Image.Image) -> Image.Image:
    """Map high-bit-depth greyscale onto 0..255 by its nominal range.

    16-bit data is scaled by 255/65535 so exposure is kept; only values outside every nominal range
    (32-bit ints, floats outside 0..1) are stretched min..max, as there is no meaningful white.
    """
    arr = np.nan_to_num(np.asarray(img).astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    low, high = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
    if img.mode == "F" and low >= 0.0 and high <= 1.0:
        scaled = arr * 255.0
    elif img.mode.startswith("I;16") or (low >= 0 and high > 255 and high <= 65535):
        scaled = arr * (255.0 / 65535.0)
    elif low >= 0 and high <= 255:
        scaled = arr
    else:
        scaled = (arr - low) * (255.0 / (high - low)) if high > low else np.zeros_like(arr)
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8))


def _reason_for(exc: Exception, fmt: str) -> str:
    """Boil a Pillow/OS exception down to a reason a user can act on."""
    if isinstance(exc, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return f"too many pixels (Pillow: {exc})"
    if isinstance(exc, UnidentifiedImageError):  # its message only names the BytesIO object
        return f"corrupt {fmt} (unreadable header)"
    if isinstance(exc, MemoryError):
        return "out of memory while decoding"
    message = str(exc)
    if isinstance(exc, EOFError) or "truncated" in message.lower():
        return "truncated image"
    detail = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return f"corrupt {fmt} ({detail[:160]})"


def _declared_longer(data: bytes, fmt: str) -> bool:
    """RIFF (WebP) headers state the file length, so a cut-off file can be named as such."""
    return fmt == "WEBP" and int.from_bytes(data[4:8], "little") + 8 > len(data)


def _describe_non_image(head: bytes) -> str:
    """Say whether an unrecognised file looks like text, the usual case of a mislabelled file."""
    allowed_controls = {9, 10, 12, 13}
    if all(b >= 32 or b in allowed_controls for b in head) and b"\x7f" not in head:
        return "not an image (text)"
    return "not an image (unrecognised format)"


# --- metadata -----------------------------------------------------------------------------------

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
    return _orientation_value(tags.get(_ORIENTATION)) if tags is not None else None


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
