"""Indexing throughput on a folder of large camera-sized JPEGs, CLIP ViT-B/32 on the CPU.

Three paths over the same files, measured in the same process so their ratios are comparable:

* ``naive``: what the transformers documentation shows (full-size ``Image.open().convert("RGB")``,
  ``CLIPProcessor`` on the whole batch, ``get_image_features``), i.e. what a user writes without pixseek;
* ``model``: ``DualEncoder.embed_pixels`` on pixels preprocessed before timing, the ceiling any
  pipeline could reach with decoding for free;
* ``pixseek``: ``Library.indexer(...).run([folder])`` into a fresh data directory: walk, hash,
  draft-decode, preprocess in the worker pool, embed, write SQL and FAISS;
* ``pixseek-ocr``: the same with ``index --ocr`` (RapidOCR in the same decoding pool, words into
  the keyword index). ``--corpus text`` runs on generated images with rendered text (signs,
  receipts, screenshots, labels: pixseek.testing.text_images) instead of the camera photos, which
  hold no text and so measure what OCR costs a photo library (the detector alone).

Model loading is excluded everywhere, so the numbers describe steady-state indexing, not start-up.
The checkpoint has random weights but the real ViT-B/32 shape, so it costs what the pretrained one
costs. Setup (checkpoint, photos) is cached under ``bench/.work/`` (git-ignored).

Run: ``python bench/bench_indexing.py`` (``--help`` for options). Progress goes to stderr; stdout
holds markdown tables and, on its last line, one JSON object with every measurement.
"""

# The hub must be switched off before transformers is imported: everything here is local, and a
# benchmark must never stall on (or be timed with) a network lookup.
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import argparse
import contextlib
import datetime
import functools
import io
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import skimage
import torch
import transformers
from PIL import Image

from common import DEFAULT_WORK_DIR, PIXSEEK_CACHE, ensure_checkpoint, log, machine_info
from pixseek.config import Settings
from pixseek.embedding.encoder import DualEncoder
from pixseek.embedding.runtime import resolve_precision
from pixseek.indexer.walker import walk_images
from pixseek.library import Library, OcrChoice
from pixseek.media.decode import decode_image
from pixseek.media.hashing import content_hash

# Colour photographs among scikit-image's samples; greyscale and synthetic ones would compress
# unlike camera output.
SOURCE_PHOTOS = (
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "hubble_deep_field.jpg",
    "ihc.png",
    "motorcycle_left.png",
    "motorcycle_right.png",
    "retina.jpg",
    "rocket.jpg",
)
# Bump when the generator changes, so cached folders built by an older one are regenerated.
GENERATOR_VERSION = 1
# Upscaled samples are smooth and would shrink to ~0.5 MB; sensor-like noise of this strength
# brings a 12 MP quality-90 file to the 3-5 MB of a real camera JPEG, and with it the entropy
# decoding cost, which dominates JPEG decode time.
NOISE_SIGMA = 8.0
WARMUP_IMAGES = 4


# ---- setup ---------------------------------------------------------------------------------------


def _load_sources() -> list[Image.Image]:
    folder = Path(skimage.__file__).parent / "data"
    return [Image.open(folder / name).convert("RGB") for name in SOURCE_PHOTOS]


def _exif(index: int) -> Image.Exif:
    """Camera-like EXIF (make, model, capture time), so the decoder's metadata path does real work."""
    exif = Image.Exif()
    exif[0x010F] = "BenchCam"  # Make
    exif[0x0110] = "BenchCam X100"  # Model
    exif[0x0132] = f"2024:06:{1 + index % 28:02d} 12:{index % 60:02d}:00"  # DateTime
    return exif


