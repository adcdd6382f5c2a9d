"""Sharded search over local Ray actors against one index, on the same synthetic clustered vectors.

The collection (default 100k L2-normalised 512-d vectors from ``common.clustered_vectors``: 1,000
Gaussian clusters in a 64-d subspace, projected to 512-d, plus noise; queries are other points of
the same clusters) is held three ways, all exact (``VectorIndex`` filled with ``update``):

* ``local``: one index in this process, the baseline;
* ``1 actor``: the same single index inside one Ray actor, which isolates what a Ray call costs;
* ``N shards``: ``pixseek.distributed.sharded_search.ShardedIndex`` over N actors (default 4),
  the collection split by id hash, each query scattered to every shard and the top-k merged.

Single queries are timed interleaved (query i on every path before query i+1), so a machine shared
with other work slows all paths alike; batches of ``--batch`` queries are timed the same way. Every
sharded answer is checked against the local one: ids and scores must be identical for single
queries (for batches FAISS's sgemm rounding differs with the index size, so scores are compared to
1e-6 and ids where scores are not tied within that). Also reported: Ray start-up, actor creation,
and loading the vectors into the shards.

Run: ``python bench/bench_sharded_search.py`` (``--quick``: 20k vectors, 100 queries; ``--help``).
Progress goes to stderr; stdout holds markdown tables and, on its last line, one JSON object.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from common import VECTOR_DIM, clustered_vectors, log, machine_info, uptime
from pixseek.store.vector_index import VectorIndex

DIM = VECTOR_DIM
EMPTY = np.empty(0, np.int64)


def clustered(count: int, seed: int = 0) -> np.ndarray:
    """``count`` vectors of bench/common.py's clustered set in one array (same clusters per seed)."""
    return np.concatenate(list(clustered_vectors(count, seed=seed)))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def summary_ms(values: list[float]) -> dict[str, float]:
    return {
        "p50_ms": statistics.median(values) * 1e3,
        "p99_ms": percentile(values, 99) * 1e3,
        "mean_ms": statistics.fmean(values) * 1e3,
    }


