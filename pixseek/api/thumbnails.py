"""Thumbnails, generated once per (content, size) and kept on disk next to the index.

Keyed by content hash, so a moved file keeps its thumbnail and a changed file gets a new one; the
hash also makes a strong ETag, so browsers revalidate for free.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

from pixseek.indexer.decode import decode_image


class ThumbnailCache:
    def __init__(self, folder: Path):
        self.folder = folder

    def path_for(self, content_hash: str, size: int) -> Path:
        return self.folder / str(size) / content_hash[:2] / f"{content_hash}.jpg"

    def get(self, source: str, content_hash: str, size: int) -> Path:
        """The thumbnail file, made from ``source`` if missing; DecodeError/OSError propagate."""
        target = self.path_for(content_hash, size)
        if target.exists():
            return target
        with open(source, "rb") as handle:
            data = handle.read()
        image = decode_image(data, min_side=size).image
        image.thumbnail((size, size))
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=85, optimize=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(buffer.getvalue())
            os.replace(tmp, target)  # concurrent requests for one thumbnail both succeed
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return target
