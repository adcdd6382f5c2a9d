"""The checks on a file's bytes before any decoder sees them: what format it is, and whether its
container is safe to hand to Pillow.

Content decides the format, not the extension, and the container structure Pillow would walk in
Python (JPEG markers, PNG chunks) is walked here at C speed first: a renamed text file, a JPEG
padded with gigabytes of garbage or a PNG with oversized metadata is refused or repaired in
microseconds instead of holding the GIL for minutes. Reading code runs :func:`check_head` on a
file's first bytes before reading the rest; :mod:`pixseek.media.decode` runs the others.
"""

from __future__ import annotations

from pixseek.media.errors import DecodeError

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


def check_head(head: bytes) -> str:
    """The format of a file from its first bytes (512 give the best reason), or DecodeError saying
    why it is no image. Callers that read files run it first, so a non-image is never read whole."""
    if not head:
        raise DecodeError("empty file")
    fmt = sniff_format(head[:32])
    if fmt is None:
        raise DecodeError(_describe_non_image(head[:512]))
    return fmt


def _describe_non_image(head: bytes) -> str:
    """Say whether an unrecognised file looks like text, the usual case of a mislabelled file."""
    allowed_controls = {9, 10, 12, 13}
    if all(b >= 32 or b in allowed_controls for b in head) and b"\x7f" not in head:
        return "not an image (text)"
    return "not an image (unrecognised format)"


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


def is_png_metadata_limit(exc: ValueError) -> bool:
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
