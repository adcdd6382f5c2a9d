"""Turn the bytes of a photo file into a model-ready RGB image plus the metadata the index stores.

Photo folders are hostile input: truncated uploads, renamed text files, CMYK scans, 16-bit exports,
decompression bombs. Every one of those must end as a :class:`DecodeError` with a short reason the
indexer can record and show, never as a crash of the worker or an out-of-memory kill.
"""

from __future__ import annotations

import io
import logging
import threading
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from PIL import Image, UnidentifiedImageError
from PIL.JpegImagePlugin import JpegImageFile

from pixseek.media import exif
from pixseek.media.errors import DecodeError
from pixseek.media.prechecks import check_head, check_jpeg_markers, is_png_metadata_limit, strip_png_metadata

log = logging.getLogger(__name__)

# The biggest legitimate inputs we expect are ~100-150 MP (medium-format sensors, stitched phone
# panoramas). This keeps those while bounding one decode at ~540 MB of RGB, which a few parallel
# workers can afford; a 1-bit PNG can claim far more in a few kB. It equals Pillow's own refusal
# threshold (2 x Image.MAX_IMAGE_PIXELS): Image.open refuses anything larger before we see it, so a
# larger max_pixels has no effect unless the application raises Pillow's limit too.
DEFAULT_MAX_PIXELS = 178_956_970

HEIF_HINT = "HEIF support needs pillow-heif: pip install pixseek[heif]"


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
    # EXIF/XMP caption, title and keywords: the keyword index searches them (pixseek.media.exif)
    text: exif.DescriptiveText = exif.NO_TEXT


@dataclass(frozen=True)
class DecodedImage:
    image: Image.Image  # mode "RGB", upright
    metadata: ImageMetadata


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
            if fmt != "PNG" or not is_png_metadata_limit(exc):
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
    applied_by_pillow = exif.pillow_applied_orientation(img)
    img.load()  # decode now, inside the caller's try, so truncation surfaces here

    tags = exif.read_exif(img)
    orientation = exif.orientation(tags)
    rgb = _to_rgb(img)
    if orientation in _TRANSPOSE:
        rgb = rgb.transpose(_TRANSPOSE[orientation])
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    lat, lon = exif.gps_position(tags)
    metadata = ImageMetadata(
        format="JPEG" if img.format == "MPO" else (img.format or fmt),
        width=width,
        height=height,
        taken_at=exif.taken_at(tags),
        camera=exif.camera(tags),
        orientation=orientation or applied_by_pillow,
        gps_lat=lat,
        gps_lon=lon,
        text=exif.descriptive_text(img, tags),
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
