"""Re-ranking latency for one text query on the CPU: pixseek against the documented per-pair loop.

For each re-ranker (BridgeTower base ITM, BLIP-2 ITM ViT-g; full-size architectures, random weights,
so the same compute as the published checkpoints) and each precision, in one process:

* ``documented loop``: what the transformers documentation shows, one ``processor(image, text)`` and
  one full forward per (query, image) pair, softmax of the logits, in fp32. Full-size BLIP-2 costs
  seconds per pair on a CPU, so the loop runs on ``--documented-pairs`` candidates (after one
  untimed warm-up pair) and its latency for k candidates is the per-pair median times k: the
  pairs are independent forwards of one shape, so the cost is linear in k (the table says so on
  every such row). It runs under ``torch.no_grad()``, which the documentation omits: that only
  makes the baseline faster.
* ``pixseek, cold cache``: ``CachedScorer.score`` on k candidates whose features are not cached yet
  (read, hash, decode, vision tower in batches, write the cache, then score): a first query.
* ``pixseek, warm cache``: the same call once every candidate's features are cached: the cost of
  every later query that meets these images (or of every query after ``index --rerank-cache``).

Scores: pixseek's fp32 scores are compared with the documented loop's on the pairs it ran, and bf16
candidate rankings with fp32 ones (Spearman). Model loading is excluded everywhere. Setup
(checkpoints ~6 GB, candidate JPEGs) is cached under ``bench/.work/``.

Run: ``python bench/bench_rerank.py`` (``--help`` for options). Progress goes to stderr; stdout
holds markdown tables and, on its last line, one JSON object with every measurement.
"""

# The hub must be off before transformers is imported: everything here is local.
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import argparse
import datetime
import gc
import io
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import skimage
import torch
import transformers
from PIL import Image
from scipy.stats import spearmanr

from common import DEFAULT_WORK_DIR, ensure_built, log, machine_info
from pixseek.media.hashing import content_hash
from pixseek.search.rerank import CachedScorer, FeatureCache, ImageRef, Reranker, load_reranker
from pixseek.testing.tiny_models import build_blip2, build_bridgetower

QUERY = "a dog in the mountains"
PHOTO_SIZE = (1024, 768)
SOURCE_PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png", "rocket.jpg")
CHECKPOINTS: dict[str, tuple[str, Callable[..., Path]]] = {
    "bridgetower": ("bridgetower-base-itm-random", build_bridgetower),
    "blip2": ("blip2-itm-vit-g-random", build_blip2),
}
DEFAULT_DOCUMENTED_PAIRS = {"bridgetower": 21, "blip2": 3}


def ensure_candidates(work_dir: Path, count: int) -> list[Path]:
    """``count`` distinct 1024x768 JPEGs (random crops of sample photos), generated once."""
    folder = work_dir / f"rerank-candidates-{PHOTO_SIZE[0]}x{PHOTO_SIZE[1]}-n{count}"
    done = folder / "done"
    if not done.exists():
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        data = Path(skimage.__file__).parent / "data"
        sources = [Image.open(data / name).convert("RGB") for name in SOURCE_PHOTOS]
        for i in range(count):
            rng = np.random.default_rng(i)
            source = sources[i % len(sources)]
            w, h = source.size
            cw, ch = int(w * rng.uniform(0.6, 1.0)), int(h * rng.uniform(0.6, 1.0))
            x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
            image = source.crop((x, y, x + cw, y + ch)).resize(PHOTO_SIZE, Image.Resampling.BICUBIC)
            buffer = io.BytesIO()
            image.save(buffer, "JPEG", quality=90)
            (folder / f"candidate_{i:03d}.jpg").write_bytes(buffer.getvalue())
        done.touch()
    return sorted(folder.glob("candidate_*.jpg"))


def image_refs(paths: Sequence[Path]) -> list[ImageRef]:
    """What the index would know about each candidate (content hash, size, mtime)."""
    refs = []
    for path in paths:
        stat = path.stat()
        refs.append(ImageRef(str(path), content_hash(path.read_bytes()), stat.st_size, stat.st_mtime_ns))
    return refs


def documented_pair(reranker: Reranker, path: Path) -> float:
    """One pair the way the seed documents score it (fp32, the model's own forward)."""
    image = Image.open(path).convert("RGB")
    with torch.no_grad():
        if reranker.name == "bridgetower":
            logits = reranker.model(**reranker.processor(image, QUERY, return_tensors="pt")).logits
        else:
            inputs = reranker.processor(images=image, text=QUERY, return_tensors="pt")
            logits = reranker.model(**inputs, use_image_text_matching_head=True).logits_per_image
    return torch.softmax(logits, dim=-1)[0, 1].item()


@dataclass
class Row:
    reranker: str
    precision: str
    path: str
    k: int
    seconds: list[float]
    extrapolated_from_pairs: int | None = None

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


