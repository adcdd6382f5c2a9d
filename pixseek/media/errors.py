"""The one error of the media package: a file that cannot become an image.

Reading (:mod:`pixseek.media.files`), the checks before decoding (:mod:`pixseek.media.prechecks`)
and decoding (:mod:`pixseek.media.decode`) all raise it, so that every caller catches one type and
records its short reason; it lives apart from all three so that none imports another for it.
"""

from __future__ import annotations


class DecodeError(Exception):
    """A file that cannot become an image; ``reason`` is short enough to store and show per file."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
