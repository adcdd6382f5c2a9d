"""What composed queries, the adaptive cutoff and date order cost over a plain search.

Collections of synthetic clustered 512-d vectors (bench_query's generator and bulk loader: real
SQL rows with dates and paths, the FAISS index built by ``Library.rebuild_vectors``) are searched
by indexed images, so no model runs and the figures are the search service's own cost. Per size,
interleaved query by query over the same anchor images:

* baseline: ``Searcher.like(id, 10)``, today's "more like this";
* composed: three indexed terms (+1, +0.5, -0.5), top 10;
* cutoff: ``--cutoff auto`` at relevance, top 10;
* sorted: ``--sort taken``, every match above the cutoff ordered by date, first page of 24;
* browse: ``--sort taken --cutoff none``, every image (up to 100,000) by date, first page of 24.

The first cutoff query of a collection also draws the background sample (timed apart).

Run: ``python bench/bench_query_order.py [--sizes 100k,1M] [--queries 60]``.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from bench_query import bulk_load, parse_size, size_label

from common import DEFAULT_WORK_DIR, VECTOR_DIM, log, machine_info
from pixseek.config import Settings
from pixseek.library import Library
from pixseek.search.query import Query, QueryTerm
from pixseek.search.searcher import Searcher
from pixseek.service.searching import Listing, first_stage
from pixseek.vocabulary import Cutoff, SortOrder, TermKind

IDENTITY = {
    "model_id": "bench-vectors",
    "fingerprint": "bench-vectors",
    "dim": VECTOR_DIM,
    "precision": "fp32",
}


def ensure_collection(work_dir: Path, size: int) -> Path:
    """A cached collection of ``size`` rows bound to no real model (searched by indexed images)."""
    data_dir = work_dir / f"order-{size_label(size)}"
    marker = data_dir / "bench-complete.json"
    if marker.exists() and json.loads(marker.read_text()) == {"size": size}:
        return data_dir
    shutil.rmtree(data_dir, ignore_errors=True)
    (data_dir / "photos").mkdir(parents=True)
    with Library(Settings(data_dir=data_dir, model="bench-vectors", device="cpu")) as library:
        collection = library.store.ensure_collection(library.settings.collection, **IDENTITY)
        bulk_load(library, collection.id, data_dir / "photos", size)
        library.rebuild_vectors(library.collection())
    marker.write_text(json.dumps({"size": size}))
    return data_dir


def indexed(image_id: int, weight: float = 1.0) -> QueryTerm:
    return QueryTerm(TermKind.INDEXED, image_id, weight)


def measure(searcher: Searcher, anchors: list[int], queries: int) -> dict[str, dict[str, float]]:
    def search(query: Query, sort: SortOrder, cutoff: Cutoff, k: int) -> int:
        outcome = first_stage(searcher, query, Listing(k, sort=sort, cutoff=cutoff))
        return len(outcome.hits) if outcome.total is None else outcome.total

    paths: dict[str, Callable[[int], int]] = {
        "baseline: like, top 10": lambda a: len(searcher.like(a, 10)),
        "composed, 3 terms, top 10": lambda a: search(
            Query((indexed(a), indexed(a + 1, 0.5), indexed(a + 2, -0.5))),
            SortOrder.RELEVANCE,
            Cutoff.NONE,
            10,
        ),
        "cutoff auto, top 10": lambda a: search(Query((indexed(a),)), SortOrder.RELEVANCE, Cutoff.AUTO, 10),
        "sort taken, every match, page of 24": lambda a: search(
            Query((indexed(a),)), SortOrder.TAKEN, Cutoff.AUTO, 24
        ),
        "sort taken, no cutoff (browse), page of 24": lambda a: search(
            Query((indexed(a),)), SortOrder.TAKEN, Cutoff.NONE, 24
        ),
    }
    times: dict[str, list[float]] = {name: [] for name in paths}
    counts: dict[str, list[int]] = {name: [] for name in paths}
    for anchor in anchors[:queries]:
        for name, run in paths.items():  # interleaved: every path sees the same load
            started = time.perf_counter()
            counts[name].append(run(anchor))
            times[name].append((time.perf_counter() - started) * 1000)
    baseline = statistics.median(times["baseline: like, top 10"])
    return {
        name: {
            "p50_ms": statistics.median(values),
            "p90_ms": sorted(values)[int(0.9 * (len(values) - 1))],
            "x_baseline": statistics.median(values) / baseline,
            "results_median": statistics.median(counts[name]),
        }
        for name, values in times.items()
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100k", type=lambda s: [parse_size(x) for x in s.split(",")])
    parser.add_argument("--queries", type=int, default=60, help="timed anchors per size")
    parser.add_argument("--work-dir", type=Path, default=DEFAULT_WORK_DIR)
    args = parser.parse_args(argv)
    print(json.dumps(machine_info(), indent=1))
    for size in args.sizes:
        data_dir = ensure_collection(args.work_dir, size)
        with Library(Settings(data_dir=data_dir, model="bench-vectors", device="cpu")) as library:
            searcher = library.searcher()
            anchors = random.Random(0).sample(range(1, size - 2), args.queries + 1)
            started = time.perf_counter()
            searcher.background.vectors(len(searcher.vectors))
            draw_ms = (time.perf_counter() - started) * 1000
            searcher.like(anchors[-1], 10)  # warm-up: index pages, SQL caches
            results = measure(searcher, anchors, args.queries)
        log(f"{size_label(size)}: background sample drawn in {draw_ms:.0f} ms (once per collection size)")
        print(f"\n{size_label(size)} vectors, {args.queries} queries, first-stage only (no model):\n")
        print("| path | p50 ms | p90 ms | x baseline | results (median) |\n|---|---:|---:|---:|---:|")
        for name, row in results.items():
            print(
                f"| {name} | {row['p50_ms']:.1f} | {row['p90_ms']:.1f} | {row['x_baseline']:.2f} | "
                f"{row['results_median']:g} |"
            )


if __name__ == "__main__":
    main()
