"""Thumbnails, generated once per (content, size) and kept on disk next to the index.

Keyed by content hash, so a moved file keeps its thumbnail and a changed file gets a new one; the
hash also makes a strong ETag, so browsers revalidate for free. A new thumbnail is keyed by the hash
of the bytes it was made from, so whatever the path held at that moment can never be cached under
another content's key.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

from pixseek.media.decode import decode_image
from pixseek.media.files import FileOpener
from pixseek.media.hashing import content_hash


class ThumbnailCache:
    """Thumbnails under ``folder``; sources are read through ``opener`` (the server's is confined
    to its library roots and refuses symlinks)."""

    def __init__(self, folder: Path, opener: FileOpener | None = None):
        self.folder = folder
        self.opener = opener or FileOpener()

    def path_for(self, content_hash: str, size: int) -> Path:
        return self.folder / str(size) / content_hash[:2] / f"{content_hash}.jpg"

    def get(self, source: str, expected_hash: str, size: int) -> Path:
        """The thumbnail file, made from ``source`` if missing; DecodeError/OSError propagate.

        If ``source`` no longer holds the content ``expected_hash`` names, the thumbnail made is
        that of what it holds now, cached under that content's own hash.
        """
        target = self.path_for(expected_hash, size)
        if target.exists():
            return target
        data = self.opener.read(source)
        target = self.path_for(content_hash(data), size)
        if target.exists():
            return target
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
