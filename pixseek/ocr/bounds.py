"""Bounds on what reaches an OCR engine: RGB only, a maximum side, a minimum side.

Detection cost grows with pixels, and a 100-megapixel scan holds no more readable words per line
than the same page at a few thousand pixels; images with a longer side than ``MAX_SIDE`` are
downscaled first and the boxes scaled back. Images too small to hold a glyph are answered with a
note instead of being passed to an engine that would raise or guess.
"""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

# The longest side an engine sees. 2,560 px keeps 10 px glyphs of an A4 scan at 300 dpi (3,508 px
# long) readable after downscaling while bounding the detector's input.
MAX_SIDE = 2560
# Below this on the shorter side no glyph fits (Tesseract needs about 8 px x-height, the PP-OCR
# recogniser a 48 px line after its own upscaling, which a 4 px strip does not survive).
MIN_SIDE = 6


@dataclass(frozen=True)
class Prepared:
    """An image ready for an engine, or the note saying why there is none."""

    image: Image.Image | None
    scale: float  # original pixels per engine pixel (>= 1)
    note: str = ""


def prepare(image: Image.Image, max_side: int = MAX_SIDE) -> Prepared:
    """Flatten to RGB (transparency onto white, where text is drawn on a transparent label) and
    downscale to ``max_side``; a too-small image gets a note, never an exception."""
    width, height = image.size
    if width < MIN_SIDE or height < MIN_SIDE:
        return Prepared(None, 1.0, f"image too small to hold text: {width}x{height} px")
    rgb = to_rgb(image)
    longest = max(width, height)
    if longest <= max_side:
        return Prepared(rgb, 1.0)
    scale = longest / max_side
    size = (max(1, round(width / scale)), max(1, round(height / scale)))
    if min(size) < MIN_SIDE:
        # A very elongated strip (20000x10): shrinking it to max_side would erase its glyphs, so
        # say so instead of reading noise.
        return Prepared(None, 1.0, f"image too elongated to read at {max_side} px: {width}x{height} px")
    return Prepared(rgb.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0), scale)


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB pixels for any Pillow mode (16-bit, palette, CMYK, alpha)."""
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, "white")
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # Pillow clips 16-bit values to 0-255 on convert("L"); scale the range down instead.
        return image.point(lambda value: value / 256).convert("L").convert("RGB")
    return image.convert("RGB")
