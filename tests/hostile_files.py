"""Generate a folder of the awkward files real photo libraries contain, for decoder and walker tests.

Everything is generated in well under a second from scikit-image's sample photos, so nothing
binary is committed and every case documents how it was made.
"""

from __future__ import annotations

import contextlib
import io
import os
import struct
import zlib
from datetime import datetime
from pathlib import Path

import numpy as np
import skimage.data
from PIL import ExifTags, Image

OK = "ok"
FAIL = "fail"

UNICODE_NAME = "фото_日本語 ü.png"
LOOP_LINK = "nested/loop"  # -> ".." (the tree's root): a walker that follows it naively never ends
BROKEN_LINK = "broken_link.jpg"  # -> a file that does not exist
BOMB_SIDE = 30_000
LARGE_SIZE = (4000, 3000)
ROTATED_STORED_SIZE = (320, 240)  # stored landscape; EXIF orientation 6 shows it as 240x320 portrait

EXIF_TAKEN_AT = datetime(2021, 7, 4, 12, 34, 56)
EXIF_MAKE = "Canon"
EXIF_MODEL = "Canon EOS R5"
EXIF_LAT = 48.858222  # 48° 51' 29.6" N
EXIF_LON = -2.2945  # 2° 17' 40.2" W (deliberately west, to check the sign)


