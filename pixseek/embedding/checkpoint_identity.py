"""What a checkpoint folder is, read from its files without loading it: the cache key of its
compiled image tower (pixseek.embedding.openvino_tower).

A compiled tower must never outlive the weights it was compiled from, and looking that up must
cost milliseconds, not the seconds of loading the model to hash it. The key therefore covers the
folder, its config, and every weights file's size, modification time and sampled contents (1 MiB at
four places): an edited, re-saved or swapped checkpoint gets a new key, also one copied over the
old with its times kept (``cp -p``), unless it matches in all of those.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
_SAMPLE = 1 << 20  # bytes read at each sampled offset
_SAMPLES = 4  # start, 1/3, 2/3, end


@dataclass(frozen=True)
class CheckpointFolder:
    """A checkpoint on local disk: the folder and what its ``config.json`` says."""

    folder: Path
    config: dict[str, Any]

    @property
    def model_type(self) -> str:
        return str(self.config.get("model_type", ""))

    def identity(self) -> str:
        """A hex digest that changes whenever the config or any weights file does."""
        digest = hashlib.blake2b(digest_size=16)
        digest.update(str(self.folder).encode())
        digest.update(json.dumps(self.config, sort_keys=True).encode())
        weights = sorted(p for p in self.folder.iterdir() if p.name.endswith(_WEIGHT_SUFFIXES))
        for path in weights:
            stat = path.stat()
            digest.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
            with path.open("rb") as handle:
                for index in range(_SAMPLES):
                    offset = max(0, (stat.st_size - _SAMPLE) * index // (_SAMPLES - 1))
                    handle.seek(offset)
                    digest.update(handle.read(_SAMPLE))
        return digest.hexdigest()


def checkpoint_folder(source: str) -> CheckpointFolder | None:
    """The local folder behind a resolved model source (an absolute folder, or a hub id whose
    snapshot is complete in the local cache), with its config; None when there is none, so the
    caller loads the model the ordinary way (which also explains what is missing)."""
    folder = Path(source) if os.path.isabs(source) else _cached_snapshot(source)
    if folder is None or not folder.is_dir():
        return None
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(config, dict):
        return None
    return CheckpointFolder(folder.resolve(), config)


def _cached_snapshot(repo_id: str) -> Path | None:
    """The hub cache's snapshot folder of ``repo_id`` if one is there, asking no server."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except (LocalEntryNotFoundError, OSError, ValueError):
        return None