def _make_photo(
    index: int, sources: Sequence[Image.Image], noise: np.ndarray, size: tuple[int, int], quality: int
) -> bytes:
    """One unique photo: a random 4:3 crop of a sample, upscaled, with a random window of the noise.

    Every file differs in content (crop, flip, noise offset), so pixseek's content-hash dedup never
    turns an embedding into a cheap copy.
    """
    rng = np.random.default_rng(index)
    width, height = size
    source = sources[index % len(sources)]
    sw, sh = source.size
    crop_w = min(sw, sh * width // height)
    crop_h = crop_w * height // width
    scale = rng.uniform(0.75, 1.0)
    cw, ch = max(1, int(crop_w * scale)), max(1, int(crop_h * scale))
    left, top = int(rng.integers(0, sw - cw + 1)), int(rng.integers(0, sh - ch + 1))
    image = source.crop((left, top, left + cw, top + ch)).resize(size, Image.Resampling.BICUBIC)
    if rng.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    pixels = np.asarray(image, dtype=np.int16)
    dy = int(rng.integers(0, noise.shape[0] - height + 1))
    dx = int(rng.integers(0, noise.shape[1] - width + 1))
    pixels = np.clip(pixels + noise[dy : dy + height, dx : dx + width], 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=quality, exif=_exif(index))
    return buffer.getvalue()


def ensure_photos(work_dir: Path, count: int, size: tuple[int, int], quality: int) -> Path:
    """Generate (once) ``count`` JPEGs in a folder of their own; a manifest written last marks it done.

    One folder per parameter set, because pixseek indexes whole folders: extra files from another
    run would silently change N.
    """
    width, height = size
    folder = work_dir / f"photos-{width}x{height}-q{quality}-n{count}"
    manifest = {
        "version": GENERATOR_VERSION,
        "count": count,
        "size": [width, height],
        "quality": quality,
        "noise_sigma": NOISE_SIGMA,
    }
    manifest_path = folder / "manifest.json"
    if manifest_path.exists() and json.loads(manifest_path.read_text()) == manifest:
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    log(f"generating {count} JPEGs of {width}x{height} (quality {quality}) in {folder}")
    started = time.perf_counter()
    sources = _load_sources()
    # One noise field, read at a random offset per image: generating 36M normals per photo would
    # dominate the setup time.
    margin = 64
    rng = np.random.default_rng(12345)
    noise = np.rint(rng.standard_normal((height + margin, width + margin, 3), dtype=np.float32) * NOISE_SIGMA)
    noise = noise.astype(np.int16)

    def write(index: int) -> int:
        data = _make_photo(index, sources, noise, size, quality)
        (folder / f"photo_{index:04d}.jpg").write_bytes(data)
        return len(data)

    # Pillow and numpy release the GIL for the heavy parts, so threads use every core.
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        sizes = list(pool.map(write, range(count)))
    manifest_path.write_text(json.dumps(manifest))
    log(
        f"generated in {time.perf_counter() - started:.1f}s, mean {statistics.mean(sizes) / 1e6:.2f} MB "
        f"(min {min(sizes) / 1e6:.2f}, max {max(sizes) / 1e6:.2f})"
    )
    return folder


def ensure_text_images(work_dir: Path, count: int) -> Path:
    """Generate (once) ``count`` images with rendered text, without the sample photos."""
    from pixseek.testing.text_images import write_corpus

    folder = work_dir / f"text-images-n{count}"
    if not (folder / "truth.json").exists():
        shutil.rmtree(folder, ignore_errors=True)
        log(f"generating {count} text images in {folder}")
        write_corpus(folder, count, seed=7, photos=False)
    return folder


def photo_paths(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix in (".jpg", ".png"))


def warm_page_cache(paths: Sequence[Path]) -> None:
    """Read every file once, so whichever path is timed first does not pay for cold disk reads."""
    for path in paths:
        path.read_bytes()


# ---- the measured paths --------------------------------------------------------------------------


def autocast_for(precision: str) -> contextlib.AbstractContextManager[Any]:
    """The same CPU autocast pixseek uses, so the naive loop differs only in its data path."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    return torch.autocast("cpu", dtype=dtype)


def run_naive(model: Any, processor: Any, paths: Sequence[Path], batch_size: int, precision: str) -> None:
    """The documented transformers loop: full decode, processor per batch, image features."""
    for start in range(0, len(paths), batch_size):
        images = [Image.open(path).convert("RGB") for path in paths[start : start + batch_size]]
        inputs = processor(images=images, return_tensors="pt")
        with torch.no_grad(), autocast_for(precision):
            output = model.get_image_features(pixel_values=inputs["pixel_values"])
        features = getattr(output, "pooler_output", output).float()
        features = features / features.norm(dim=-1, keepdim=True)


def run_model(encoder: DualEncoder, pixels: np.ndarray, batch_size: int) -> None:
    for start in range(0, len(pixels), batch_size):
        encoder.embed_pixels(pixels[start : start + batch_size])


def make_settings(
    data_dir: Path, checkpoint: Path, precision: str, batch_size: int, workers: int | None
) -> Settings:
    """Settings as a user would pass them; ``workers=None`` keeps pixseek's own default."""
    extra = {} if workers is None else {"decode_workers": workers}
    return Settings(
        data_dir=data_dir,
        cache_dir=data_dir.parent.parent / PIXSEEK_CACHE,  # WORK_DIR/runs/data-X -> WORK_DIR/pixseek-cache
        model=str(checkpoint),
        precision=precision,
        device="cpu",
        batch_size=batch_size,
        **extra,
    )


@contextlib.contextmanager
def fresh_library(
    work_dir: Path, checkpoint: Path, precision: str, batch_size: int, workers: int | None
) -> Iterator[Library]:
    """A library in a new data directory, deleted afterwards: every run embeds every file."""
    runs = work_dir / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    data_dir = Path(tempfile.mkdtemp(prefix="data-", dir=runs))
    library = Library(make_settings(data_dir, checkpoint, precision, batch_size, workers))
    try:
        yield library
    finally:
        library.close()
        shutil.rmtree(data_dir, ignore_errors=True)


def run_pixseek(
    library: Library, encoder: DualEncoder, roots: Sequence[Path], expected: int, ocr: bool = False
) -> tuple[float, int]:
    """Time ``Indexer.run`` only: the SQL schema, collection, FAISS set-up and (with ``ocr``) the
    OCR engine's loading happen before it."""
    indexer = library.indexer(encoder, ocr=OcrChoice(True) if ocr else None)
    started = time.perf_counter()
    report = indexer.run(list(roots))
    elapsed = time.perf_counter() - started
    if report.embedded != expected or report.failed:
        raise RuntimeError(f"pixseek embedded {report.embedded}/{expected}, failures: {report.failed[:3]}")
    if ocr and report.text_read != expected:
        raise RuntimeError(f"OCR read {report.text_read}/{expected}: {report.text_unread[:3]}")
    return elapsed, indexer.workers


# ---- bookkeeping ---------------------------------------------------------------------------------


@dataclass
class Measurement:
    precision: str
    path: str
    workers: int | None = None
    seconds: list[float] = field(default_factory=list)
    images: int = 0

    @property
    def rates(self) -> list[float]:
        return [self.images / seconds for seconds in self.seconds]

    @property
    def median(self) -> float:
        return statistics.median(self.rates)

    @property
    def label(self) -> str:
        return self.path if self.workers is None else f"{self.path} (workers={self.workers})"


def ratio_rows(results: list[Measurement]) -> list[dict[str, Any]]:
    """pixseek against the naive loop and the model ceiling of the same precision, and the headline:
    pixseek in low precision against the naive loop in fp32 (what a user gets by switching)."""
    by_key = {(m.precision, m.path): m for m in results if m.path != "pixseek"}
    rows = []
    for m in results:
        if m.path == "pixseek-ocr":
            plain = next((p for p in results if p.path == "pixseek" and p.precision == m.precision), None)
            if plain is not None:
                label = f"{plain.label} {m.precision}"
                rows.append(
                    {
                        "numerator": f"{m.label} {m.precision}",
                        "denominator": label,
                        "ratio": m.median / plain.median,
                    }
                )
        if m.path != "pixseek":
            continue
        # dict.fromkeys drops the third pair where it repeats the first (pixseek fp32 / naive fp32).
        pairs = dict.fromkeys([("naive", m.precision), ("model", m.precision), ("naive", "fp32")])
        for other_path, other_precision in pairs:
            other = by_key.get((other_precision, other_path))
            if other is not None:
                rows.append(
                    {
                        "numerator": f"{m.label} {m.precision}",
                        "denominator": f"{other_path} {other_precision}",
                        "ratio": m.median / other.median,
                    }
                )
    return rows


# ---- per-stage profile ---------------------------------------------------------------------------


def _mean_ms(func: Callable[[Any], Any], items: Sequence[Any]) -> tuple[float, list[Any]]:
    """Mean milliseconds per item of ``func`` over ``items``, one at a time, after one warm-up call."""
    func(items[0])
    outputs = []
    started = time.perf_counter()
    for item in items:
        outputs.append(func(item))
    return (time.perf_counter() - started) * 1000 / len(items), outputs


def profile_stages(
    paths: Sequence[Path],
    folder: Path,
    encoders: dict[str, DualEncoder],
    processor: Any,
    work_dir: Path,
    checkpoint: Path,
    batch_size: int,
) -> list[dict[str, Any]]:
    """Per-image cost of each stage on one thread, to see which stage bounds the pipeline.

    The decode stages run alone on the main thread (torch idle), the model at torch's default
    thread count and at one thread, so the CPU-time budget of a run can be added up.
    """
    rows: list[dict[str, Any]] = []
    encoder = next(iter(encoders.values()))

    def add(stage: str, ms: float, note: str = "") -> None:
        rows.append({"stage": stage, "ms_per_image": ms, "note": note})
        log(f"profile: {stage}: {ms:.2f} ms/image")

    read_ms, blobs = _mean_ms(lambda path: path.read_bytes(), paths)
    add("read file (page cache)", read_ms)
    hash_ms, _ = _mean_ms(content_hash, blobs)
    add("sha256 content hash", hash_ms)
    decode_ms, decoded = _mean_ms(lambda data: decode_image(data, min_side=encoder.image_min_side), blobs)
    draft = decoded[0].image.size
    add("decode_image, JPEG draft", decode_ms, f"to {draft[0]}x{draft[1]}")

    def pillow_draft(data: bytes) -> Image.Image:
        image = Image.open(io.BytesIO(data))
        image.draft("RGB", (encoder.image_min_side, encoder.image_min_side))
        image.load()
        return image

    pillow_ms, _ = _mean_ms(pillow_draft, blobs)
    add("Pillow open+draft+load only", pillow_ms, "decode_image without its checks and EXIF")
    preprocess_ms, pixels = _mean_ms(lambda d: encoder.preprocess_image(d.image), decoded)
    add("preprocess_image (drafted image)", preprocess_ms)

    with fresh_library(work_dir, checkpoint, encoder.precision, batch_size, 1) as library:
        indexer = library.indexer(encoder)
        entries = list(walk_images([folder]))
        lookup_ms, _ = _mean_ms(
            lambda digest: library.store.indexed_by_hash(indexer.collection.id, [digest]),
            [content_hash(blob) for blob in blobs],
        )
        add("SQL lookup by hash", lookup_ms)
        prepare_ms, _ = _mean_ms(indexer._prepare, entries)
        add("Indexer._prepare (all of the above)", prepare_ms, "one worker's cost per image")

    full_ms, full_images = _mean_ms(lambda path: Image.open(path).convert("RGB"), paths[:8])
    add("naive: full decode open().convert()", full_ms, "first 8 images")
    naive_pre_ms, _ = _mean_ms(lambda image: processor(images=[image], return_tensors="pt"), full_images)
    add("naive: CLIPProcessor on full-size image", naive_pre_ms, "first 8 images")
    del full_images

    stacked = np.stack(pixels)
    threads = torch.get_num_threads()
    for precision, enc in encoders.items():
        if "OpenVINO" in enc.runtime:  # its own thread pool: every core, torch's count does not apply
            run_model(enc, stacked[:batch_size], batch_size)
            started = time.perf_counter()
            run_model(enc, stacked, batch_size)
            ms = (time.perf_counter() - started) * 1000 / len(stacked)
            add(f"model {precision} ({enc.runtime})", ms, f"batches of {batch_size}, all cores")
            continue
        for count in sorted({threads, 1}, reverse=True):
            torch.set_num_threads(count)
            try:
                run_model(enc, stacked[:batch_size], batch_size)  # warm-up at this thread count
                started = time.perf_counter()
                run_model(enc, stacked, batch_size)
                ms = (time.perf_counter() - started) * 1000 / len(stacked)
            finally:
                torch.set_num_threads(threads)
            add(f"model {precision}, {count} torch thread(s)", ms, f"batches of {batch_size}")
    return rows


# ---- main ----------------------------------------------------------------------------------------


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _workers(text: str) -> list[int | None]:
    """``default`` (pixseek's own choice) or a comma list of counts to compare in one run."""
    if text == "default":
        return [None]
    counts = [int(part) for part in _csv(text)]
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError("worker counts must be >= 1")
    return list(counts)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Indexing throughput (images/s) of CLIP ViT-B/32 on large JPEGs: "
        "naive transformers loop vs model alone vs pixseek end to end.",
    )
    parser.add_argument("--images", type=int, default=64, help="number of photos (default 64)")
    parser.add_argument(
        "--precisions", type=_csv, default=["fp32", "bf16"], help="comma list of fp32,bf16,auto"
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per path; the median counts")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--decode-workers",
        type=_workers,
        default=[None],
        help="pixseek decode workers: 'default' (Settings' default) or a comma list, e.g. 1,2",
    )
    parser.add_argument(
        "--paths",
        type=_csv,
        default=["naive", "model", "pixseek"],
        help="which paths to time: naive, model, pixseek, pixseek-ocr (index --ocr)",
    )
    parser.add_argument(
        "--corpus",
        choices=["photos", "text"],
        default="photos",
        help="camera-sized photos (default) or generated images with rendered text (for --paths pixseek-ocr)",
    )
    parser.add_argument("--size", default="4000x3000", help="photo size WxH (default 4000x3000)")
    parser.add_argument("--quality", type=int, default=90, help="JPEG quality (default 90)")
    parser.add_argument(
        "--profile", action="store_true", help="also time each pixseek stage per image, single-threaded"
    )
    parser.add_argument("--work-dir", type=Path, default=DEFAULT_WORK_DIR, help="cache for model and photos")
    parser.add_argument("--quick", action="store_true", help="16 photos, 2 repeats (options given still win)")
    if "--quick" in (sys.argv[1:] if argv is None else argv):
        parser.set_defaults(images=16, repeats=2)
    args = parser.parse_args(argv)
    unknown = set(args.paths) - {"naive", "model", "pixseek", "pixseek-ocr"}
    if unknown:
        parser.error(f"unknown paths: {', '.join(sorted(unknown))}")
    if args.images < 1 or args.repeats < 1 or args.batch_size < 1:
        parser.error("--images, --repeats and --batch-size must be >= 1")
    width, _, height = args.size.partition("x")
    args.size = (int(width), int(height))
    return args


