"""A generated OCR corpus whose truth is known by construction: signs, receipts, screenshots and
labels rendered with Debian's DejaVu and Liberation fonts (and WenQuanYi Zen Hei for Chinese when
installed), at several sizes, rotations up to 15 degrees, blur, JPEG compression, on dark and light
backgrounds, in English, German, French and Chinese, each image's words saved next to it; plus
scikit-image's photos, which hold no text, for the detector's fast skip and false words.

Everything is drawn from a seeded ``random.Random``, so the same seed gives the same images, words
and conditions on every machine that has the same fonts (the fonts used are recorded per image).
"""

from __future__ import annotations

import io
import json
import random
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter, ImageFont

FONT_DIRS = (Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts/truetype/liberation"))
LATIN_FONTS = (
    "DejaVuSans.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSansMono.ttf",
    "DejaVuSans-Bold.ttf",
    "LiberationSans-Regular.ttf",
    "LiberationSerif-Regular.ttf",
    "LiberationMono-Regular.ttf",
    "LiberationSans-Bold.ttf",
)
CJK_FONTS = (
    Path("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc"),
    Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"),
)

# Words per language; the German and French lists are chosen for their accents and ß, which is
# where engines differ. Words of 3+ letters only, so a match is not luck.
VOCABULARY: dict[str, tuple[str, ...]] = {
    "en": (
        "coffee",
        "station",
        "market",
        "garden",
        "invoice",
        "welcome",
        "parking",
        "exit",
        "north",
        "bakery",
        "library",
        "total",
        "receipt",
        "window",
        "settings",
        "account",
        "delivery",
        "river",
        "museum",
        "ticket",
        "harbour",
        "cheese",
        "orange",
        "bridge",
        "summer",
        "winter",
        "pharmacy",
        "street",
        "hotel",
        "closed",
        "open",
        "entrance",
        "platform",
        "order",
        "customer",
        "battery",
    ),
    "de": (
        "Straße",
        "Bäckerei",
        "Größe",
        "Ausgang",
        "Übersicht",
        "Käse",
        "Brötchen",
        "Schlüssel",
        "Bahnhof",
        "Rechnung",
        "Geschäft",
        "Öffnungszeiten",
        "Fußweg",
        "Kühlschrank",
        "Grüße",
        "Apotheke",
        "Müller",
        "Einstellungen",
        "Gebühr",
        "Kasse",
        "Frühstück",
        "Gemüse",
    ),
    "fr": (
        "café",
        "entrée",
        "gâteau",
        "fenêtre",
        "hôtel",
        "élève",
        "boulangerie",
        "marché",
        "théâtre",
        "sortie",
        "reçu",
        "château",
        "forêt",
        "fromage",
        "pâtisserie",
        "numéro",
        "musée",
        "été",
        "bibliothèque",
        "paramètres",
        "commande",
    ),
    "zh": (
        "北京",
        "上海",
        "欢迎",
        "出口",
        "银行",
        "医院",
        "学校",
        "超市",
        "咖啡",
        "地铁",
        "火车",
        "公园",
        "饭店",
        "发票",
        "设置",
        "图书馆",
        "停车场",
        "入口",
        "电话",
        "价格",
    ),
}
# Image kinds and the sizes (font px) the benchmark reports accuracy by.
KINDS = ("sign", "receipt", "screenshot", "label")
SIZES = (14, 20, 32, 56)
ROTATIONS = (0.0, 5.0, 15.0)
BLURS = (0.0, 1.0, 2.0)
JPEG_QUALITIES = (0, 60, 25)  # 0: saved as PNG
# scikit-image's bundled photos that hold no text (page, text, logo, rocket, clock and the
# chessboards are left out: they do, or are line art meant to be read).
TEXTLESS_PHOTOS = (
    "astronaut", "brick", "camera", "cell", "chelsea", "coffee", "coins", "grass", "gravel",
    "hubble_deep_field", "immunohistochemistry", "moon", "retina", "microaneurysms",
)  # fmt: skip


@dataclass
class TextImage:
    """One rendered image and what is written on it."""

    name: str
    words: list[str]
    language: str
    kind: str
    font: str
    size: int
    rotation: float
    blur: float
    jpeg: int
    background: str  # "light" or "dark"
    width: int = 0
    height: int = 0
    lines: list[str] = field(default_factory=list)

    def condition(self) -> dict[str, str]:
        """The condition labels the benchmark groups accuracy by."""
        return {
            "kind": self.kind,
            "font": self.font,
            "size": f"{self.size}px",
            "rotation": f"{self.rotation:g}deg",
            "blur": f"r{self.blur:g}",
            "jpeg": f"q{self.jpeg}" if self.jpeg else "png",
            "background": self.background,
            "language": self.language,
        }


def available_fonts() -> list[Path]:
    """The Latin fonts installed here (Debian fonts-dejavu-core/-extra, fonts-liberation)."""
    found: list[Path] = []
    for name in LATIN_FONTS:
        for folder in FONT_DIRS:
            if (folder / name).is_file():
                found.append(folder / name)
                break
    return found


def cjk_font() -> Path | None:
    """A font with Chinese glyphs, when fonts-wqy-zenhei or fonts-noto-cjk is installed."""
    return next((path for path in CJK_FONTS if path.is_file()), None)


def _font(path: Path | None, size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    if path is None:
        return ImageFont.load_default(size)
    return ImageFont.truetype(str(path), size)


def _lines(rng: random.Random, language: str, kind: str) -> list[str]:
    """The text lines of one image: words of ``language`` laid out the way ``kind`` is."""
    vocabulary = VOCABULARY[language]
    joiner = "" if language == "zh" else " "

    def words(count: int) -> str:
        return joiner.join(rng.sample(vocabulary, count))

    if kind == "sign":
        return [words(rng.randint(1, 2)) for _ in range(rng.randint(1, 2))]
    if kind == "receipt":
        lines = [words(2)]
        lines += [
            f"{words(1)} {rng.randint(1, 99)}.{rng.randint(0, 99):02d}" for _ in range(rng.randint(2, 4))
        ]
        return lines
    if kind == "screenshot":
        return [words(3), words(4), words(3)]
    return [words(2), f"{words(1)} {rng.randint(1000, 9999)}"]  # label


def render(sample: TextImage, font_path: Path | None, rng: random.Random) -> Image.Image:
    """Draw ``sample.lines`` in its font, size and colours; then rotate, blur, compress."""
    font = _font(font_path, sample.size)
    light = sample.background == "light"
    paper = (rng.randint(225, 255), rng.randint(225, 255), rng.randint(215, 255))
    dark = (rng.randint(10, 50), rng.randint(10, 60), rng.randint(20, 70))
    background, ink = (paper, dark) if light else (dark, paper)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    boxes = [measure.textbbox((0, 0), line, font=font) for line in sample.lines]
    spacing = int(sample.size * 0.6)
    margin = max(24, sample.size)
    text_width = max(box[2] - box[0] for box in boxes)
    text_height = sum(box[3] - box[1] for box in boxes) + spacing * (len(boxes) - 1)
    width = int(max(320, text_width + 2 * margin))
    height = int(max(160, text_height + 2 * margin))
    if sample.kind == "screenshot":
        width, height = max(width, 800), max(height + 60, 450)
    image = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(image)
    top = margin
    if sample.kind == "screenshot":  # a title bar and a sidebar, as a window has
        bar = (
            tuple(max(0, c - 40) for c in background)
            if light
            else tuple(min(255, c + 40) for c in background)
        )
        draw.rectangle((0, 0, width, 40), fill=bar)
        draw.rectangle((0, 40, 60, height), fill=bar)
        top = 60
    if sample.kind == "label":
        draw.rectangle((6, 6, width - 7, height - 7), outline=ink, width=3)
    x_left = margin + (70 if sample.kind == "screenshot" else 0)
    y = top
    for line, box in zip(sample.lines, boxes, strict=True):
        x = (width - (box[2] - box[0])) // 2 if sample.kind == "sign" else x_left
        draw.text((x - box[0], y - box[1]), line, fill=ink, font=font)
        y += int(box[3] - box[1]) + spacing
    if sample.rotation:
        angle = sample.rotation * rng.choice((-1, 1))
        image = image.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=background)
    if sample.blur:
        image = image.filter(ImageFilter.GaussianBlur(sample.blur))
    if sample.jpeg:
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=sample.jpeg)
        image = Image.open(io.BytesIO(buffer.getvalue()))
        image.load()
    sample.width, sample.height = image.size
    return image


