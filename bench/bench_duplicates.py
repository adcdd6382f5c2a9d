"""Duplicate finding at scale: the batched k-NN grouping of ``pixseek duplicates`` over synthetic
collections of 100k and 1M 512-d vectors with planted near-duplicate pairs, against an all-pairs
search at 100k in the same run; and what the perceptual hash costs the indexer per photo.

Each collection is ``common.clustered_vectors`` (1,000 Gaussian clusters in a 64-d subspace,
projected, plus noise: neighbours as close as real embeddings' are, not uniform noise) in which
1% of the vectors are replaced by near-duplicates of others: the original plus noise orthogonal
to it, at a cosine drawn uniformly from ``--planted-min`` to 0.995 (what a resized or re-exposed
copy gives with a trained model). The index is the one pixseek plans for the size (Flat at 100k,
IVF at 1M with the default memory budget), built and tuned as ``pixseek index`` would (cached
under bench/.work/duplicates/). Timed, as ``Library.duplicates`` runs them:

* the scan index (:func:`pixseek.store.self_join.neighbour_search`: the collection's own IVF with
  fewer probes, or a temporary IVF over an exact index this large);
* the k-NN scan of every vector in batches of 10,000 (:func:`pixseek.search.duplicates.near_pairs`,
  k=16, threshold ``--threshold``);
* union-find into groups.

SQL reads and the perceptual-hash check are not in these figures (the vectors come from memory;
the hash check touches only the candidate pairs' rows). At 100k the baseline is every pair:
blocked exact matrix products (4,096 rows at a time against all), pairs at or above the threshold;
its pairs are also the truth the k-NN pairs' recall is measured against. Recall of the planted
pairs is reported at every size.

    HF_HUB_OFFLINE=1 python bench/bench_duplicates.py                 # 100k and 1M
    HF_HUB_OFFLINE=1 python bench/bench_duplicates.py --sizes 100000  # minutes
    HF_HUB_OFFLINE=1 python bench/bench_duplicates.py --quick         # 30k, about a minute
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import time
from pathlib import Path

import faiss
import numpy as np
import skimage
from PIL import Image

from common import DEFAULT_WORK_DIR, VECTOR_DIM, clustered_vectors, log, machine_info, uptime
from pixseek.media.decode import decode_image
from pixseek.media.perceptual import hamming, perceptual_hash
from pixseek.search.duplicates import UnionFind, near_pairs
from pixseek.store import self_join
from pixseek.store.ann.base import BaseIndex, SearchParams
from pixseek.store.ann.plan import choose_plan, default_memory_budget
from pixseek.store.ann.source import ArrayVectors
from pixseek.store.ann.tuning import tune
from pixseek.store.vector_index import VectorIndex

BATCH = 10_000
BLOCK = 4_096


def planted_collection(count: int, share: float, planted_min: float, seed: int = 7):
    """(vectors, planted pairs as an (n, 2) array of row ids): the last ``share`` of the rows are
    near-duplicates of rows drawn from the rest."""
    vectors = np.concatenate(list(clustered_vectors(count)))
    rng = np.random.default_rng(seed)
    planted = int(count * share)
    copies = np.arange(count - planted, count)
    originals = rng.choice(count - planted, planted, replace=False)
    base = vectors[originals]
    noise = rng.standard_normal(base.shape).astype(np.float32)
    noise -= (noise * base).sum(axis=1, keepdims=True) * base  # orthogonal to the original
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    cosine = rng.uniform(planted_min, 0.995, planted).astype(np.float32)
    twins = base * cosine[:, None] + noise * np.sqrt(1 - cosine**2)[:, None]
    vectors[copies] = twins / np.linalg.norm(twins, axis=1, keepdims=True)
    return vectors, np.stack([originals, copies], axis=1)


def collection_index(work: Path, vectors: np.ndarray, source: ArrayVectors) -> tuple[VectorIndex, dict]:
    """The index ``pixseek index`` leaves for this many vectors (its base cached across runs)."""
    count = len(vectors)
    plan = choose_plan(count, VECTOR_DIM, default_memory_budget())
    folder = work / f"index-{count}-{plan.factory_key().replace(',', '_')}"
    meta_path = folder / "meta.json"
    if not meta_path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        log(f"building {plan.factory_key()} over {count} vectors (load: {uptime()})")
        started = time.perf_counter()
        base = BaseIndex.build(plan, source)
        if plan.trained:
            tune(base, source)
        base.write(folder / "base.faiss", folder / "ids.npy", None)
        meta = {"build_s": time.perf_counter() - started, "params": base.params.to_json()}
        meta_path.write_text(json.dumps(meta))
    meta = json.loads(meta_path.read_text())
    base = BaseIndex.read(
        folder / "base.faiss", folder / "ids.npy", None, plan, SearchParams(**meta["params"]), mmap=False
    )
    return VectorIndex.from_base(base, source), {"index": plan.factory_key(), **meta}


def pair_set(first: np.ndarray, second: np.ndarray) -> set[tuple[int, int]]:
    return set(zip(first.tolist(), second.tolist(), strict=True))


def all_pairs(vectors: np.ndarray, threshold: float) -> set[tuple[int, int]]:
    """Every pair at or above ``threshold``: blocked exact products, the baseline."""
    found: set[tuple[int, int]] = set()
    for start in range(0, len(vectors), BLOCK):
        scores = vectors[start : start + BLOCK] @ vectors.T
        rows, columns = np.nonzero(scores >= threshold)
        rows += start
        keep = columns > rows
        found |= pair_set(rows[keep], columns[keep])
    return found


def measure_size(work: Path, count: int, args) -> dict:
    log(f"{count} vectors: generating, {args.planted_share:.0%} planted near-duplicates")
    vectors, planted = planted_collection(count, args.planted_share, args.planted_min)
    ids = np.arange(count, dtype=np.int64)
    source = ArrayVectors(ids, vectors)
    index, meta = collection_index(work, vectors, source)
    row: dict = {"vectors": count, "planted_pairs": len(planted), **meta, "load_start": uptime()}
    row["scan_nprobe"] = self_join.SCAN_NPROBE

    started = time.perf_counter()
    search = self_join.neighbour_search(index, source)
    row["scan_index_s"] = time.perf_counter() - started
    started = time.perf_counter()
    pairs = near_pairs(source.chunks(BATCH), search, args.threshold, k=args.k)
    row["knn_s"] = time.perf_counter() - started
    started = time.perf_counter()
    union = UnionFind()
    for first, second in zip(pairs.first.tolist(), pairs.second.tolist(), strict=True):
        union.union(first, second)
    row["groups"] = len(union.groups())
    row["union_find_s"] = time.perf_counter() - started
    row["pixseek_s"] = row["scan_index_s"] + row["knn_s"] + row["union_find_s"]
    row["pairs"] = len(pairs)
    found = pair_set(pairs.first, pairs.second)
    truth_planted = pair_set(planted.min(axis=1), planted.max(axis=1))
    row["planted_recall"] = len(found & truth_planted) / len(truth_planted)
    row["load_end"] = uptime()
    log(f"{count}: pixseek {row['pixseek_s']:.1f} s, planted recall {row['planted_recall']:.4f}")

    if count <= args.baseline_max:
        started = time.perf_counter()
        truth = all_pairs(vectors, args.threshold)
        row["all_pairs_s"] = time.perf_counter() - started
        row["all_pairs"] = len(truth)
        row["pair_recall_vs_all_pairs"] = len(found & truth) / max(1, len(truth))
        row["speedup"] = row["all_pairs_s"] / row["pixseek_s"]
        log(f"{count}: all pairs {row['all_pairs_s']:.1f} s")
    return row


def hash_cost(repeats: int = 15) -> dict:
    """Per photo: a 12 MP camera-like JPEG decoded as the indexer does (draft, for a 224 px model),
    then the perceptual hash of those pixels; and the hash of a full-resolution decode (PNG, TIFF)."""
    photo = Image.open(Path(skimage.__file__).parent / "data" / "astronaut.png").convert("RGB")
    big = photo.resize((4000, 3000), Image.Resampling.BICUBIC)
    noisy = np.asarray(big, dtype=np.int16) + np.random.default_rng(0).integers(-8, 9, (3000, 4000, 3))
    buffer = io.BytesIO()
    Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=90)
    data = buffer.getvalue()

    def timed(run) -> float:
        run()
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            run()
            times.append(time.perf_counter() - started)
        return statistics.median(times) * 1e3

    drafted = decode_image(data, min_side=224).image
    full = decode_image(data).image
    return {
        "jpeg_bytes": len(data),
        "decode_draft_ms": timed(lambda: decode_image(data, min_side=224)),
        "draft_size": drafted.size,
        "hash_draft_ms": timed(lambda: perceptual_hash(drafted)),
        "hash_full_12mp_ms": timed(lambda: perceptual_hash(full)),
        "draft_vs_full_bits": int(hamming(perceptual_hash(drafted), perceptual_hash(full))),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--threshold", type=float, default=0.96, help="cosine of a candidate pair")
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--planted-share", type=float, default=0.01)
    parser.add_argument("--planted-min", type=float, default=0.97, help="lowest cosine of a planted pair")
    parser.add_argument("--baseline-max", type=int, default=100_000, help="all pairs up to this size")
    parser.add_argument("--work-dir", type=Path, default=DEFAULT_WORK_DIR / "duplicates")
    parser.add_argument("--scan-nprobe", type=int, help=f"IVF lists probed [default {self_join.SCAN_NPROBE}]")
    parser.add_argument("--quick", action="store_true", help="30k vectors (with all pairs): a minute")
    args = parser.parse_args()
    if args.quick:
        args.sizes = "30000"
    if args.scan_nprobe:
        self_join.SCAN_NPROBE = args.scan_nprobe
    machine = machine_info() | {"faiss": faiss.__version__, "faiss_threads": faiss.omp_get_max_threads()}
    started_load = uptime()
    hashing = hash_cost()
    rows = [measure_size(args.work_dir, int(float(size)), args) for size in args.sizes.split(",")]

    print(f"# Duplicate finding at scale ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})\n")
    print(
        f"Machine: {machine['cpu']}, {machine['cores']} cores, native bf16 {machine['native_bf16']}, faiss "
        f"{machine['faiss']} ({machine['faiss_threads']} threads). Load at start: {started_load}; at end: "
        f"{uptime()}. Threshold {args.threshold}, k={args.k}, planted cosines {args.planted_min}-0.995, "
        f"IVF lists probed {self_join.SCAN_NPROBE}.\n"
    )
    columns = [
        "vectors", "index", "scan index s", "k-NN s", "union-find s", "pixseek s", "pairs",
        "planted recall", "all pairs s", "x faster", "recall vs all pairs",
    ]  # fmt: skip
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for r in rows:
        cells = [
            f"{r['vectors']:,}",
            r["index"],
            f"{r['scan_index_s']:.1f}",
            f"{r['knn_s']:.1f}",
            f"{r['union_find_s']:.2f}",
            f"{r['pixseek_s']:.1f}",
            f"{r['pairs']:,}",
            f"{r['planted_recall']:.4f}",
            f"{r['all_pairs_s']:.1f}" if "all_pairs_s" in r else "-",
            f"{r['speedup']:.1f}" if "speedup" in r else "-",
            f"{r['pair_recall_vs_all_pairs']:.4f}" if "pair_recall_vs_all_pairs" in r else "-",
        ]
        print("| " + " | ".join(cells) + " |")
    print(
        f"\nPerceptual hash per photo: 12 MP JPEG ({hashing['jpeg_bytes'] / 1e6:.1f} MB) draft-decoded to "
        f"{hashing['draft_size']} in {hashing['decode_draft_ms']:.1f} ms, hashed in "
        f"{hashing['hash_draft_ms']:.2f} ms ({hashing['hash_draft_ms'] / hashing['decode_draft_ms']:.1%}); "
        f"hashing a full 12 MP decode {hashing['hash_full_12mp_ms']:.1f} ms; draft and full hashes differ in "
        f"{hashing['draft_vs_full_bits']} bits."
    )
    print()
    print(
        json.dumps({"machine": machine, "rows": rows, "hashing": hashing, "load_end": uptime()}, default=str)
    )


if __name__ == "__main__":
    main()