@dataclass(frozen=True)
class Bench:
    """The fixed inputs every measured path shares."""

    work_dir: Path
    checkpoint: Path
    folder: Path
    paths: list[Path]
    batch_size: int
    processor: Any


def _timed(func: Callable[..., Any], *args: Any) -> float:
    started = time.perf_counter()
    func(*args)
    return time.perf_counter() - started


def _pixseek_once(
    bench: Bench, encoder: DualEncoder, precision: str, workers: int | None, ocr: bool = False
) -> float:
    with fresh_library(bench.work_dir, bench.checkpoint, precision, bench.batch_size, workers) as library:
        return run_pixseek(library, encoder, [bench.folder], len(bench.paths), ocr)[0]


def measure_precision(
    bench: Bench, precision: str, path_names: Sequence[str], worker_counts: Sequence[int | None], repeats: int
) -> tuple[list[Measurement], DualEncoder]:
    """Warm up, then time every requested path ``repeats`` times at one precision.

    Repeats are interleaved across paths (naive, model, pixseek, naive, ...) so slow drift
    (thermal state, noisy neighbours on a VM) hits every path alike instead of one of them.
    """
    effective = resolve_precision(precision, torch.device("cpu"))
    n = len(bench.paths)
    warm = bench.paths[: min(WARMUP_IMAGES, n)]
    # One encoder, loaded the way `pixseek index` loads it; the model-alone path shares it.
    with fresh_library(bench.work_dir, bench.checkpoint, precision, bench.batch_size, None) as library:
        encoder = library.load_encoder()
    timers: list[tuple[Measurement, Callable[[], float]]] = []
    if "naive" in path_names:
        model = transformers.CLIPModel.from_pretrained(str(bench.checkpoint)).eval()
        log(f"{precision}: warming up naive")
        run_naive(model, bench.processor, warm, bench.batch_size, effective)
        timer = functools.partial(
            _timed, run_naive, model, bench.processor, bench.paths, bench.batch_size, effective
        )
        timers.append((Measurement(precision, "naive", images=n), timer))
    if "model" in path_names:
        pixels = np.stack(
            [
                encoder.preprocess_image(decode_image(p.read_bytes(), min_side=encoder.image_min_side).image)
                for p in bench.paths
            ]
        )
        log(f"{precision}: warming up model")
        run_model(encoder, pixels[: len(warm)], bench.batch_size)
        timer = functools.partial(_timed, run_model, encoder, pixels, bench.batch_size)
        timers.append((Measurement(precision, "model", images=n), timer))
    if "pixseek" in path_names:
        for workers in worker_counts:
            log(f"{precision}: warming up pixseek (workers={workers or 'default'})")
            with fresh_library(bench.work_dir, bench.checkpoint, precision, bench.batch_size, workers) as lib:
                _, actual_workers = run_pixseek(lib, encoder, warm, len(warm))
            timer = functools.partial(_pixseek_once, bench, encoder, precision, workers)
            timers.append((Measurement(precision, "pixseek", workers=actual_workers, images=n), timer))
    if "pixseek-ocr" in path_names:
        log(f"{precision}: warming up pixseek with OCR")
        with fresh_library(bench.work_dir, bench.checkpoint, precision, bench.batch_size, None) as lib:
            _, actual_workers = run_pixseek(lib, encoder, warm, len(warm), ocr=True)
        timer = functools.partial(_pixseek_once, bench, encoder, precision, None, True)
        timers.append((Measurement(precision, "pixseek-ocr", workers=actual_workers, images=n), timer))

    for repeat in range(repeats):
        for measurement, timer in timers:
            seconds = timer()
            measurement.seconds.append(seconds)
            log(
                f"{precision} {measurement.label} run {repeat + 1}/{repeats}: "
                f"{n / seconds:.2f} images/s ({seconds:.2f}s)"
            )
    return [measurement for measurement, _ in timers], encoder


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    work_dir: Path = args.work_dir.resolve()
    checkpoint = ensure_checkpoint(work_dir)
    if args.corpus == "text":
        folder = ensure_text_images(work_dir, args.images)
    else:
        folder = ensure_photos(work_dir, args.images, args.size, args.quality)
    paths = photo_paths(folder)
    warm_page_cache(paths)
    processor = transformers.CLIPProcessor.from_pretrained(str(checkpoint))
    bench = Bench(work_dir, checkpoint, folder, paths, args.batch_size, processor)
    machine = machine_info()
    config = {
        "corpus": args.corpus,
        "images": len(paths),
        "size": list(args.size),
        "jpeg_quality": args.quality,
        "mean_file_mb": sum(path.stat().st_size for path in paths) / 1e6 / len(paths),
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "precisions": {p: resolve_precision(p, torch.device("cpu")) for p in args.precisions},
        "decode_workers": [w if w is not None else "default" for w in args.decode_workers],
        "model": "CLIP ViT-B/32 architecture, random weights (same compute as openai/clip-vit-base-patch32)",
        "excluded_from_timing": "model load; pixseek: Library/SQL/FAISS set-up before Indexer.run",
    }
    log(f"machine: {machine}")
    log(f"config: {config}")

    results: list[Measurement] = []
    encoders: dict[str, DualEncoder] = {}
    for precision in args.precisions:
        measured, encoder = measure_precision(bench, precision, args.paths, args.decode_workers, args.repeats)
        results.extend(measured)
        encoders[encoder.precision] = encoder

    profile = None
    if args.profile:
        log("profiling stages")
        profile = profile_stages(paths, folder, encoders, processor, work_dir, checkpoint, args.batch_size)

    print_report(machine, config, results, profile)


