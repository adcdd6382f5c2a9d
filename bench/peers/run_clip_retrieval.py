"""Run clip-retrieval 2.45.0's ``clip_inference`` offline on a local transformers CLIP checkpoint.

Run with the clip-retrieval venv's python (bench/README.md):

    HF_HUB_OFFLINE=1 bench/.work/peers/clip-retrieval/bin/python run_clip_retrieval.py \\
        CHECKPOINT FOLDER OUT BATCH_SIZE WORKERS

Nothing in the package is patched. The checkpoint is passed as ``clip_model="hf_clip:CHECKPOINT"``,
which all_clip's ``load_hf_clip`` loads with ``transformers.CLIPModel.from_pretrained`` and
``CLIPProcessor.from_pretrained(...).image_processor`` (a local folder needs no hub), wrapped in its
``HFClipWrapper`` (fp32 on the CPU); its warm-up tokenizes with clip-anytorch's bundled BPE vocab.
``HF_HUB_OFFLINE=1`` and ``WANDB_MODE=disabled`` keep it off the network. The call is what
``clip-retrieval inference --input_dataset FOLDER --output_folder OUT --clip_model hf_clip:CHECKPOINT
--enable_text False --batch_size B --num_prepro_workers W`` runs (``enable_text`` must be off: with
it on, a folder of images without .txt captions yields no keys). After it returns, the number of
embeddings written (``OUT/img_emb/*.npy``) goes to ``OUT/count.txt`` for the benchmark to check.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def main() -> None:
    checkpoint, folder, out = (Path(arg).resolve() for arg in sys.argv[1:4])
    batch_size, workers = int(sys.argv[4]), int(sys.argv[5])
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("WANDB_MODE", "disabled")

    from clip_retrieval.clip_inference.main import main as clip_inference

    clip_inference(
        input_dataset=str(folder),
        output_folder=str(out),
        input_format="files",
        clip_model=f"hf_clip:{checkpoint}",
        enable_text=False,
        enable_image=True,
        enable_metadata=False,
        batch_size=batch_size,
        num_prepro_workers=workers,
        use_jit=False,
    )

    import numpy as np

    count = sum(len(np.load(path)) for path in sorted((out / "img_emb").glob("*.npy")))
    (out / "count.txt").write_text(str(count))


if __name__ == "__main__":
    main()