@dataclass
class Facts:
    reranker: str
    cache_bytes_per_image: float
    feature_shape: list[int]
    vision_s_per_image: dict[str, float] = field(default_factory=dict)
    max_abs_diff_vs_documented_fp32: float | None = None
    documented_pairs_compared: int = 0
    spearman_bf16_vs_fp32: float | None = None
    max_abs_diff_bf16_vs_fp32: float | None = None


def timed(call: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = call()
    return time.perf_counter() - started, result


def bench_reranker(
    kind: str, checkpoint: Path, paths: list[Path], args: argparse.Namespace
) -> tuple[list[Row], Facts]:
    """All rows of one re-ranker. The timed runs are interleaved round by round (warm pixseek runs
    at every k and precision, then a slice of the documented loop), so that load from other
    processes falls on every path alike rather than on whichever ran during a busy minute."""
    refs = image_refs(paths)
    cold_k, ks = min(args.ks), sorted(args.ks)
    log(f"{kind}: loading {checkpoint.name}")
    base = load_reranker(kind, str(checkpoint), device="cpu", precision="fp32")
    facts = Facts(kind, 0.0, list(base.feature_shape))
    rows = {
        (precision, k): Row(kind, precision, "pixseek, warm cache", k, [])
        for precision in args.precisions
        for k in ks
    }
    cold_rows: list[Row] = []
    warm: dict[str, np.ndarray] = {}
    scorers: dict[str, CachedScorer] = {}
    cache_root = Path(tempfile.mkdtemp(prefix="rerank-cache-", dir=args.work_dir))
    try:
        for precision in args.precisions:
            # One set of weights for every precision: autocast decides the arithmetic.
            reranker = type(base)(base.model, base.processor, base.model_id, base.device, precision)
            cache = FeatureCache(
                cache_root / reranker.features_id, 1 << 40, reranker.feature_shape, reranker.feature_dtype
            )
            scorer = scorers[precision] = CachedScorer(reranker, cache)
            log(f"{kind} {precision}: cold cache, k={cold_k}")
            seconds, cold = timed(lambda scorer=scorer: scorer.score(QUERY, refs[:cold_k]))
            assert cold.computed == cold_k and not any(cold.errors)
            cold_rows.append(Row(kind, precision, "pixseek, cold cache", cold_k, [seconds]))
            log(f"{kind} {precision}: caching the other {len(refs) - cold_k} candidates")
            fill_s, filled = timed(lambda scorer=scorer: scorer.features(refs[cold_k:]))
            facts.vision_s_per_image[precision] = fill_s / max(1, filled.computed)
            facts.cache_bytes_per_image = cache.total_bytes / len(cache)

        pairs = args.documented_pairs.get(kind, DEFAULT_DOCUMENTED_PAIRS[kind])
        documented_pair(base, paths[-1])  # untimed: first-forward allocations
        per_pair: list[float] = []
        documented: list[float] = []
        for repeat in range(args.repeats):
            for precision, scorer in scorers.items():
                for k in ks:
                    log(f"{kind} {precision}: warm cache, k={k}, round {repeat + 1}/{args.repeats}")
                    seconds, scores = timed(lambda scorer=scorer, k=k: scorer.score(QUERY, refs[:k]))
                    assert scores.cache_hits == k and scores.computed == 0
                    rows[precision, k].seconds.append(seconds)
                    warm[precision] = np.array(scores.probabilities)
            share = paths[len(per_pair) : pairs * (repeat + 1) // args.repeats]
            log(f"{kind} fp32: documented loop, {len(share)} pairs, round {repeat + 1}/{args.repeats}")
            for path in share:
                seconds, score = timed(lambda path=path: documented_pair(base, path))
                per_pair.append(seconds)
                documented.append(score)
        # Per-pair median times k: the pairs are independent forwards of one shape, and the median
        # shrugs off a pair that another process slowed down.
        documented_rows = [
            Row(kind, "fp32", "documented loop", k, [statistics.median(per_pair) * k], pairs) for k in ks
        ]
        if "fp32" in warm:
            facts.max_abs_diff_vs_documented_fp32 = float(np.abs(warm["fp32"][:pairs] - documented).max())
            facts.documented_pairs_compared = pairs
        if "fp32" in warm and "bf16" in warm:
            facts.spearman_bf16_vs_fp32 = float(spearmanr(warm["fp32"], warm["bf16"]).statistic)
            facts.max_abs_diff_bf16_vs_fp32 = float(np.abs(warm["fp32"] - warm["bf16"]).max())
    finally:
        shutil.rmtree(cache_root, ignore_errors=True)
    return [*documented_rows, *cold_rows, *rows.values()], facts


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rerankers", default="bridgetower,blip2", type=lambda s: s.split(","))
    parser.add_argument("--precisions", default="fp32,bf16", type=lambda s: s.split(","))
    parser.add_argument("--ks", default="20,50", type=lambda s: [int(x) for x in s.split(",")])
    parser.add_argument("--repeats", type=int, default=3, help="rounds of timed runs (median)")
    parser.add_argument(
        "--documented-pairs",
        default="",
        type=lambda s: {kind: int(n) for kind, n in (item.split("=") for item in s.split(",") if item)},
        help="pairs the documented loop runs, spread over the rounds: bridgetower=21,blip2=3 by default",
    )
    parser.add_argument("--work-dir", type=Path, default=DEFAULT_WORK_DIR)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="k=10, fp32, 1 round, few documented pairs (options given still win)",
    )
    if "--quick" in (sys.argv[1:] if argv is None else argv):
        parser.set_defaults(ks="10", precisions="fp32", repeats=1, documented_pairs="bridgetower=3,blip2=1")
    args = parser.parse_args(argv)
    unknown = set(args.rerankers) - set(CHECKPOINTS)
    if unknown:
        parser.error(f"unknown re-rankers {sorted(unknown)}; choose from {sorted(CHECKPOINTS)}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    args.work_dir = args.work_dir.resolve()
    paths = ensure_candidates(args.work_dir, max(args.ks))
    machine = {**machine_info(), "load_average_at_start": os.getloadavg()[0]}
    log(f"machine: {machine}")
    rows: list[Row] = []
    facts: list[Facts] = []
    for kind in args.rerankers:
        name, build = CHECKPOINTS[kind]
        checkpoint = ensure_built(args.work_dir, name, build)
        measured, fact = bench_reranker(kind, checkpoint, paths, args)
        rows.extend(measured)
        facts.append(fact)
        gc.collect()  # the next model needs the memory of this one (BLIP-2 fp32: 4.7 GB)
    # Other processes on the machine skew every row; the load average says whether there were any.
    machine["load_average_at_end"] = os.getloadavg()[0]
    print_report(machine, args, rows, facts)


def print_report(
    machine: dict[str, Any], args: argparse.Namespace, rows: list[Row], facts: list[Facts]
) -> None:
    """Markdown for people, then one JSON line (the last line of stdout) for scripts."""
    print(f"## Re-ranking benchmark ({datetime.date.today().isoformat()})\n")
    print(
        f"Machine: {machine['cpu']} (family/model {machine['cpu_family_model']}), {machine['cores']} cores, "
        f"native bf16: {machine['native_bf16']}; torch {machine['torch']} ({machine['torch_threads']} "
        f"threads), transformers {machine['transformers']}; 1-minute load average "
        f"{machine['load_average_at_start']:.2f} at the start, "
        f"{machine['load_average_at_end']:.2f} at the end\n"
    )
    print(
        f"One query ({QUERY!r}) against k candidate JPEGs of {PHOTO_SIZE[0]}x{PHOTO_SIZE[1]}; warm rows: "
        f"median of {args.repeats} runs; model load excluded.\n"
    )
    documented = {(r.reranker, r.k): r.median for r in rows if r.path == "documented loop"}
    print("| re-ranker | precision | path | k | median s | s/candidate | vs documented loop |")
    print("|---|---|---|---:|---:|---:|---:|")
    for r in rows:
        note = (
            f" (per-pair median of {r.extrapolated_from_pairs} pairs x k)"
            if r.extrapolated_from_pairs
            else ""
        )
        base = documented.get((r.reranker, r.k))
        ratio = f"{base / r.median:.1f}x faster" if base and r.path != "documented loop" else ""
        print(
            f"| {r.reranker} | {r.precision} | {r.path}{note} | {r.k} | {r.median:.2f} | "
            f"{r.median / r.k:.3f} | {ratio} |"
        )
    print(
        "\n| re-ranker | cache per image | vision tower s/image (cold) | max abs diff vs documented (fp32) | "
        "bf16 vs fp32: Spearman, max abs diff |"
    )
    print("|---|---:|---|---:|---|")
    for f in facts:
        vision = ", ".join(f"{p} {s:.2f}" for p, s in f.vision_s_per_image.items())
        diff = (
            ""
            if f.max_abs_diff_vs_documented_fp32 is None
            else (f"{f.max_abs_diff_vs_documented_fp32:.1e} ({f.documented_pairs_compared} pairs)")
        )
        bf16 = (
            ""
            if f.spearman_bf16_vs_fp32 is None
            else (f"{f.spearman_bf16_vs_fp32:.4f}, {f.max_abs_diff_bf16_vs_fp32:.1e}")
        )
        print(f"| {f.reranker} | {f.cache_bytes_per_image / 1e6:.2f} MB | {vision} | {diff} | {bf16} |")
    payload = {
        "benchmark": "rerank",
        "date": datetime.date.today().isoformat(),
        "machine": machine,
        "query": QUERY,
        "rows": [{**asdict(r), "median_s": r.median} for r in rows],
        "facts": [asdict(f) for f in facts],
    }
    print()
    print(json.dumps(payload))


if __name__ == "__main__":
    main()