def print_report(
    machine: dict[str, Any],
    config: dict[str, Any],
    results: list[Measurement],
    profile: list[dict[str, Any]] | None,
) -> None:
    """Markdown for people, then one JSON line (the last line of stdout) for scripts."""
    ratios = ratio_rows(results)
    print(f"## Indexing benchmark ({datetime.date.today().isoformat()})\n")
    print(
        f"Machine: {machine['cpu']} (family/model {machine['cpu_family_model']}), {machine['cores']} cores, "
        f"native bf16: {machine['native_bf16']}; torch {machine['torch']} ({machine['torch_threads']} "
        f"threads), transformers {machine['transformers']}, Pillow {machine['pillow']}\n"
    )
    data = (
        f"{config['images']} generated text images (pixseek.testing.text_images)"
        if config["corpus"] == "text"
        else f"{config['images']} JPEGs {config['size'][0]}x{config['size'][1]} q{config['jpeg_quality']}"
    )
    print(
        f"Data: {data}, "
        f"mean {config['mean_file_mb']:.2f} MB; batch {config['batch_size']}; median of "
        f"{config['repeats']} runs; model load excluded.\n"
    )
    print("| precision | path | median images/s | min-max images/s | ms/image |")
    print("|---|---|---:|---:|---:|")
    for m in results:
        rates = m.rates
        print(
            f"| {m.precision} | {m.label} | {m.median:.2f} | {min(rates):.2f}-{max(rates):.2f} "
            f"| {1000 / m.median:.1f} |"
        )
    if ratios:
        print("\n| ratio | value |\n|---|---:|")
        for row in ratios:
            print(f"| {row['numerator']} / {row['denominator']} | {row['ratio']:.2f}x |")
    if profile:
        print("\n| stage (per image, single-threaded unless noted) | ms/image | note |\n|---|---:|---|")
        for row in profile:
            print(f"| {row['stage']} | {row['ms_per_image']:.2f} | {row['note']} |")
    payload = {
        "benchmark": "indexing",
        "date": datetime.date.today().isoformat(),
        "machine": machine,
        "config": config,
        "results": [
            {**asdict(m), "label": m.label, "images_per_s": m.rates, "median_images_per_s": m.median}
            for m in results
        ],
        "ratios": ratios,
        "profile": profile,
    }
    print()
    print(json.dumps(payload))


if __name__ == "__main__":
    main()