def make_hostile_tree(root: Path) -> dict[str, str]:
    """Write the files under ``root``; return {relative path: "ok" | "fail"} for every regular file.

    The two symlinks (LOOP_LINK, BROKEN_LINK) are created where the OS allows, and left out of the
    result: they are walker hazards, not files to decode. So the result is also exactly the set of
    paths a correct walker yields for ``root``.
    """
    root.mkdir(parents=True, exist_ok=True)
    coffee = Image.fromarray(skimage.data.coffee())  # 600x400 RGB
    chelsea = Image.fromarray(skimage.data.chelsea())  # 451x300 RGB
    camera = Image.fromarray(skimage.data.camera())  # 512x512 L
    chelsea_jpeg = _encode(chelsea, "JPEG", quality=90)

    files: dict[str, tuple[bytes, str]] = {
        "empty.jpg": (b"", FAIL),
        "truncated.jpg": (chelsea_jpeg[: len(chelsea_jpeg) // 2], FAIL),
        "text.jpg": (b"Shopping list:\n- milk\n- eggs\n", FAIL),
        "bomb.png": (bomb_png(BOMB_SIDE, BOMB_SIDE), FAIL),
        "cmyk.jpg": (_encode(coffee.convert("CMYK"), "JPEG", quality=95), OK),
        "grey16.png": (_encode(grey16_image(), "PNG"), OK),
        "grey.jpg": (_encode(camera, "JPEG", quality=90), OK),
        "bilevel.png": (_encode(camera.convert("1"), "PNG"), OK),
        "exif_rotated.jpg": (exif_jpeg(), OK),
        UNICODE_NAME: (_encode(chelsea.resize((90, 60)), "PNG"), OK),
        "photo": (_encode(coffee.resize((60, 40)), "PNG"), OK),
        "palette_transparent.png": (_encode(palette_image(), "PNG", transparency=0), OK),
        "rgba.png": (_encode(rgba_image(), "PNG"), OK),
        "animated.gif": (animated_gif(), OK),
        "multipage.tif": (multipage_tiff(), OK),
        "nested/coffee.webp": (_encode(coffee, "WEBP", quality=80), OK),
        "nested/deeper/chelsea.bmp": (_encode(chelsea, "BMP"), OK),
        "large.jpg": (_encode(coffee.resize(LARGE_SIZE, Image.Resampling.BILINEAR), "JPEG", quality=75), OK),
    }
    for rel, (data, _) in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    for link, target in ((LOOP_LINK, ".."), (BROKEN_LINK, "does_not_exist.jpg")):
        with contextlib.suppress(OSError, NotImplementedError):  # Windows without the privilege
            os.symlink(target, root / link)
    return {rel: outcome for rel, (_, outcome) in files.items()}


def _encode(img: Image.Image, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **params)
    return buf.getvalue()


def bomb_png(width: int, height: int) -> bytes:
    """A valid 1-bit all-black PNG that claims width x height pixels yet is ~100 kB on disk.

    Deflating ~110 MB of zeros would take a third of a second, so one block of rows is deflated
    once, ended with a full flush (which resets the compressor's history), and the identical
    compressed block is repeated; only the Adler-32 checksum runs over the whole raw size.
    """
    row = bytes(1 + (width + 7) // 8)  # filter byte 0 + packed bits
    rows_per_block = 1000
    block = row * rows_per_block
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    compressed_block = deflate.compress(block) + deflate.flush(zlib.Z_FULL_FLUSH)
    full_blocks, rest = divmod(height, rows_per_block)
    tail = deflate.compress(row * rest) + deflate.flush(zlib.Z_FINISH)
    adler = 1
    for _ in range(full_blocks):
        adler = zlib.adler32(block, adler)
    adler = zlib.adler32(row * rest, adler)
    stream = b"\x78\xda" + compressed_block * full_blocks + tail + struct.pack(">I", adler)
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", stream) + _chunk(b"IEND", b"")


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def grey16_image() -> Image.Image:
    """scikit-image's camera at 16 bits (v * 257), so a correct 8-bit reduction gives camera back."""
    return Image.fromarray(skimage.data.camera().astype(np.uint16) * 257)


def palette_image() -> Image.Image:
    """64x64 palette image: left half index 0 (black, marked transparent), right half red."""
    img = Image.new("P", (64, 64), 0)
    img.putpalette([0, 0, 0, 255, 0, 0])
    img.paste(1, (32, 0, 64, 64))
    return img


def rgba_image() -> Image.Image:
    """64x64: left half fully transparent black, right half half-transparent red."""
    img = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    img.paste((255, 0, 0, 128), (32, 0, 64, 64))
    return img


GIF_FRAME_COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
TIFF_PAGE_SIZES = [(64, 48), (32, 32)]


def animated_gif() -> bytes:
    frames = [Image.new("RGB", (40, 30), colour) for colour in GIF_FRAME_COLOURS]
    return _encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def multipage_tiff() -> bytes:
    pages = [Image.new("RGB", size, (0, 128, 255)) for size in TIFF_PAGE_SIZES]
    return _encode(pages[0], "TIFF", save_all=True, append_images=pages[1:])


def exif_jpeg() -> bytes:
    """A landscape-stored JPEG with orientation 6 (shown portrait), a date, a camera and GPS."""
    astronaut = Image.fromarray(skimage.data.astronaut()).resize(ROTATED_STORED_SIZE)
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = EXIF_MAKE
    exif[ExifTags.Base.Model] = EXIF_MODEL
    exif[ExifTags.Base.Orientation] = 6
    exif[ExifTags.Base.DateTime] = "2022:01:01 00:00:00"  # file-modified date: must lose to the original
    exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.DateTimeOriginal] = EXIF_TAKEN_AT.strftime(
        "%Y:%m:%d %H:%M:%S"
    )
    exif.get_ifd(ExifTags.IFD.GPSInfo).update(
        {
            ExifTags.GPS.GPSLatitudeRef: "N",
            ExifTags.GPS.GPSLatitude: (48.0, 51.0, 29.6),
            ExifTags.GPS.GPSLongitudeRef: "W",
            ExifTags.GPS.GPSLongitude: (2.0, 17.0, 40.2),
        }
    )
    return _encode(astronaut, "JPEG", quality=90, exif=exif)


# --- files that are small (or sparse) but cost a naive reader GBs of RAM or minutes of CPU ------------


def jpeg_header() -> bytes:
    """SOI plus the JFIF APP0 segment of a real JPEG: what a hostile file puts before its padding."""
    data = _encode(Image.new("RGB", (8, 8)), "JPEG")
    length = int.from_bytes(data[4:6], "big")
    assert data[2:4] == b"\xff\xe0", "Pillow writes JFIF APP0 first"
    return data[: 4 + length]


def jpeg_then_zeros(n_zeros: int) -> bytes:
    """A JPEG header and ``n_zeros`` zero bytes: Pillow's header parser steps through them one by
    one in Python (1.5 s for 19 MB, holding the GIL) before it says anything."""
    return jpeg_header() + bytes(n_zeros)


def write_sparse_jpeg(path: Path, size: int) -> None:
    """A ``size``-byte ".jpg" that is a JPEG header and a hole: costs no disk, reads as zeros."""
    with open(path, "wb") as handle:
        handle.write(jpeg_header())
        handle.truncate(size)


def tall_png(height: int, width: int = 1) -> bytes:
    """A ``width`` x ``height`` noise PNG: tens of kB, far under any pixel cap, yet a processor that
    scales the shorter side up to 224 makes it a 224 x (224 * height) array."""
    rng = np.random.default_rng(height)
    return _encode(Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)), "PNG")


def png_with_huge_metadata(icc_bytes: int = 60 * 2**20, text_bytes: int = 0) -> bytes:
    """A normal 64x48 PNG carrying an ICC profile of ``icc_bytes`` (and a zTXt chunk of
    ``text_bytes``), compressible to a few kB: over Pillow's 1 MB limit, which refuses the image."""
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    if text_bytes:
        info.add_text("comment", "x" * text_bytes, zip=True)
    image = Image.fromarray(skimage.data.chelsea()).resize((64, 48))
    return _encode(image, "PNG", icc_profile=bytes(icc_bytes) if icc_bytes else None, pnginfo=info)
