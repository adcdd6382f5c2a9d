"""Image-caption evaluation sets: a folder of images plus a captions file (JSONL or CSV).

One row per caption (``image``, ``caption``, optional ``language``), or in JSONL a ``captions`` list
per image; several captions per image are the norm (Flickr30K/COCO Karpathy splits have five).
Image paths are relative to the images folder.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pixseek.errors import PixseekError


@dataclass(frozen=True)
class CaptionSet:
    images: list[Path]  # unique, in order of first appearance
    captions: list[str]
    caption_image: np.ndarray  # index into images, per caption
    languages: list[str | None]  # per caption


def _rows(path: Path) -> list[dict]:
    if path.suffix.lower() == ".csv":
        with open(path, newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))
    rows = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as error:
                    raise PixseekError(f"{path}:{number}: not JSON ({error.msg})") from None
    return rows


def load_caption_set(captions_file: Path, images_dir: Path) -> CaptionSet:
    if not captions_file.is_file():
        raise PixseekError(f"no captions file {captions_file}")
    index: dict[str, int] = {}
    captions: list[str] = []
    owners: list[int] = []
    languages: list[str | None] = []
    for number, row in enumerate(_rows(captions_file), 1):
        image = row.get("image") if isinstance(row, dict) else None
        texts = row.get("captions") or [row.get("caption")] if isinstance(row, dict) else []
        if not image or not all(isinstance(t, str) and t.strip() for t in texts):
            raise PixseekError(f"{captions_file}: row {number} needs 'image' and a non-empty 'caption'")
        if image not in index:
            if not (images_dir / image).is_file():
                raise PixseekError(f"{captions_file}: row {number}: no image {images_dir / image}")
            index[image] = len(index)
        for text in texts:
            captions.append(text.strip())
            owners.append(index[image])
            languages.append(row.get("language") or None)
    if not captions:
        raise PixseekError(f"{captions_file} holds no captions")
    return CaptionSet(
        images=[images_dir / image for image in index],
        captions=captions,
        caption_image=np.asarray(owners),
        languages=languages,
    )
