"""Server settings: the library settings plus what only a network service needs."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from pixseek.config import Settings


class ServerSettings(Settings):
    """``PIXSEEK_LIBRARY_ROOTS`` takes a JSON list (``'["/photos", "/scans"]'``)."""

    library_roots: list[Path] = Field(default=[], description="The only folders ever indexed or served")
    api_key: str | None = Field(default=None, description="Required by mutating endpoints when set")
    cors_origins: list[str] = Field(default=[], description="Origins allowed by CORS; empty = CORS off")
    max_upload_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)
    max_upload_pixels: int = Field(default=50_000_000, ge=1)
    body_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="A request body that sends nothing for this long gets 408 and its connection is "
        "closed: a client that declares more than it sends would otherwise hold the connection open",
    )
    thumbnail_sizes: tuple[int, ...] = (128, 256, 512)
    watch: bool = Field(default=False, description="Keep the index in step with the roots (watchdog)")
    watch_poll: bool = Field(default=False, description="Watch by polling (network mounts, no inotify)")