def same_results(expected: tuple[np.ndarray, np.ndarray], got: tuple[np.ndarray, np.ndarray], exact: bool):
    """(ids identical, max |score difference|); for batches ids are compared where not tied within 1e-5."""
    if expected[1].shape != got[1].shape:
        return False, float("inf")
    diff = float(np.max(np.abs(expected[0] - got[0]), initial=0.0))
    if exact:
        return bool(np.array_equal(expected[1], got[1]) and diff == 0.0), diff
    gaps = np.abs(np.diff(expected[0].astype(np.float64), axis=1))
    separated = np.ones(expected[0].shape, dtype=bool)
    separated[:, 1:] &= gaps > 1e-5
    separated[:, :-1] &= gaps > 1e-5
    return bool(np.array_equal(expected[1][separated], got[1][separated])), diff


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="20k vectors, 100 queries")
    parser.add_argument("--size", type=int, help="vectors in the collection [default: 100000]")
    parser.add_argument("--shards", type=int, default=4, help="shard actors [default: 4]")
    parser.add_argument("--queries", type=int, help="timed single queries per path [default: 300]")
    parser.add_argument("--batch", type=int, default=64, help="queries per batched search [default: 64]")
    parser.add_argument("--batches", type=int, help="timed batches per path [default: 20]")
    parser.add_argument("-k", type=int, default=10, help="results per query [default: 10]")
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 2, help="CPUs for the local Ray")
    args = parser.parse_args()
    size = args.size or (20_000 if args.quick else 100_000)
    queries_n = args.queries or (100 if args.quick else 300)
    batches_n = args.batches or (5 if args.quick else 20)
    load_before = uptime()

    log(f"generating {size} clustered {DIM}-d vectors")
    vectors = clustered(size)
    ids = np.arange(1, size + 1, dtype=np.int64)  # SQL-like sequential ids; shards hash them
    query_pool = clustered(queries_n + batches_n * args.batch, seed=1)  # same clusters, new points
    singles = query_pool[:queries_n]
    batches = query_pool[queries_n:].reshape(batches_n, args.batch, DIM)

    local = VectorIndex(DIM)
    local.update(ids, vectors, EMPTY, 1)

    started = time.perf_counter()
    import ray

    from pixseek.distributed.sharded_search import ShardedIndex, ShardServer

    ray.init(num_cpus=args.cpus, include_dashboard=False, logging_level="WARNING")
    ray_start = time.perf_counter() - started
    log(f"ray.init: {ray_start:.2f} s")

    started = time.perf_counter()
    one = ray.remote(num_cpus=0)(ShardServer).remote(DIM, 0, 1)
    sharded = ShardedIndex.create(DIM, args.shards, num_cpus=0)
    ray.get([one.size.remote(), *(actor.size.remote() for actor in sharded.actors)])
    actors_start = time.perf_counter() - started
    started = time.perf_counter()
    ray.get(one.add.remote(ids, vectors, 1))
    one_load = time.perf_counter() - started
    started = time.perf_counter()
    sharded.add(ids, vectors, 1)
    shard_load = time.perf_counter() - started
    sizes = sharded.sizes()
    log(
        f"actors up in {actors_start:.2f} s; loaded 1 actor in {one_load:.2f} s, "
        f"shards {sizes} in {shard_load:.2f} s"
    )

    def in_actor(queries: np.ndarray, k: int):
        return ray.get(one.search.remote(queries, k, None))

    paths: dict[str, Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]] = {
        "local": local.search,
        "1 actor": in_actor,
        f"{args.shards} shards": sharded.search,
    }
    for path in paths.values():  # warm-up: first calls pay for lazy set-up
        path(singles[:1], args.k)
        path(batches[0], args.k)

    timings: dict[str, dict[str, list[float]]] = {name: {"single": [], "batch": []} for name in paths}
    checks = {"single_identical": 0, "single_total": 0, "batch_ids_identical": 0, "batch_total": 0}
    max_diff = {"single": 0.0, "batch": 0.0}
    log(f"timing {queries_n} single queries and {batches_n} batches of {args.batch}, k={args.k}")
    for kind, items in (("single", [q[None] for q in singles]), ("batch", list(batches))):
        for item in items:
            answers = {}
            for name, path in paths.items():
                started = time.perf_counter()
                answers[name] = path(item, args.k)
                timings[name][kind].append(time.perf_counter() - started)
            for name in list(paths)[1:]:
                same, diff = same_results(answers["local"], answers[name], exact=kind == "single")
                max_diff[kind] = max(max_diff[kind], diff)
                key = "single_identical" if kind == "single" else "batch_ids_identical"
                checks[key] += same
                checks[f"{kind}_total"] += 1
    ray.shutdown()

    results: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_info(),
        "uptime_before": load_before,
        "uptime_after": uptime(),
        "size": size,
        "dim": DIM,
        "shards": args.shards,
        "shard_sizes": sizes,
        "k": args.k,
        "batch": args.batch,
        "ray_version": ray.__version__,
        "ray_init_s": ray_start,
        "actors_start_s": actors_start,
        "load_one_actor_s": one_load,
        "load_shards_s": shard_load,
        "checks": checks,
        "max_score_diff": max_diff,
        "paths": {
            name: {kind: summary_ms(values) for kind, values in t.items()} for name, t in timings.items()
        },
    }
    print(f"## Sharded search: {size:,} clustered {DIM}-d vectors, {args.shards} Ray actors vs one index\n")
    print(
        f"{results['date']}; {results['machine']['cpu']}, {results['machine']['cores']} cores; "
        f"Ray {ray.__version__}"
    )
    print(f"load before: `{load_before}`; after: `{results['uptime_after']}`\n")
    print(
        "| path | single p50 ms | single p99 ms | p50 / local | "
        f"batch of {args.batch} p50 ms | batch p99 ms | batch p50 / local |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    base = results["paths"]["local"]
    for name, stats in results["paths"].items():
        single, batch = stats["single"], stats["batch"]
        print(
            f"| {name} | {single['p50_ms']:.2f} | {single['p99_ms']:.2f} | "
            f"{single['p50_ms'] / base['single']['p50_ms']:.2f}x | {batch['p50_ms']:.1f} | "
            f"{batch['p99_ms']:.1f} | {batch['p50_ms'] / base['batch']['p50_ms']:.2f}x |"
        )
    print()
    print(
        f"Identical top-{args.k} (ids and scores) for single queries: {checks['single_identical']} / "
        f"{checks['single_total']}; batches, ids where not tied within 1e-5: "
        f"{checks['batch_ids_identical']} / "
        f"{checks['batch_total']} (max score difference {max_diff['batch']:.2e})."
    )
    print(
        f"Start-up: ray.init {ray_start:.2f} s, {args.shards + 1} actors {actors_start:.2f} s, loading "
        f"{size:,} vectors into 1 actor {one_load:.2f} s, into {args.shards} shards {shard_load:.2f} s.\n"
    )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