def generate(
    count: int, seed: int = 0, languages: tuple[str, ...] = ("en", "de", "fr", "zh")
) -> Iterator[tuple[TextImage, Image.Image]]:
    """``count`` images with known text, every condition drawn at random (Chinese only with a CJK
    font): realistic mixtures, but each condition's accuracy is confounded with the others'."""
    rng = random.Random(seed)
    fonts: list[Path | None] = [*available_fonts()] or [None]
    cjk = cjk_font()
    usable = [code for code in languages if code != "zh" or cjk is not None]
    for index in range(count):
        language = usable[index % len(usable)]
        settings = Settings(
            language=language,
            kind=rng.choice(KINDS),
            font=cjk if language == "zh" else rng.choice(fonts),
            size=rng.choice(SIZES),
            rotation=rng.choice(ROTATIONS),
            blur=rng.choice(BLURS),
            jpeg=rng.choice(JPEG_QUALITIES),
            background=rng.choice(("light", "dark")),
        )
        yield make(f"text-{index:04d}", settings, rng)


@dataclass(frozen=True)
class Settings:
    """The conditions of one image before rendering."""

    language: str = "en"
    kind: str = "receipt"
    font: Path | None = None
    size: int = 32
    rotation: float = 0.0
    blur: float = 0.0
    jpeg: int = 0
    background: str = "light"


