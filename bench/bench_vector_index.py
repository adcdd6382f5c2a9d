"""Vector index at scale: recall@10 against exact search and queries per second at 100k, 1M and 10M
synthetic clustered 512-d vectors, with the index pixseek chooses for each size and the default
memory budget, against brute force measured in the same run.

For each size: build time (training + adding + tuning to the recall target), bytes per vector on
disk, resident memory of the loaded index, load time with and without memory mapping, recall@10 of
held-out queries (same distribution, never indexed) against exact top-10, batched QPS (all queries
in one call) and single-query latency. Then, at the largest size up to 1M: concurrent single-query
clients through pixseek's search batcher against the same clients one FAISS call each.

Vectors, exact answers and built indexes are cached under bench/.work/ (10M vectors are a 20 GB
memory-mapped file), so a later run measures search without rebuilding; the build figures printed
then are those recorded when the index was built (with the machine load at the time).

    HF_HUB_OFFLINE=1 python bench/bench_vector_index.py                  # 100k, 1M, 10M
    HF_HUB_OFFLINE=1 python bench/bench_vector_index.py --quick          # 100k only, minutes
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import threading
import time
from pathlib import Path

import faiss
import numpy as np

from common import (
    DEFAULT_WORK_DIR,
    VECTOR_DIM,
    cached_clustered,
    clustered_vectors,
    log,
    machine_info,
    uptime,
)
from pixseek.config import parse_bytes
from pixseek.search.batching import VectorSearchBatcher
from pixseek.store.ann.base import BaseIndex, SearchParams
from pixseek.store.ann.plan import IndexPlan, choose_plan, default_memory_budget
from pixseek.store.ann.source import ArrayVectors
from pixseek.store.ann.tuning import exact_neighbours, recall, tune
from pixseek.store.vector_index import VectorIndex

K = 10


def rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def median_seconds(run, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def cached_truth(work: Path, count: int, data: np.ndarray, queries: np.ndarray) -> np.ndarray:
    path = work / f"truth-{count}-{len(queries)}.npy"
    if not path.exists():
        log(f"exact top-{K} of {len(queries)} queries over {count} vectors")
        truth = exact_neighbours(ArrayVectors(np.arange(count, dtype=np.int64), data), queries, K)
        np.save(path, truth)
    return np.load(path)


def cached_index(
    work: Path, count: int, plan: IndexPlan, source: ArrayVectors, target: float, retune: bool = False
):
    """The tuned base for this size and plan: built once, then read back (memory-mapped); with
    ``retune`` its search parameters are tuned again by the current pixseek (the build is kept)."""
    folder = work / f"index-{count}-{plan.factory_key().replace(',', '_')}-{target}"
    meta_path = folder / "meta.json"
    if not meta_path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        log(f"building {plan.factory_key()} over {count} vectors (load: {uptime()})")
        before = rss_bytes()
        started = time.perf_counter()
        base = BaseIndex.build(plan, source)
        built = time.perf_counter() - started
        recall_tuned = tune(base, source, target)
        tuned = time.perf_counter() - started - built
        base.write(folder / "base.faiss", folder / "ids.npy", None)
        meta = {
            "build_s": built,
            "tune_s": tuned,
            "tuned_recall": recall_tuned,
            "params": base.params.to_json(),
            "rss_growth_bytes": rss_bytes() - before,
            "load_at_build": uptime(),
        }
        meta_path.write_text(json.dumps(meta))
        del base
    meta = json.loads(meta_path.read_text())
    if retune:
        base = BaseIndex.read(
            folder / "base.faiss", folder / "ids.npy", None, plan, SearchParams(), mmap=True
        )
        started = time.perf_counter()
        meta["tuned_recall"] = tune(base, source, target)
        meta |= {
            "tune_s": time.perf_counter() - started,
            "params": base.params.to_json(),
            "load_at_tune": uptime(),
        }
        meta_path.write_text(json.dumps(meta))
    return folder, meta


def measure_size(work: Path, count: int, queries: np.ndarray, args) -> dict:
    data = cached_clustered(work, count)
    truth = cached_truth(work, count, data, queries)
    source = ArrayVectors(np.arange(count, dtype=np.int64), data)
    budget = parse_bytes(args.memory_budget) if args.memory_budget else default_memory_budget()
    plan = choose_plan(count, VECTOR_DIM, budget)
    folder, meta = cached_index(work, count, plan, source, args.recall_target, args.retune)
    params = SearchParams(**meta["params"])
    row: dict = {"vectors": count, "index": plan.factory_key(), "memory_budget_gb": budget / 2**30, **meta}
    row["bytes_per_vector"] = (folder / "base.faiss").stat().st_size / count

    loads = {}
    for name, mmap in (("read", False), ("mmap", True)):
        before = rss_bytes()
        started = time.perf_counter()
        base = BaseIndex.read(folder / "base.faiss", folder / "ids.npy", None, plan, params, mmap=mmap)
        loads[name] = (time.perf_counter() - started, rss_bytes() - before)
        if not mmap:
            del base
    row["load_s"] = loads["read"][0]
    row["resident_bytes_read"] = loads["read"][1]
    row["load_mmap_s"] = loads["mmap"][0]
    row["resident_bytes_mmap_at_load"] = loads["mmap"][1]

    def batched():
        return base.search(queries, K, params, refine=source)

    batched()  # page the mapped index in before timing
    row["recall_at_10"] = recall(batched()[1], truth)
    flat = None
    if count * VECTOR_DIM * 4 <= budget:  # brute force needs the raw vectors in memory
        flat = faiss.IndexFlatIP(VECTOR_DIM)
        flat.add(np.ascontiguousarray(data))
    # pixseek's index first, brute force after: BLAS threads still spinning after a brute-force call
    # slowed the IVF batch that followed it (526 against ~6,000 QPS at 1M).
    row["batch_qps"] = len(queries) / median_seconds(batched, args.repeats)
    singles = queries[: args.single_queries]
    latencies = []
    for query in singles:
        started = time.perf_counter()
        base.search(query[None], K, params, refine=source)
        latencies.append(time.perf_counter() - started)
    row["single_p50_ms"] = statistics.median(latencies) * 1e3
    row["single_p99_ms"] = float(np.percentile(latencies, 99)) * 1e3
    row["single_qps"] = len(singles) / sum(latencies)

    if flat is not None:
        row["brute_batch_qps"] = len(queries) / median_seconds(lambda: flat.search(queries, K), args.repeats)
        started = time.perf_counter()
        for query in singles[: max(10, len(singles) // 4)]:
            flat.search(query[None], K)
        row["brute_single_qps"] = max(10, len(singles) // 4) / (time.perf_counter() - started)
        row["batch_speedup_vs_brute"] = row["batch_qps"] / row["brute_batch_qps"]
        row["single_speedup_vs_brute"] = row["single_qps"] / row["brute_single_qps"]
        if args.concurrency and count <= 1_000_000:
            row["concurrent"] = measure_concurrency(base, source, queries, args)
        del flat
    return row


def measure_concurrency(base: BaseIndex, source, queries: np.ndarray, args) -> dict:
    """Clients each sending one query at a time: one FAISS call per query, or through the batcher."""
    index = VectorIndex.from_base(base, source)
    batcher = VectorSearchBatcher(index)
    results = {}
    for name, target in (("one call per query", index), ("pixseek batcher", batcher)):
        done = [0] * args.clients
        stop = time.monotonic() + args.seconds

        def client(i: int, target=target, done=done, stop=stop) -> None:
            n = 0
            while time.monotonic() < stop:
                target.search(queries[(i * 97 + n) % len(queries)][None], K)
                n += 1
            done[i] = n

        threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        results[name] = sum(done) / (time.monotonic() - started)
    batcher.close()
    results["ratio"] = results["pixseek batcher"] / results["one call per query"]
    results["clients"] = args.clients
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100000,1000000,10000000", help="collection sizes")
    parser.add_argument("--queries", type=int, default=1000, help="held-out queries per size")
    parser.add_argument("--single-queries", type=int, default=200, help="of those, timed one by one")
    parser.add_argument("--recall-target", type=float, default=0.95)
    parser.add_argument("--memory-budget", help="e.g. 8G [default: pixseek's, half the available RAM]")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients for the batcher check")
    parser.add_argument("--seconds", type=float, default=10.0, help="per concurrency measurement")
    parser.add_argument("--no-concurrency", dest="concurrency", action="store_false")
    parser.add_argument("--retune", action="store_true", help="tune cached indexes again (keep the build)")
    parser.add_argument("--work-dir", type=Path, default=DEFAULT_WORK_DIR / "vectors")
    parser.add_argument("--quick", action="store_true", help="100k vectors, 300 queries, 5 s concurrency")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.queries, args.seconds, args.single_queries = "100000", 300, 5.0, 100
    sizes = [int(float(s)) for s in args.sizes.split(",")]
    queries = next(clustered_vectors(args.queries, seed=1, chunk=args.queries))
    machine = machine_info() | {"faiss": faiss.__version__, "faiss_threads": faiss.omp_get_max_threads()}
    started_load = uptime()
    rows = [measure_size(args.work_dir, n, queries, args) for n in sizes]

    print(f"# Vector index at scale ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})\n")
    print(
        f"Machine: {machine['cpu']}, {machine['cores']} cores, faiss {machine['faiss']} "
        f"({machine['faiss_threads']} threads). Load at start: {started_load}; at end: {uptime()}."
    )
    print(
        f"{len(queries)} held-out queries, recall@{K} against exact top-{K}, target {args.recall_target}.\n"
    )
    columns = [
        "vectors", "index", "params", "build s", "tune s", "bytes/vector", "RAM read / mmap MB",
        "load read / mmap ms", "recall@10", "batch QPS", "brute batch QPS", "x brute", "single p50 ms",
        "single QPS", "x brute",
    ]  # fmt: skip
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    nan = float("nan")
    for r in rows:
        cells = [
            f"{r['vectors']:,}",
            r["index"],
            str(r["params"]),
            f"{r['build_s']:.0f}",
            f"{r['tune_s']:.0f}",
            f"{r['bytes_per_vector']:.0f}",
            f"{r['resident_bytes_read'] / 2**20:.0f} / {r['resident_bytes_mmap_at_load'] / 2**20:.0f}",
            f"{r['load_s'] * 1e3:.0f} / {r['load_mmap_s'] * 1e3:.1f}",
            f"{r['recall_at_10']:.3f}",
            f"{r['batch_qps']:.0f}",
            f"{r.get('brute_batch_qps', nan):.0f}",
            f"{r.get('batch_speedup_vs_brute', nan):.1f}",
            f"{r['single_p50_ms']:.2f}",
            f"{r['single_qps']:.0f}",
            f"{r.get('single_speedup_vs_brute', nan):.1f}",
        ]
        print("| " + " | ".join(cells) + " |")
    for r in rows:
        if "concurrent" in r:
            c = r["concurrent"]
            print(
                f"\nAt {r['vectors']:,} vectors, {c['clients']} concurrent single-query clients: "
                f"{c['one call per query']:.0f} QPS with one FAISS call per query, "
                f"{c['pixseek batcher']:.0f} QPS through the batcher ({c['ratio']:.1f}x)."
            )
    print()
    print(json.dumps({"machine": machine, "rows": rows, "load_start": started_load, "load_end": uptime()}))


if __name__ == "__main__":
    main()
