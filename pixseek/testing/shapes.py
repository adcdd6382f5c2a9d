"""A generated image-caption set: coloured shapes of two sizes in four corners, captioned in English,
German and French.

Training must be shown to work offline, where no real caption set exists. Shapes give a task whose
answer is known and checkable: every caption names a shape, a colour, a size and a position, so a
trained dual encoder can tell images apart only by learning all four from pixels and words, and a
held-out set drawn with another seed holds images it has never seen. Jitter (position, size,
rotation, colour, background noise) keeps two images of the same description from being identical.

The layout is ``pixseek eval``'s (and ``pixseek train``'s): ``images/*.png`` plus ``captions.jsonl``
with one ``{"image", "caption", "language"}`` row per caption.

CLI: ``python -m pixseek.testing.shapes OUT_DIR [--count N] [--seed S] [--distinct] [--size PX]
[--partial]``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle", "star")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 50),
    "blue": (40, 60, 220),
    "yellow": (235, 210, 20),
    "purple": (150, 40, 180),
}
SIZES = ("small", "large")
POSITIONS = ("top left", "top right", "bottom left", "bottom right")
LANGUAGES = ("en", "de", "fr")

# German: adjective endings follow the noun's gender after "ein" (masculine -er, neuter -es).
_DE_SHAPES = {"circle": ("Kreis", "m"), "square": ("Quadrat", "n"), "triangle": ("Dreieck", "n"),
              "star": ("Stern", "m")}  # fmt: skip
_DE_COLOURS = {"red": "rot", "green": "grün", "blue": "blau", "yellow": "gelb", "purple": "violett"}
_DE_SIZES = {"small": "klein", "large": "groß"}
_DE_POSITIONS = {"top left": "oben links", "top right": "oben rechts", "bottom left": "unten links",
                 "bottom right": "unten rechts"}  # fmt: skip
# French: size before the noun, colour after it, both agreeing in gender.
_FR_SHAPES = {"circle": ("cercle", "m"), "square": ("carré", "m"), "triangle": ("triangle", "m"),
              "star": ("étoile", "f")}  # fmt: skip
_FR_COLOURS = {"red": ("rouge", "rouge"), "green": ("vert", "verte"), "blue": ("bleu", "bleue"),
               "yellow": ("jaune", "jaune"), "purple": ("violet", "violette")}  # fmt: skip
_FR_SIZES = {"small": ("petit", "petite"), "large": ("grand", "grande")}
_FR_POSITIONS = {"top left": "en haut à gauche", "top right": "en haut à droite",
                 "bottom left": "en bas à gauche", "bottom right": "en bas à droite"}  # fmt: skip


@dataclass(frozen=True)
class Scene:
    shape: str
    colour: str
    size: str
    position: str


ALL_SCENES: tuple[Scene, ...] = tuple(
    Scene(*combo) for combo in itertools.product(SHAPES, COLOURS, SIZES, POSITIONS)
)


def caption(scene: Scene, language: str) -> str:
    """The scene in one language, grammatically (so real text towers see real phrases)."""
    if language == "en":
        return f"a {scene.size} {scene.colour} {scene.shape} at the {scene.position}"
    if language == "de":
        noun, gender = _DE_SHAPES[scene.shape]
        ending = "er" if gender == "m" else "es"
        size, colour = _DE_SIZES[scene.size], _DE_COLOURS[scene.colour]
        return f"ein {size}{ending} {colour}{ending} {noun} {_DE_POSITIONS[scene.position]}"
    if language == "fr":
        noun, gender = _FR_SHAPES[scene.shape]
        form = 0 if gender == "m" else 1
        article = "un" if gender == "m" else "une"
        size, colour = _FR_SIZES[scene.size][form], _FR_COLOURS[scene.colour][form]
        return f"{article} {size} {noun} {colour} {_FR_POSITIONS[scene.position]}"
    raise ValueError(f"no captions in {language!r}; choose from {', '.join(LANGUAGES)}")


def partial_captions(scene: Scene) -> list[str]:
    """English captions that name only some of the scene's attributes ("a circle", "a red circle",
    "a large circle at the top left", ...): a model trained on full captions alone has never seen a
    query that leaves attributes out, which is what users type and what composed queries combine."""
    shape, colour, size, position = scene.shape, scene.colour, scene.size, scene.position
    return [
        f"a {shape}",
        f"a {colour} {shape}",
        f"a {size} {shape}",
        f"a {shape} at the {position}",
        f"a {size} {colour} {shape}",
        f"something {colour}",
    ]


def _polygon(shape: str, cx: float, cy: float, radius: float, angle: float) -> list[tuple[float, float]]:
    if shape == "square":
        corners = [(math.pi / 4 + k * math.pi / 2) for k in range(4)]
        return [(cx + radius * math.cos(a + angle), cy + radius * math.sin(a + angle)) for a in corners]
    if shape == "triangle":
        corners = [(-math.pi / 2 + k * 2 * math.pi / 3) for k in range(3)]
        return [(cx + radius * math.cos(a + angle), cy + radius * math.sin(a + angle)) for a in corners]
    points = []  # star: five outer and five inner points
    for k in range(10):
        r = radius if k % 2 == 0 else radius * 0.45
        a = -math.pi / 2 + k * math.pi / 5 + angle
        points.append((cx + r * math.cos(a), cy + r * math.sin(a)))
    return points


def draw(scene: Scene, rng: np.random.Generator, size: int = 64) -> Image.Image:
    """One jittered picture of ``scene`` on a noisy light background."""
    background = rng.integers(180, 231) + rng.integers(-12, 13, 3)  # light, nearly grey
    noise = rng.normal(0, 12, (size, size, 3))
    pixels = np.clip(background + noise, 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels)
    radius = size * (0.11 if scene.size == "small" else 0.22) * rng.uniform(0.85, 1.15)
    vertical, horizontal = scene.position.split()
    margin = radius + size * 0.03
    cx = rng.uniform(margin, size / 2) if horizontal == "left" else rng.uniform(size / 2, size - margin)
    cy = rng.uniform(margin, size / 2) if vertical == "top" else rng.uniform(size / 2, size - margin)
    colour = tuple(
        int(c) for c in np.clip(np.array(COLOURS[scene.colour]) + rng.integers(-20, 21, 3), 0, 255)
    )
    canvas = ImageDraw.Draw(image)
    if scene.shape == "circle":
        canvas.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=colour)
    else:
        canvas.polygon(_polygon(scene.shape, cx, cy, radius, rng.uniform(-0.25, 0.25)), fill=colour)
    return image


def generate(
    out_dir: Path,
    count: int,
    *,
    seed: int = 0,
    size: int = 64,
    languages: tuple[str, ...] = LANGUAGES,
    distinct: bool = False,
    partial: bool = False,
) -> Path:
    """Write ``count`` images and their captions (one per language) under ``out_dir``; return the
    captions file. ``distinct`` draws every scene at most once, so that each caption has exactly one
    matching image in the set: what a retrieval evaluation needs to be unambiguous. ``partial`` adds
    the English :func:`partial_captions` (for training, not for a retrieval evaluation: they match
    many images)."""
    for language in languages:
        caption(ALL_SCENES[0], language)  # unknown languages fail before anything is written
    if distinct and count > len(ALL_SCENES):
        raise ValueError(f"only {len(ALL_SCENES)} distinct scenes exist, asked for {count}")
    rng = np.random.default_rng(seed)
    picks = rng.permutation(len(ALL_SCENES))[:count] if distinct else rng.integers(0, len(ALL_SCENES), count)
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for number, pick in enumerate(picks):
        scene = ALL_SCENES[int(pick)]
        name = f"images/shape_{number:05d}.png"
        draw(scene, rng, size).save(out_dir / name)
        rows += [{"image": name, "caption": caption(scene, lang), "language": lang} for lang in languages]
        if partial:
            rows += [{"image": name, "caption": text, "language": "en"} for text in partial_captions(scene)]
    captions_file = out_dir / "captions.jsonl"
    captions_file.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), "utf-8")
    return captions_file


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--count", type=int, default=600, help="number of images (default 600)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--size", type=int, default=64, help="image side in pixels (default 64)")
    parser.add_argument("--distinct", action="store_true", help="every scene at most once (<= 160 images)")
    parser.add_argument("--languages", default=",".join(LANGUAGES), help="comma-separated (default en,de,fr)")
    parser.add_argument("--partial", action="store_true", help="add English captions naming some attributes")
    args = parser.parse_args(argv)
    path = generate(
        args.out_dir,
        args.count,
        seed=args.seed,
        size=args.size,
        languages=tuple(args.languages.split(",")),
        distinct=args.distinct,
        partial=args.partial,
    )
    print(path)


if __name__ == "__main__":
    main()
