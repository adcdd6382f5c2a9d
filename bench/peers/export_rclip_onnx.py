"""Export bench/common.py's random-weight CLIP ViT-B/32 to the ONNX files rclip 3.3.0 loads.

rclip runs ``session.run(None, {"input": batch})`` on two ONNX graphs (rclip/model.py,
``Model._run_session``): ``visual.onnx`` takes ``input`` float32 [N, 3, S, S] (already normalised
with the CLIP mean/std by rclip/utils/preprocess.py) and ``textual.onnx`` takes ``input`` int64
[N, 77] (its own BPE tokenizer, padded with 0); each returns one float32 [N, 512] of unnormalised
features (rclip L2-normalises them). This writes both graphs from the transformers checkpoint
(``get_image_features`` / ``get_text_features``, eager attention, opset 17, dynamic batch) and the
BPE merges of the checkpoint's tokenizer.json as the gzipped ``bpe_simple_vocab_16e6.txt.gz`` that
rclip's ``SimpleTokenizer`` reads, then checks the visual graph against transformers with ONNX
Runtime.

Run with pixseek's venv python (torch, transformers) and the ``onnx`` package on the path: it is
not a pixseek dependency, so bench/README.md installs it with ``pip install --target
bench/.work/peers/onnx-export onnx ml_dtypes`` and this runs with ``PYTHONPATH`` set to that folder
(bench_peers.py does this when the files are missing). Usage: ``export_rclip_onnx.py CHECKPOINT OUT_DIR``.
"""

from __future__ import annotations

import gzip
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch
import transformers

CONTEXT_LENGTH = 77
OPSET = 17


class Visual(torch.nn.Module):
    def __init__(self, model: transformers.CLIPModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        output = self.model.get_image_features(pixel_values=pixels)
        return getattr(output, "pooler_output", output)


class Textual(torch.nn.Module):
    def __init__(self, model: transformers.CLIPModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        output = self.model.get_text_features(input_ids=tokens)
        return getattr(output, "pooler_output", output)


def export(module: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    torch.onnx.export(
        module,
        (example,),
        str(tmp),
        dynamo=False,
        opset_version=OPSET,
        input_names=["input"],
        output_names=["output"],
        dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
    )
    tmp.rename(path)


def write_vocab(checkpoint: Path, path: Path) -> None:
    """rclip's SimpleTokenizer reads '#version' then one 'a b' merge per line (OpenAI's format)."""
    merges = json.loads((checkpoint / "tokenizer.json").read_text())["model"]["merges"]
    lines = ["#version: 0.2"] + [" ".join(m) if isinstance(m, list) else m for m in merges]
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")


def main() -> None:
    checkpoint, out_dir = Path(sys.argv[1]), Path(sys.argv[2])
    out_dir.mkdir(parents=True, exist_ok=True)
    model = transformers.CLIPModel.from_pretrained(str(checkpoint), attn_implementation="eager").eval()
    size = model.config.vision_config.image_size
    with torch.no_grad():
        export(Visual(model), torch.zeros(2, 3, size, size), out_dir / "visual.onnx")
        export(Textual(model), torch.ones(2, CONTEXT_LENGTH, dtype=torch.int64), out_dir / "textual.onnx")
    write_vocab(checkpoint, out_dir / "bpe_simple_vocab_16e6.txt.gz")

    import onnxruntime as ort

    pixels = torch.from_numpy(np.random.default_rng(0).standard_normal((3, 3, size, size), dtype=np.float32))
    with torch.no_grad():
        expected = Visual(model)(pixels).numpy()
    session = ort.InferenceSession(str(out_dir / "visual.onnx"), providers=["CPUExecutionProvider"])
    (actual,) = session.run(None, {"input": pixels.numpy()})
    error = float(np.abs(actual - expected).max() / np.abs(expected).max())
    print(f"visual.onnx vs transformers: max relative error {error:.2e}", file=sys.stderr)
    if error > 1e-3:
        raise SystemExit(f"ONNX export differs from transformers ({error:.2e})")
    (out_dir / "manifest.json").write_text(json.dumps({"checkpoint": str(checkpoint), "image_size": size}))


if __name__ == "__main__":
    main()
