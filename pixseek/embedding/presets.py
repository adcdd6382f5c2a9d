"""Short names for the public checkpoints users ask for, so ``--model altclip-m9`` just works."""

from __future__ import annotations

ENCODER_PRESETS: dict[str, str] = {
    "clip": "openai/clip-vit-base-patch32",
    "clip-b16": "openai/clip-vit-base-patch16",
    "clip-l14": "openai/clip-vit-large-patch14",
    "altclip": "BAAI/AltCLIP",
    "altclip-m9": "BAAI/AltCLIP-m9",
}
