"""`pixseek serve --workers N`: text-query throughput with 1 and 2 worker processes, and how long a
change written by the writer takes to be seen by a reader.

The server runs the full-size CLIP ViT-B/32 architecture with random weights (the cost of the
pretrained checkpoint) over a generated library of ``--images`` photos, indexed once in-process
first. Throughput: ``--clients`` threads post ``/search`` text queries, each on a fresh connection
(so the kernel spreads them over the workers' shared socket), for ``--seconds``, ``--rounds``
times; the report gives the median queries/s of the rounds for each worker count and their ratio.
The two servers run side by side on the same data, and their rounds alternate (1, 2, then 2, 1...)
so that a load drifting on a shared machine weighs on both alike. Staleness (2 workers, the
1-worker server stopped): a new image is written into a folder of its own and indexed through the
API, ``--writes`` times; searches filtered to that folder (the filter is resolved in SQL, the
ranking in FAISS) are sent until a worker that is not the writer returns it; the delay is counted
from the job's ``finished_at`` (the writer's clock, same machine) to that answer's arrival.

Run: ``python bench/bench_serve_workers.py`` (``--quick`` for a short run; ``--help``).
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse
import json
import random
import shutil
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import httpx
import numpy as np
from bench_api_load import QUERIES, ensure_library
from PIL import Image

from common import DEFAULT_WORK_DIR, ensure_checkpoint, log, machine_info, start_server, stop_server, uptime
from pixseek.config import Settings
from pixseek.library import Library


def throughput(base: str, clients: int, seconds: float) -> tuple[float, int, dict[str, int]]:
    """(queries/s, errors, answers per worker) of ``clients`` threads for ``seconds``."""
    done: list[str] = []
    errors: list[str] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def client(seed: int) -> None:
        rng = random.Random(seed)
        while time.monotonic() < stop_at:
            try:
                response = httpx.post(
                    f"{base}/search", json={"query": rng.choice(QUERIES), "k": 24}, timeout=60
                )
                ok = response.status_code == 200
                worker = response.headers.get("x-pixseek-worker", "single")
            except httpx.HTTPError as error:
                ok, worker = False, repr(error)
            with lock:
                (done.append(worker) if ok else errors.append(worker))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    per_worker = {worker: done.count(worker) for worker in sorted(set(done))}
    return len(done) / seconds, len(errors), per_worker


def found_by_reader(base: str, query: dict, name: str, pool: ThreadPoolExecutor) -> bool:
    """Whether a burst of concurrent searches (fresh connections: both workers accept some) got an
    answer from a reader that has ``name``."""

    def ask(_: int) -> httpx.Response:
        return httpx.post(f"{base}/search", json=query, timeout=60)

    return any(
        response.headers.get("x-pixseek-role") == "reader"
        and any(hit["image"]["path"].endswith(name) for hit in response.json()["results"])
        for response in pool.map(ask, range(4))
    )


def staleness(base: str, photos: Path, writes: int) -> list[float]:
    """Seconds from each write's job finishing to the first reader answer that has the image."""
    folder = photos / "written"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    root = photos.name
    delays = []
    pool = ThreadPoolExecutor(4)
    for i in range(writes):
        name = f"new_{i:03d}_{int(time.time() * 1000)}.png"
        pixels = np.random.default_rng(i).integers(0, 255, (240, 320, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / name)
        job = httpx.post(f"{base}/index", json={"path": f"{root}/written/{name}"}, timeout=60).json()
        while job["state"] not in ("done", "failed"):
            time.sleep(0.02)
            job = httpx.get(f"{base}/jobs/{job['id']}", timeout=60).json()
        assert job["state"] == "done", job
        finished = datetime.fromisoformat(job["finished_at"].replace("Z", "+00:00")).timestamp()
        query = {"query": "x", "k": 50, "mode": "semantic", "filters": {"folders": [f"{root}/written"]}}
        deadline = time.monotonic() + 30
        while not found_by_reader(base, query, name, pool):
            if time.monotonic() > deadline:
                raise SystemExit(f"no reader found {name} within 30 s")
        delays.append(time.time() - finished)
    shutil.rmtree(folder, ignore_errors=True)
    return delays


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--writes", type=int, default=10)
    parser.add_argument("--work-dir", type=Path, default=DEFAULT_WORK_DIR)
    parser.add_argument("--quick", action="store_true", help="5 s rounds, 3 writes (options given still win)")
    if "--quick" in sys.argv[1:]:
        parser.set_defaults(seconds=5.0, writes=3)
    args = parser.parse_args()

    checkpoint = ensure_checkpoint(args.work_dir)
    photos = ensure_library(args.work_dir, args.images)
    shutil.rmtree(photos / "written", ignore_errors=True)
    data_dir = args.work_dir / f"serve-workers-data-{args.images}"
    library = Library(Settings(data_dir=data_dir, model=str(checkpoint), device="cpu"))
    log(f"indexing {args.images} photos (skipped when already indexed)")
    library.indexer(library.load_encoder()).run([photos])
    library.close()

    report: dict = {"benchmark": "serve_workers", "machine": machine_info(), "clients": args.clients}
    # Both servers run side by side (an idle one costs a poll of SQL 4 times a second) and their
    # rounds alternate, so that a load that drifts on a shared machine weighs on both alike.
    servers = {}
    try:
        for workers in (1, 2):
            log(f"starting pixseek serve --workers {workers}")
            servers[workers] = start_server(data_dir, photos, checkpoint, workers)
            throughput(servers[workers][1], args.clients, 3.0)  # warm-up: first forwards, page cache
        rounds: dict[int, list[dict]] = {1: [], 2: []}
        for number in range(args.rounds):
            for workers in (1, 2) if number % 2 == 0 else (2, 1):
                load = uptime()
                rate, errors, per_worker = throughput(servers[workers][1], args.clients, args.seconds)
                log(
                    f"{workers} workers, round {number + 1}: {rate:.1f} queries/s, {errors} errors, "
                    f"answers per worker {per_worker}"
                )
                rounds[workers].append(
                    {"queries_per_s": rate, "errors": errors, "per_worker": per_worker, "load": load}
                )
        for workers in (1, 2):
            report[f"workers_{workers}"] = {
                "rounds": rounds[workers],
                "median_queries_per_s": statistics.median(r["queries_per_s"] for r in rounds[workers]),
            }
        stop_server(servers.pop(1)[0])  # only the 2-process server writes from here on
        log(f"staleness: {args.writes} writes")
        delays = staleness(servers[2][1], photos, args.writes)
        report["staleness_s"] = {
            "writes": len(delays),
            "median": statistics.median(delays),
            "max": max(delays),
            "all": [round(d, 3) for d in delays],
            "load": uptime(),
        }
    finally:
        for server, _ in servers.values():
            stop_server(server)
    one, two = report["workers_1"]["median_queries_per_s"], report["workers_2"]["median_queries_per_s"]
    report["ratio"] = two / one
    print(f"cpu: {report['machine']}")
    print("| workers | queries/s (median of rounds) | rounds | load during rounds |")
    print("|---:|---:|---|---|")
    for workers in (1, 2):
        entry = report[f"workers_{workers}"]
        rates = ", ".join(f"{r['queries_per_s']:.1f}" for r in entry["rounds"])
        loads = "; ".join(r["load"].split("load average:")[-1].strip() for r in entry["rounds"])
        print(f"| {workers} | {entry['median_queries_per_s']:.1f} | {rates} | {loads} |")
    stale = report["staleness_s"]
    print(f"\nratio 2/1: {report['ratio']:.2f}")
    print(
        f"staleness over {stale['writes']} writes: median {stale['median']:.3f} s, max {stale['max']:.3f} s"
    )
    print(json.dumps(report))


if __name__ == "__main__":
    main()
