"""Run rclip 3.3.0's own CLI offline on local ONNX files (bench/peers/export_rclip_onnx.py).

Run with the rclip venv's python (bench/README.md), from the folder to index (rclip indexes the
current directory), with ``RCLIP_DATADIR`` pointing at a fresh directory for its database:

    RCLIP_DATADIR=/tmp/x HF_HUB_OFFLINE=1 bench/.work/peers/rclip/bin/python run_rclip.py MODELS [rclip args]

What is patched, in this process only (nothing in the installed package changes):

* ``rclip.model_download.download_onnx_model(filename)`` returns ``MODELS/filename`` (``visual.onnx``,
  ``textual.onnx``) instead of fetching ``yurijmikhalevich/rclip-models`` from the hub;
* ``rclip.model_download.download_tokenizer_vocab()`` returns ``MODELS/bpe_simple_vocab_16e6.txt.gz``;
* ``rclip.model_download.ensure_downloaded()`` only imports ONNX Runtime (what it does once the
  files exist), without the hub's file listing;
* ``rclip.utils.preprocess.IMAGE_SIZE`` is set to the checkpoint's input size (224; rclip's own
  ViT-B-32-256 model uses 256), read by ``preprocess`` at call time.

Everything else (walk, hash, PIL decode and resize, ONNX Runtime session options, batch size,
SQLite, the one text query it answers after indexing) is rclip's unchanged ``rclip.main.main``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def main() -> None:
    models = Path(sys.argv[1]).resolve()
    image_size = json.loads((models / "manifest.json").read_text())["image_size"]
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from rclip import main as rclip_main
    from rclip import model_download
    from rclip.utils import preprocess

    def local_onnx(filename: str, tqdm_class: object = None) -> str:
        path = models / filename
        if not path.is_file():
            raise FileNotFoundError(path)
        return str(path)

    def local_vocab(tqdm_class: object = None) -> str:
        return str(models / "bpe_simple_vocab_16e6.txt.gz")

    def ensure_downloaded() -> None:
        model_download._import_onnxruntime()

    model_download.download_onnx_model = local_onnx
    model_download.download_tokenizer_vocab = local_vocab
    model_download.ensure_downloaded = ensure_downloaded
    preprocess.IMAGE_SIZE = image_size

    sys.argv = ["rclip", *sys.argv[2:]]
    rclip_main.main()


if __name__ == "__main__":
    main()
