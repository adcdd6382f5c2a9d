"""Load check of the REST API: N concurrent clients on loopback for a bounded time.

The server (``pixseek serve``, one process) runs the full-size CLIP ViT-B/32 architecture with
random weights (same cost as the pretrained checkpoint) over a generated library. Clients post
``/search`` text queries as fast as they can; the report gives throughput, p50/p95/p99 latency and
the error count (must be 0), next to the baseline measured in the same run: one text embedding
plus one FAISS search in-process, i.e. what a request costs without HTTP, JSON and metadata.

Run: ``python bench/bench_api_load.py --clients 8 --seconds 20`` (``--help`` for options).
``--rounds N`` repeats the load N times against the same server and reports its resident memory
(VmRSS) before and after each round: growth that stops is warm-up (allocator arenas, caches),
growth that goes on with every round is a leak.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse
import json
import random
import statistics
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import skimage
from PIL import Image

from common import DEFAULT_WORK_DIR, ensure_checkpoint, log, machine_info, start_server, stop_server
from pixseek.config import Settings
from pixseek.library import Library

QUERIES = [
    "a cat",
    "a red car",
    "people on a beach",
    "a rocket launch",
    "coffee cup",
    "a street at night",
    "an astronaut",
    "a horse in a field",
    "mountains",
    "a page of text",
]


def ensure_library(work_dir: Path, count: int) -> Path:
    """Distinct 320x240 crops of scikit-image's photos: small files, so indexing them is quick."""
    folder = work_dir / f"load-photos-{count}"
    if folder.is_dir() and len(list(folder.iterdir())) == count:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    data = Path(skimage.__file__).parent / "data"
    sources = [
        Image.open(data / n).convert("RGB")
        for n in ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg")
    ]
    rng = random.Random(0)
    for i in range(count):
        source = sources[i % len(sources)]
        x, y = rng.randrange(source.width // 2), rng.randrange(source.height // 2)
        crop = source.crop((x, y, x + source.width // 2, y + source.height // 2)).resize((320, 240))
        crop.save(folder / f"img_{i:05d}.jpg", quality=85)
    return folder


def rss_mb(pid: int) -> float:
    """Resident memory of process ``pid`` in MB, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def baseline_ms(settings: Settings, repeats: int = 30) -> tuple[float, float]:
    """Median ms of one text embedding and of one FAISS top-24 search, in-process."""
    library = Library(settings)
    searcher = library.searcher()
    encoder = library.encoder_for(searcher.collection)
    encode, search = [], []
    for i in range(repeats):
        started = time.perf_counter()
        vector = encoder.embed_texts([QUERIES[i % len(QUERIES)]])[0]
        encode.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        searcher.vectors.search(vector[None, :], 24)
        search.append((time.perf_counter() - started) * 1000)
    library.close()
    return statistics.median(encode[3:]), statistics.median(search[3:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--work-dir", type=Path, default=DEFAULT_WORK_DIR)
    parser.add_argument("--rounds", type=int, default=1, help="load rounds; server RSS after each")
    parser.add_argument("--quick", action="store_true", help="5 s instead of 20 (options given still win)")
    if "--quick" in sys.argv[1:]:
        parser.set_defaults(seconds=5.0)
    args = parser.parse_args()

    checkpoint = ensure_checkpoint(args.work_dir)
    photos = ensure_library(args.work_dir, args.images)
    data_dir = args.work_dir / f"load-data-{args.images}"
    settings = Settings(data_dir=data_dir, model=str(checkpoint), device="cpu")
    library = Library(settings)
    log(f"indexing {args.images} photos (skipped when already indexed)")
    library.indexer(library.load_encoder()).run([photos])
    library.close()
    encode_ms, faiss_ms = baseline_ms(settings)

    server, base = start_server(data_dir, photos, checkpoint)
    try:
        latencies: list[float] = []
        errors: list[str] = []
        lock = threading.Lock()
        rss = [rss_mb(server.pid)]
        stop_at = 0.0

        def client(seed: int) -> None:
            rng = random.Random(seed)
            with httpx.Client(base_url=base, timeout=30) as http:
                while time.monotonic() < stop_at:
                    started = time.perf_counter()
                    try:
                        response = http.post("/search", json={"query": rng.choice(QUERIES), "k": 24})
                        ok = response.status_code == 200
                        problem = "" if ok else f"{response.status_code} {response.text[:100]}"
                    except httpx.HTTPError as error:
                        ok, problem = False, repr(error)
                    elapsed = (time.perf_counter() - started) * 1000
                    with lock:
                        (latencies.append(elapsed) if ok else errors.append(problem))

        for round_number in range(args.rounds):
            log(f"round {round_number + 1}/{args.rounds}: {args.clients} clients for {args.seconds:.0f} s")
            stop_at = time.monotonic() + args.seconds
            threads = [
                threading.Thread(target=client, args=(round_number * 100 + i,)) for i in range(args.clients)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            rss.append(rss_mb(server.pid))
            log(f"server RSS {rss[-1]:.0f} MB")
    finally:
        stop_server(server)

    report = {
        "benchmark": "api_load",
        "machine": machine_info(),
        "clients": args.clients,
        "seconds": args.seconds,
        "images": args.images,
        "requests": len(latencies),
        "errors": len(errors),
        "error_samples": errors[:5],
        "rounds": args.rounds,
        "server_rss_mb": [round(value, 1) for value in rss],  # at start, then after each round
        "requests_per_s": len(latencies) / (args.seconds * args.rounds),
        "p50_ms": percentile(latencies, 50),
        "p95_ms": percentile(latencies, 95),
        "p99_ms": percentile(latencies, 99),
        "baseline_text_encoder_ms": encode_ms,
        "baseline_faiss_ms": faiss_ms,
    }
    unloaded = encode_ms + faiss_ms
    print("| clients | requests/s | p50 ms | p95 ms | p99 ms | errors | encoder + FAISS alone, ms |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    print(
        f"| {args.clients} | {report['requests_per_s']:.1f} | {report['p50_ms']:.0f} "
        f"| {report['p95_ms']:.0f} | {report['p99_ms']:.0f} | {len(errors)} | {unloaded:.1f} |"
    )
    if args.rounds > 1:
        print(f"\nserver RSS, MB (start, then after each round): {' -> '.join(f'{v:.0f}' for v in rss)}\n")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
