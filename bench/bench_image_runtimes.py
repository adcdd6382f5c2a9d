"""The CLIP ViT-B/32 image tower alone in each runtime that installs from PyPI here (issue 17):
images/s at batch 32 on ready pixels, and parity with transformers' fp32 ``get_image_features``.

Runtimes: PyTorch eager fp32, bf16 autocast (pixseek's PyTorch path), bf16 weights, and
``torch.compile`` (inductor) bf16 autocast; ONNX Runtime fp32 (rclip's runtime; the export needs
the ``onnx`` package, looked for in bench/.work/peers/onnx-export as bench_peers.py installs it);
OpenVINO fp32 and bf16 (pixseek's CPU runtime, loaded the way ``pixseek index`` loads it). bf16
rows are skipped on a CPU without native bf16, where they are emulated and slower. OpenVINO int8
(not a pixseek runtime: a candidate, measured to decide) is pixseek's exported tower quantised by
NNCF's post-training quantisation, calibrated on 64 of bench_indexing's 640x480 photos as
pixseek preprocesses them; it runs when ``nncf`` imports, from pixseek's venv or from
bench/.work/peers/nncf (``.venv/bin/pip install --target bench/.work/peers/nncf nncf``, appended
to ``sys.path`` so the venv's own numpy and scipy win). Its parity is given on the random batch
and, in the note, on 32 other photos against OpenVINO fp32.

Parity is the max |difference| and the minimum cosine between each runtime's normalised vectors and
the fp32 reference on the same pixels. Start-up costs are reported too: torch.compile's first call
and OpenVINO's export and compile.

``python bench/bench_image_runtimes.py`` (~3 minutes on 2 cores; ``--no-compile`` skips
torch.compile, whose first call alone takes about a minute; ``--quick``: 3 repeats, no compile).
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse
import datetime
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import transformers
from bench_indexing import ensure_photos
from PIL import Image

from common import DEFAULT_WORK_DIR, PIXSEEK_CACHE, ensure_checkpoint, log, machine_info, uptime
from pixseek.embedding import load_encoder
from pixseek.embedding.checkpoint_identity import checkpoint_folder
from pixseek.embedding.encoder import Encoder
from pixseek.embedding.openvino_tower import MODEL_FILE, TowerCache
from pixseek.embedding.runtime import cpu_has_native_bf16

BATCH = 32


class _Features(torch.nn.Module):
    def __init__(self, model: Any):
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model.get_image_features(pixel_values=pixel_values).pooler_output


def _normalised(features: Any) -> np.ndarray:
    array = np.asarray(features.float().numpy() if isinstance(features, torch.Tensor) else features)
    array = array.astype(np.float32)
    return array / np.linalg.norm(array, axis=1, keepdims=True)


def _timed(run: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Median seconds per call after one warm-up call, and the last output."""
    output = run()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        output = run()
        times.append(time.perf_counter() - started)
    return statistics.median(times), output


