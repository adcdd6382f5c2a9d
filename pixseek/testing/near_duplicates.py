"""A labelled near-duplicate set: originals, their copies, and look-alikes that are not copies.

Duplicate finding has to be measured, not asserted (docs/search.md, "Duplicates"): on this set
every image carries the group it belongs to, so the groups ``pixseek duplicates`` forms can be
scored pair by pair. Originals are scikit-image's sample photos and generated shapes
(:func:`pixseek.testing.shapes.draw`). Each original gets one copy per :data:`TRANSFORMS` entry:
what copying, exporting and editing do to a photo. Look-alikes are distinct pictures that a model
which has learnt *what* a picture shows puts close to an original, and that must stay out of its
group: another drawing of the same shapes scene (same shape, colour, size and corner; other
position, rotation and noise), the other camera of scikit-image's stereo pair, and a reframed shot
(a window of 70% of the photo from the opposite corner, as a step to the side would give).

Files are named ``GROUP__KIND.ext``; ``labels.jsonl`` holds ``{"image", "group", "kind"}`` per file.
A look-alike is a group of its own.

CLI: ``python -m pixseek.testing.near_duplicates OUT_DIR [--shapes N] [--seed S] [--size PX]``.
"""

from __future__ import annotations

import argparse
import io
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, ImageEnhance

from pixseek.testing.shapes import ALL_SCENES, draw

# scikit-image photos used as originals (colour and grey, 300-1400 px); the chessboards are left
# out (the RGB and grey files hold the same pixels: duplicates of each other) and so is the right
# camera of the stereo pair, which is the left one's look-alike.
PHOTOS = (
    "astronaut.png",
    "brick.png",
    "camera.png",
    "cell.png",
    "chelsea.png",
    "coffee.png",
    "coins.png",
    "grass.png",
    "gravel.png",
    "hubble_deep_field.jpg",
    "ihc.png",
    "moon.png",
    "motorcycle_left.png",
    "page.png",
    "retina.jpg",
    "rocket.jpg",
    "text.png",
)
STEREO = {"motorcycle_left.png": "motorcycle_right.png"}
MAX_SIDE = 800  # originals are scaled down to this: the set stays a few MB and fast to index
ORIGINAL = "original"
LOOK_ALIKE = "look-alike"


@dataclass(frozen=True)
class LabelledImage:
    image: str  # file name in the set's folder
    group: str  # images of one group are copies of one original
    kind: str  # ORIGINAL, a TRANSFORMS name, or LOOK_ALIKE


