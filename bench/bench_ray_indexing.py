"""What ``pixseek index --ray`` costs on one machine, against local indexing of the same images.

Both index the same folder of distinct 1024x768 JPEGs (scikit-image's colour samples, shifted and
tinted per copy so that no two files share a content hash) into fresh data directories with the
full-size CLIP ViT-B/32 architecture (random weights, real cost), fp32, batches of 32:

* ``local``: ``Library.indexer(encoder).run([folder])``, model loaded before timing;
* ``ray``: ``ray_indexer(library, encoder, actors=1)`` on a local ``ray.init(num_cpus=N)``, one
  actor holding all N CPUs, i.e. the same compute as local. Its run includes what only Ray pays:
  starting the actor process, importing torch there and loading the model (reported as the time to
  the first stored batch), then the per-batch round trips.

Each path indexes one batch of images and then the whole folder, each into a fresh data directory:
the slope between the two is the cost per batch, the rest the fixed cost of a run. Reported:
``ray.init`` time, wall times and images/s, cost per batch (ray minus local: Ray's per-batch
overhead), fixed cost per run, and a second run of each (nothing to embed). The machine's load is
printed (``uptime``).

Run: ``python bench/bench_ray_indexing.py`` (``--quick``: 64 images; ``--help``). Progress goes to
stderr; stdout holds a markdown table and, on its last line, one JSON object.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import argparse
import datetime
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import skimage
from PIL import Image

from common import DEFAULT_WORK_DIR, ensure_checkpoint, log, machine_info, uptime
from pixseek.config import Settings
from pixseek.library import Library

COLOUR_SAMPLES = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png")


def ensure_photos(work_dir: Path, count: int) -> Path:
    folder = work_dir / f"ray-photos-{count}"
    if folder.is_dir() and len(list(folder.glob("*.jpg"))) == count:
        return folder
    log(f"writing {count} distinct 1024x768 JPEGs to {folder}")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    data = Path(skimage.__file__).parent / "data"
    sources = [Image.open(data / name).convert("RGB").resize((1024, 768)) for name in COLOUR_SAMPLES]
    rng = np.random.default_rng(0)
    for i in range(count):
        pixels = np.asarray(sources[i % len(sources)], dtype=np.int16)
        pixels = np.roll(pixels, shift=int(rng.integers(0, 1024)), axis=1)
        pixels = np.clip(pixels + rng.integers(-40, 40, 3), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"photo_{i:04d}.jpg", quality=90)
    return folder


def timed_run(indexer: Any, folder: Path) -> dict[str, float]:
    started = time.perf_counter()
    report = indexer.run([folder])
    return {"total_s": time.perf_counter() - started, "embedded": report.embedded}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="64 images")
    parser.add_argument("--images", type=int, help="images to index [default: 160]")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 2, help="CPUs for the local Ray")
    parser.add_argument("--work-dir", type=Path, default=DEFAULT_WORK_DIR)
    args = parser.parse_args()
    count = args.images or (64 if args.quick else 160)
    load_before = uptime()
    checkpoint = ensure_checkpoint(args.work_dir)
    folder = ensure_photos(args.work_dir, count)
    scratch = Path(tempfile.mkdtemp(prefix="ray-index-", dir=args.work_dir))

    def settings(name: str) -> Settings:
        return Settings(
            data_dir=scratch / name,
            model=str(checkpoint),
            precision="fp32",
            device="cpu",
            batch_size=args.batch_size,
            decode_workers=args.cpus,
        )

    small = ensure_photos(args.work_dir, args.batch_size)  # one batch: the run's fixed costs
    runs: dict[str, dict[str, Any]] = {"local": {}, "ray": {}}
    try:
        encoder = Library(settings("probe")).load_encoder()
        side = encoder.image_min_side
        encoder.embed_pixels(np.zeros((args.batch_size, 3, side, side), np.float32))  # first-call set-up
        log(f"local indexing of {args.batch_size} and {count} images")
        for name, source in (("small", small), ("full", folder)):
            library = Library(settings(f"local-{name}"))
            runs["local"][name] = timed_run(library.indexer(encoder), source)
            runs["local"][f"{name}_again"] = timed_run(library.indexer(encoder), source)
            library.close()

        started = time.perf_counter()
        import ray

        from pixseek.distributed.ray_indexing import ray_indexer

        ray.init(num_cpus=args.cpus, include_dashboard=False, logging_level="WARNING")
        ray_init_s = time.perf_counter() - started
        log(f"ray.init {ray_init_s:.2f} s; Ray indexing of {args.batch_size} and {count} images")
        for name, source in (("small", small), ("full", folder)):
            library = Library(settings(f"ray-{name}"))
            runs["ray"][name] = timed_run(ray_indexer(library, encoder, actors=1), source)
            runs["ray"][f"{name}_again"] = timed_run(ray_indexer(library, encoder, actors=1), source)
            library.close()
        ray.shutdown()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    extra_batches = -(-count // args.batch_size) - 1
    for run in runs.values():
        # Two points, one batch and the whole folder: the slope is the cost per batch, the rest fixed.
        run["per_batch_s"] = (run["full"]["total_s"] - run["small"]["total_s"]) / extra_batches
        run["fixed_s"] = run["small"]["total_s"] - run["per_batch_s"]
    results = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_info(),
        "uptime_before": load_before,
        "uptime_after": uptime(),
        "images": count,
        "batch_size": args.batch_size,
        "ray_version": ray.__version__,
        "ray_init_s": ray_init_s,
        **runs,
    }
    overhead = runs["ray"]["per_batch_s"] - runs["local"]["per_batch_s"]
    results["ray_overhead_per_batch_s"] = overhead
    print(f"## Ray indexing vs local: {count} JPEGs 1024x768, CLIP ViT-B/32 (random weights), fp32\n")
    print(
        f"{results['date']}; {results['machine']['cpu']}, {results['machine']['cores']} cores; "
        f"Ray {ray.__version__}"
    )
    print(f"load before: `{load_before}`; after: `{results['uptime_after']}`\n")
    print(
        f"| path | {count} images s | images/s | {args.batch_size} images s | s per batch | fixed s | "
        "second run s |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, run in runs.items():
        full = run["full"]
        print(
            f"| {name} | {full['total_s']:.1f} | {full['embedded'] / full['total_s']:.2f} | "
            f"{run['small']['total_s']:.1f} | {run['per_batch_s']:.2f} | {run['fixed_s']:.1f} | "
            f"{run['full_again']['total_s']:.2f} |"
        )
    print(
        f"\nray.init {ray_init_s:.2f} s (not in the runs). Per batch of {args.batch_size}, Ray costs "
        f"{overhead:+.2f} s ({overhead / runs['local']['per_batch_s']:+.0%}) against local; its fixed "
        f"cost per run (actor start, torch import, model load) is {runs['ray']['fixed_s']:.1f} s.\n"
    )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