def _int8_tower(
    work_dir: Path, checkpoint: Path, cache_dir: Path, fp32: Encoder
) -> tuple[Callable[[np.ndarray], Any], float, float] | None:
    """pixseek's cached OpenVINO tower quantised to int8 by NNCF, calibrated on 64 of the 640x480
    bench photos as ``fp32`` (pixseek's OpenVINO fp32 encoder) preprocesses them: (infer, min
    cosine to ``fp32`` on 32 other photos, seconds to quantise), or None when nncf is not installed."""
    sys.path.append(str(work_dir / "peers" / "nncf"))
    try:
        import nncf
        import openvino
    except ImportError as missing:
        log(f"OpenVINO int8 skipped: {missing}")
        return None
    folder = checkpoint_folder(str(checkpoint))
    found = TowerCache(cache_dir).find(folder.identity()) if folder is not None else None
    if found is None:
        raise SystemExit("no exported tower in the cache: the OpenVINO rows export it first")
    files = sorted(ensure_photos(work_dir, 200, (640, 480), 90).glob("*.jpg"))[:96]
    photos = np.stack([fp32.preprocess_image(Image.open(path).convert("RGB")) for path in files])
    calibration, held_out = photos[:64], photos[64:]
    core = openvino.Core()
    started = time.perf_counter()
    quantised = nncf.quantize(
        core.read_model(str(found[0] / MODEL_FILE)),
        nncf.Dataset([calibration[i : i + 1] for i in range(len(calibration))]),
        model_type=nncf.ModelType.TRANSFORMER,
        subset_size=len(calibration),
    )
    seconds = time.perf_counter() - started
    options = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
    request = core.compile_model(quantised, "CPU", options).create_infer_request()

    def infer(pixels: np.ndarray) -> Any:
        return np.array(request.infer({0: pixels})[0])

    photo_cosine = float((_normalised(infer(held_out)) * fp32.embed_pixels(held_out)).sum(axis=1).min())
    return infer, photo_cosine, seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed calls per runtime (default 7)")
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    parser.add_argument("--work-dir", type=Path, default=DEFAULT_WORK_DIR)
    parser.add_argument("--quick", action="store_true", help="3 repeats, no torch.compile")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.no_compile = 3, True
    work_dir = args.work_dir.resolve()
    checkpoint = ensure_checkpoint(work_dir)
    bf16 = cpu_has_native_bf16()
    machine = {**machine_info(), "load_before": uptime()}
    log(f"machine: {machine}")

    model = transformers.CLIPModel.from_pretrained(str(checkpoint)).eval()
    pixels = np.random.default_rng(0).standard_normal((BATCH, 3, 224, 224)).astype(np.float32)
    tensor = torch.from_numpy(pixels)
    rows: list[dict[str, Any]] = []
    with torch.inference_mode():
        reference = _normalised(model.get_image_features(pixel_values=tensor).pooler_output)

    def add(name: str, seconds: float, output: Any, note: str = "") -> None:
        vectors = _normalised(output)
        row = {
            "runtime": name,
            "images_per_s": BATCH / seconds,
            "ms_per_batch": seconds * 1000,
            "max_abs_diff": float(np.abs(vectors - reference).max()),
            "min_cosine": float((vectors * reference).sum(axis=1).min()),
            "note": note,
        }
        rows.append(row)
        log(f"{name}: {row['images_per_s']:.1f} images/s, min cosine {row['min_cosine']:.6f} {note}")

    def eager(autocast: bool) -> Callable[[], Any]:
        def run() -> Any:
            with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=autocast):
                return model.get_image_features(pixel_values=tensor).pooler_output

        return run

    add("PyTorch fp32", *_timed(eager(False), args.repeats))
    if bf16:
        add("PyTorch bf16 autocast (pixseek's PyTorch path)", *_timed(eager(True), args.repeats))
        weights = transformers.CLIPModel.from_pretrained(str(checkpoint), dtype=torch.bfloat16).eval()
        as_bf16 = tensor.bfloat16()

        def cast_weights() -> Any:
            with torch.inference_mode():
                return weights.get_image_features(pixel_values=as_bf16).pooler_output

        add("PyTorch bf16 weights", *_timed(cast_weights, args.repeats))
        del weights
        if not args.no_compile:
            compiled = torch.compile(_Features(model))

            def run_compiled() -> Any:
                with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16):
                    return compiled(tensor)

            started = time.perf_counter()
            run_compiled()
            first = time.perf_counter() - started
            add(
                "torch.compile bf16 autocast",
                *_timed(run_compiled, args.repeats),
                f"first call {first:.0f} s",
            )

    exporter = work_dir / "peers" / "onnx-export"
    if exporter.exists():
        sys.path.insert(0, str(exporter))
    try:
        import onnx  # noqa: F401  (torch.onnx.export needs it)
        import onnxruntime

        onnx_path = work_dir / "image-tower.onnx"
        if not onnx_path.exists():
            torch.onnx.export(
                _Features(model),
                (tensor[:2],),
                str(onnx_path),
                input_names=["pixel_values"],
                output_names=["features"],
                dynamic_axes={"pixel_values": {0: "n"}},
                opset_version=17,
                dynamo=False,
            )
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = len(os.sched_getaffinity(0))
        session = onnxruntime.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        add(
            "ONNX Runtime fp32 (rclip's runtime)",
            *_timed(lambda: session.run(None, {"pixel_values": pixels})[0], args.repeats),
        )
    except ImportError as missing:
        log(f"ONNX Runtime skipped: {missing}")

    cache_dir = work_dir / PIXSEEK_CACHE
    openvino_encoders: dict[str, Encoder] = {}
    for precision in ("fp32", "bf16") if bf16 else ("fp32",):
        started = time.perf_counter()
        encoder = load_encoder(
            str(checkpoint), device="cpu", precision=precision, runtime="openvino", cache_dir=cache_dir
        )
        loaded = time.perf_counter() - started
        openvino_encoders[precision] = encoder
        add(
            f"OpenVINO {precision} (pixseek's CPU runtime)",
            *_timed(lambda e=encoder: e.embed_pixels(pixels), args.repeats),
            f"{type(encoder).__name__} loaded in {loaded:.1f} s",
        )
    int8 = _int8_tower(work_dir, checkpoint, cache_dir, openvino_encoders["fp32"])
    if int8 is not None:
        infer, photo_cosine, seconds = int8
        add(
            "OpenVINO int8 (NNCF post-training quantisation; candidate)",
            *_timed(lambda: infer(pixels), args.repeats),
            f"quantised in {seconds:.0f} s; min cosine on 32 photos vs OpenVINO fp32 {photo_cosine:.5f}",
        )
    machine["load_after"] = uptime()

    print(f"## Image tower runtimes ({datetime.date.today().isoformat()})\n")
    print(
        f"Machine: {machine['cpu']} (family/model {machine['cpu_family_model']}), {machine['cores']} cores, "
        f"native bf16: {machine['native_bf16']}; torch {torch.__version__}. Load before: "
        f"{machine['load_before']}; after: {machine['load_after']}. CLIP ViT-B/32 image tower (random "
        f"weights), batch {BATCH} of 224 px, median of {args.repeats}.\n"
    )
    base = rows[0]["images_per_s"]
    print("| runtime | images/s | x PyTorch fp32 | max abs diff | min cosine | note |")
    print("|---|---:|---:|---:|---:|---|")
    for row in rows:
        print(
            f"| {row['runtime']} | {row['images_per_s']:.1f} | {row['images_per_s'] / base:.2f}x "
            f"| {row['max_abs_diff']:.1e} | {row['min_cosine']:.6f} | {row['note']} |"
        )
    print()
    print(json.dumps({"benchmark": "image_runtimes", "machine": machine, "rows": rows}))


if __name__ == "__main__":
    main()