def _resized(image: Image.Image, rng: np.random.Generator) -> tuple[Image.Image, str]:
    scale = rng.uniform(0.45, 0.7)
    size = (max(16, round(image.width * scale)), max(16, round(image.height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS), "png"


def _recompressed(image: Image.Image, rng: np.random.Generator) -> tuple[bytes, str]:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=int(rng.integers(25, 45)))
    return buffer.getvalue(), "jpg"


def _cropped(image: Image.Image, rng: np.random.Generator) -> tuple[Image.Image, str]:
    """5-8% of the width and of the height cut away, split at random between the two sides."""
    cut_x, cut_y = (round(side * rng.uniform(0.05, 0.08)) for side in image.size)
    left, top = int(rng.integers(0, cut_x + 1)), int(rng.integers(0, cut_y + 1))
    return image.crop((left, top, image.width - (cut_x - left), image.height - (cut_y - top))), "png"


def _re_exposed(image: Image.Image, rng: np.random.Generator) -> tuple[Image.Image, str]:
    brighter = ImageEnhance.Brightness(image).enhance(
        rng.choice([rng.uniform(0.7, 0.85), rng.uniform(1.15, 1.3)])
    )
    return ImageEnhance.Contrast(brighter).enhance(rng.uniform(0.75, 1.25)), "png"


def _exif_rotated(image: Image.Image, _rng: np.random.Generator) -> tuple[bytes, str]:
    """Pixels stored rotated a quarter turn counter-clockwise, with EXIF Orientation 6 (rotate 90
    clockwise to display): a camera held upright writes this, and decoding restores the picture."""
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    buffer = io.BytesIO()
    image.transpose(Image.Transpose.ROTATE_90).save(buffer, "JPEG", quality=92, exif=exif.tobytes())
    return buffer.getvalue(), "jpg"


Transform = Callable[[Image.Image, np.random.Generator], tuple[Image.Image | bytes, str]]
TRANSFORMS: dict[str, Transform] = {
    "resized": _resized,
    "recompressed": _recompressed,
    "cropped": _cropped,
    "re-exposed": _re_exposed,
    "exif-rotated": _exif_rotated,
}


def _reframed(image: Image.Image) -> Image.Image:
    """A 70% window from the bottom-right corner, shown at the original's size: another shot."""
    width, height = image.size
    window = (round(width * 0.3), round(height * 0.3), width, height)
    return image.crop(window).resize(image.size, Image.Resampling.LANCZOS)


def _photo(folder: Path, name: str) -> Image.Image:
    image = Image.open(folder / name).convert("RGB")
    image.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
    return image


def originals(*, shapes: int, seed: int, size: int) -> tuple[dict[str, Image.Image], dict[str, Image.Image]]:
    """(originals by group name, look-alikes by group name of their own)."""
    import skimage  # a dev dependency: only this generator needs the sample photos

    folder = Path(skimage.__file__).parent / "data"
    found: dict[str, Image.Image] = {}
    look_alikes: dict[str, Image.Image] = {}
    for name in PHOTOS:
        stem = Path(name).stem
        found[stem] = _photo(folder, name)
        look_alikes[f"{stem}-reframed"] = _reframed(found[stem])
        if name in STEREO:
            look_alikes[Path(STEREO[name]).stem] = _photo(folder, STEREO[name])
    rng = np.random.default_rng(seed)
    for number, pick in enumerate(rng.permutation(len(ALL_SCENES))[:shapes]):
        scene = ALL_SCENES[int(pick)]
        stem = (
            f"shape{number:03d}-{scene.size}-{scene.colour}-{scene.shape}-{scene.position.replace(' ', '-')}"
        )
        found[stem] = draw(scene, rng, size)
        look_alikes[f"{stem}-redrawn"] = draw(scene, rng, size)
    return found, look_alikes


def generate(out_dir: Path, *, shapes: int = 40, seed: int = 0, size: int = 256) -> list[LabelledImage]:
    """Write the set under ``out_dir`` (with ``labels.jsonl``) and return its labels."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    found, look_alikes = originals(shapes=shapes, seed=seed, size=size)
    rng = np.random.default_rng(seed + 1)
    labels: list[LabelledImage] = []
    for group, image in found.items():
        labels.append(_write(out_dir, group, ORIGINAL, image, "png"))
        for kind, transform in TRANSFORMS.items():
            copy, extension = transform(image, rng)
            labels.append(_write(out_dir, group, kind, copy, extension))
    for group, image in look_alikes.items():
        labels.append(_write(out_dir, group, LOOK_ALIKE, image, "png"))
    lines = "".join(json.dumps(asdict(label)) + "\n" for label in labels)
    (out_dir / "labels.jsonl").write_text(lines, "utf-8")
    return labels


def _write(out_dir: Path, group: str, kind: str, image: Image.Image | bytes, extension: str) -> LabelledImage:
    name = f"{group}__{kind}.{extension}"
    if isinstance(image, bytes):
        (out_dir / name).write_bytes(image)
    else:
        image.save(out_dir / name)
    return LabelledImage(name, group, kind)


def read_labels(folder: Path) -> list[LabelledImage]:
    rows = (json.loads(line) for line in (Path(folder) / "labels.jsonl").read_text("utf-8").splitlines())
    return [LabelledImage(**row) for row in rows]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--shapes", type=int, default=40, help="generated shapes originals (default 40)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=256, help="side of the shapes pictures (default 256)")
    args = parser.parse_args(argv)
    labels = generate(args.out_dir, shapes=args.shapes, seed=args.seed, size=args.size)
    print(f"{len(labels)} images in {args.out_dir}")


if __name__ == "__main__":
    main()