def controlled(per_value: int, seed: int = 0) -> Iterator[tuple[str, str, TextImage, Image.Image]]:
    """One factor at a time: ``per_value`` images for every value of every condition, the others
    at a clean base (English receipt, DejaVu Sans 32 px, upright, sharp, PNG, light), so each row
    of the benchmark's table differs from the base in that condition only. Yields (condition,
    value, sample, image)."""
    rng = random.Random(seed)
    fonts = available_fonts()
    base = Settings(font=fonts[0] if fonts else None)
    cjk = cjk_font()
    variations: list[tuple[str, str, Settings]] = []
    for kind in KINDS:
        variations.append(("kind", kind, replace(base, kind=kind)))
    for font in fonts:
        variations.append(("font", font.stem, replace(base, font=font)))
    for size in SIZES:
        variations.append(("size", f"{size}px", replace(base, size=size)))
    for rotation in ROTATIONS:
        variations.append(("rotation", f"{rotation:g}deg", replace(base, rotation=rotation)))
    for blur in BLURS:
        variations.append(("blur", f"r{blur:g}", replace(base, blur=blur)))
    for quality in JPEG_QUALITIES:
        variations.append(("jpeg", f"q{quality}" if quality else "png", replace(base, jpeg=quality)))
    for background in ("light", "dark"):
        variations.append(("background", background, replace(base, background=background)))
    for language in VOCABULARY:
        if language == "zh" and cjk is None:
            continue
        variations.append(
            (
                "language",
                language,
                replace(base, language=language, font=cjk if language == "zh" else base.font),
            )
        )
    index = 0
    for condition, value, settings in variations:
        for _ in range(per_value):
            sample, image = make(f"ctl-{index:04d}", settings, rng)
            index += 1
            yield condition, value, sample, image


def make(stem: str, settings: Settings, rng: random.Random) -> tuple[TextImage, Image.Image]:
    """Draw one image's words and render it under ``settings``."""
    sample = TextImage(
        name=stem + (".jpg" if settings.jpeg else ".png"),
        words=[],
        language=settings.language,
        kind=settings.kind,
        font=settings.font.stem if settings.font else "pillow-default",
        size=settings.size,
        rotation=settings.rotation,
        blur=settings.blur,
        jpeg=settings.jpeg,
        background=settings.background,
    )
    sample.lines = _lines(rng, settings.language, settings.kind)
    sample.words = truth_words(sample.lines, settings.language)
    return sample, render(sample, settings.font, rng)


def truth_words(lines: list[str], language: str) -> list[str]:
    """The words a reader must find: vocabulary words and numbers, Chinese by vocabulary entry."""
    if language == "zh":
        text = "".join(lines)
        return [word for word in VOCABULARY["zh"] if word in text] + [
            token for line in lines for token in line.split()[1:] if token[:1].isdigit()
        ]
    return [token for line in lines for token in line.split()]


def textless_photos() -> Iterator[tuple[str, Image.Image]]:
    """scikit-image's bundled photos without text, as RGB."""
    import numpy as np
    import skimage.data

    for name in TEXTLESS_PHOTOS:
        pixels = np.asarray(getattr(skimage.data, name)())
        if pixels.dtype != np.uint8:
            pixels = (255 * (pixels.astype("float64") / max(1.0, float(pixels.max())))).astype("uint8")
        yield name, Image.fromarray(pixels).convert("RGB")


def write_corpus(folder: Path, count: int, seed: int = 0, photos: bool = True) -> list[TextImage]:
    """Write ``count`` text images (and the text-less photos) to ``folder`` with ``truth.json``:
    per file its words (empty for photos) and conditions."""
    folder.mkdir(parents=True, exist_ok=True)
    samples: list[TextImage] = []
    truth: dict[str, dict[str, object]] = {}
    for sample, image in generate(count, seed):
        image.save(folder / sample.name, quality=95) if sample.name.endswith(".jpg") else image.save(
            folder / sample.name
        )
        samples.append(sample)
        truth[sample.name] = asdict(sample)
    if photos:
        for name, image in textless_photos():
            file = f"photo-{name}.png"
            image.save(folder / file)
            truth[file] = {
                "name": file,
                "words": [],
                "kind": "photo",
                "width": image.width,
                "height": image.height,
            }
    (folder / "truth.json").write_text(json.dumps(truth, ensure_ascii=False, indent=1))
    return samples
