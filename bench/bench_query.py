"""Query latency: one text query -> results, in-process (the `pixseek search` path) and over HTTP.

Collections of 10k, 100k and 1M synthetic clustered 512-d vectors (1,000 Gaussian clusters in a
64-d subspace, projected to 512-d, plus noise, normalised) are real pixseek collections: SQL rows
with metadata and embedding, bound to the checkpoint's fingerprint, and the FAISS index built from
them by ``Library.rebuild_vectors``. They are bulk-loaded once (SQLAlchemy Core executemany, not
the indexer) and cached under ``bench/.work/query-<size>/``.

The text encoder is the full-size CLIP ViT-B/32 architecture with random weights. Per size and
precision, four things are timed on the same varied query texts, interleaved query by query:

* baseline, text encoder alone: ``encoder.embed_texts([q])``;
* baseline, FAISS alone: ``VectorIndex.search`` on the ready query vector;
* CLI in-process: ``Library(settings).searcher().by_text(q, k)``, what ``pixseek search`` runs
  after start-up (model and index loading excluded);
* HTTP: ``POST /search`` to ``pixseek serve`` in its own process on loopback, one client.

The target (issue 6) is p50 <= 1.3x (median encoder time + median FAISS time).

Run: ``python bench/bench_query.py`` (full: 10k, 100k, 1M) or ``--quick`` (``--help`` for options).
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse
import hashlib
import json
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import faiss
import httpx
import numpy as np
import torch
from sqlalchemy import insert, update

from common import DEFAULT_WORK_DIR, VECTOR_DIM, clustered_vectors, ensure_checkpoint, log, machine_info
from pixseek.config import Settings
from pixseek.embedding import load_encoder
from pixseek.embedding.runtime import resolve_precision
from pixseek.library import Library
from pixseek.store.models import STATUS_INDEXED, Collection, ImageRecord

DIM = VECTOR_DIM
CHUNK = 20_000  # rows generated and inserted per transaction
FORMAT_VERSION = 2  # bump when the generated collection changes, so cached databases are rebuilt

SUBJECTS = [
    "a cat", "a dog", "a red car", "an old man", "two children", "a bicycle", "a wooden boat",
    "a horse", "a bowl of soup", "a street musician", "a lighthouse", "a yellow taxi", "an astronaut",
    "a coffee cup", "a mountain goat", "a wedding cake", "a steam train", "a flock of birds",
]  # fmt: skip
SCENES = [
    "", "on a beach", "in the snow", "at night", "in a busy market", "under a bridge",
    "next to a window", "in the rain at dusk", "on a kitchen table", "in a field of sunflowers",
    "seen from above", "in an empty parking lot with long shadows",
]  # fmt: skip
STYLES = ["", "photo of", "a blurry picture of", "close-up of", "black and white photo of"]


def query_texts(count: int, seed: int = 0) -> list[str]:
    """Varied texts of different lengths (the encoder pads to the longest text, so length matters)."""
    texts = sorted(
        {" ".join(p for p in (st, su, sc) if p) for st in STYLES for su in SUBJECTS for sc in SCENES}
    )
    random.Random(seed).shuffle(texts)
    return [texts[i % len(texts)] for i in range(count)]


def parse_size(text: str) -> int:
    text = text.strip().lower()
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1:], 1)
    return int(float(text[:-1] if scale > 1 else text) * scale)


def size_label(size: int) -> str:
    if size % 1_000_000 == 0:
        return f"{size // 1_000_000}M"
    return f"{size // 1000}k" if size % 1000 == 0 else str(size)


# ---- the collection ------------------------------------------------------------------------------
def bulk_load(library: Library, collection_id: int, root: Path, count: int) -> None:
    """Rows as the indexer would write them (metadata + embedding), in large executemany batches,
    one transaction per chunk; the collection's generation moves with the rows, like Store.apply."""
    table = ImageRecord.__table__
    now = datetime(2026, 11, 1)
    started = time.perf_counter()
    for chunk_no, vectors in enumerate(clustered_vectors(count, chunk=CHUNK)):
        base = chunk_no * CHUNK
        rows = [
            {
                "collection_id": collection_id,
                "path": f"{root}/{(base + i) // 1000:04d}/img_{base + i:07d}.jpg",
                "size": 3_000_000 + (base + i) % 500_000,
                "mtime_ns": 1_700_000_000_000_000_000 + base + i,
                "content_hash": hashlib.sha256((base + i).to_bytes(8, "little")).hexdigest(),
                "status": STATUS_INDEXED,
                "error": None,
                "format": "JPEG",
                "width": 4000,
                "height": 3000,
                "taken_at": now - timedelta(minutes=base + i),
                "camera": "Bench Camera",
                "orientation": 1,
                "gps_lat": None,
                "gps_lon": None,
                "indexed_at": now,
                "embedding": vector.tobytes(),
            }
            for i, vector in enumerate(vectors)
        ]
        with library.store.engine.begin() as connection:
            connection.execute(insert(table), rows)
            connection.execute(
                update(Collection)
                .where(Collection.id == collection_id)
                .values(generation=Collection.generation + 1)
            )
        done = base + len(rows)
        if chunk_no % 10 == 9 or done == count:
            log(f"  {done:,}/{count:,} rows ({done / (time.perf_counter() - started):,.0f} rows/s)")


def ensure_collection(work_dir: Path, size: int, checkpoint: Path, identity: dict) -> Path:
    """The cached data dir of a ``size``-image collection bound to the checkpoint; built when missing
    or made for another checkpoint (a rebuilt random checkpoint has another fingerprint)."""
    data_dir = work_dir / f"query-{size_label(size)}"
    marker = data_dir / "bench-complete.json"
    expected = {"format": FORMAT_VERSION, "size": size, **identity}
    if marker.exists() and json.loads(marker.read_text()) == expected:
        return data_dir
    log(f"building the {size_label(size)} collection in {data_dir} (cached for later runs)")
    shutil.rmtree(data_dir, ignore_errors=True)
    root = data_dir / "photos"  # the library root the server serves; the files need not exist
    root.mkdir(parents=True)
    library = Library(Settings(data_dir=data_dir, model=str(checkpoint), device="cpu"))
    try:
        collection = library.store.ensure_collection(
            library.settings.collection,
            model_id=identity["model_id"],
            fingerprint=identity["fingerprint"],
            dim=identity["dim"],
            precision=identity["precision"],
        )
        bulk_load(library, collection.id, root, size)
        started = time.perf_counter()
        vectors = library.rebuild_vectors(library.collection())
        took = time.perf_counter() - started
        log(f"  FAISS index of {len(vectors):,} vectors built and saved in {took:.1f} s")
    finally:
        library.close()
    marker.write_text(json.dumps(expected))
    return data_dir


def rebuild_index(data_dir: Path, checkpoint: Path) -> None:
    library = Library(Settings(data_dir=data_dir, model=str(checkpoint), device="cpu"))
    try:
        started = time.perf_counter()
        vectors = library.rebuild_vectors(library.collection())
        took = time.perf_counter() - started
        log(f"  FAISS index rebuilt in {took:.1f} s: {describe_index(vectors)}")
    finally:
        library.close()


# ---- measuring -----------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(data_dir: Path, checkpoint: Path, precision: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [
        sys.executable, "-m", "pixseek.cli", "--data-dir", str(data_dir), "serve",
        "--root", str(data_dir / "photos"), "--port", str(port), "--model", str(checkpoint),
        "--device", "cpu", "--precision", precision, "--no-watch",
    ]  # fmt: skip
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"server exited with {server.returncode}: {server.stderr.read()[-2000:]}")
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return server, base
        except httpx.HTTPError:
            time.sleep(0.3)
    server.terminate()
    raise SystemExit("server did not start")


def stop_server(server: subprocess.Popen) -> None:
    server.terminate()
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()


def summary(values: list[float]) -> dict[str, float]:
    array = np.asarray(values)
    return {
        "p50_ms": float(np.percentile(array, 50)),
        "p99_ms": float(np.percentile(array, 99)),
        "min_ms": float(array.min()),
        "mean_ms": float(array.mean()),
    }


def measure(
    data_dir: Path, checkpoint: Path, precision: str, k: int, texts: list[str], warmup: int, http: bool
) -> dict:
    settings = Settings(data_dir=data_dir, model=str(checkpoint), device="cpu", precision=precision)
    library = Library(settings)
    started = time.perf_counter()
    searcher = library.searcher()
    encoder = searcher._encoder()  # the very encoder by_text uses (loaded once, cached)
    log(f"  model and index loaded in-process in {time.perf_counter() - started:.1f} s")
    vectors = searcher.vectors
    server, base, client = None, None, None
    if http:
        started = time.perf_counter()
        server, base = start_server(data_dir, checkpoint, precision)
        client = httpx.Client(base_url=base, timeout=120)
        log(f"  server started in {time.perf_counter() - started:.1f} s")
    times: dict[str, list[float]] = {
        name: [] for name in ("encoder", "faiss", "sql_metadata", "cli", "http", "http_server")
    }
    problems: list[str] = []

    def encode(text: str) -> None:
        t0 = time.perf_counter()
        vector = encoder.embed_texts([text])[0]
        times["encoder"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        _, ids = vectors.search(vector[None, :], k)
        times["faiss"].append(time.perf_counter() - t0)
        if (ids[0] < 0).any():
            problems.append(f"FAISS returned fewer than {k} ids for {text!r}")
        t0 = time.perf_counter()  # not in the baseline: the metadata fetch by_text adds to it
        searcher.store.images(ids[0].tolist())
        times["sql_metadata"].append(time.perf_counter() - t0)

    def cli(text: str) -> None:
        t0 = time.perf_counter()
        hits = searcher.by_text(text, k)
        times["cli"].append(time.perf_counter() - t0)
        if len(hits) != k or hits[0].path is None:
            problems.append(f"by_text returned {len(hits)} hits for {text!r}")

    def over_http(text: str) -> None:
        t0 = time.perf_counter()
        response = client.post("/search", json={"query": text, "k": k})
        body = response.json()
        times["http"].append(time.perf_counter() - t0)
        if response.status_code != 200 or len(body.get("results", ())) != k:
            problems.append(f"POST /search: {response.status_code} {response.text[:200]}")
        else:
            times["http_server"].append(body["took_ms"] / 1000)

    steps: list[Callable[[str], None]] = [encode, cli] + ([over_http] if http else [])
    try:
        for i, text in enumerate(texts):
            order = steps[i % len(steps) :] + steps[: i % len(steps)]  # rotate: no path always goes first
            for step in order:
                step(text)
            if i + 1 == warmup:
                for series in times.values():
                    series.clear()
            if (i + 1) % 50 == 0:
                log(f"  {i + 1}/{len(texts)} queries")
    finally:
        if client is not None:
            client.close()
        if server is not None:
            stop_server(server)
        library.close()
    if problems:
        raise SystemExit(f"{len(problems)} bad results, e.g. {problems[:3]}")
    result = {
        "index": describe_index(vectors),
        "vectors": len(vectors),
        "queries_timed": len(times["encoder"]),
    }
    for name, series in times.items():
        if series:
            result[name] = summary([t * 1000 for t in series])
    baseline = result["encoder"]["p50_ms"] + result["faiss"]["p50_ms"]
    result["baseline_ms"] = baseline
    for path in ("cli", "http"):
        if path in result:
            result[path]["p50_ratio"] = result[path]["p50_ms"] / baseline
    return result


def describe_index(vectors) -> str:
    """The FAISS index searched, e.g. 'IDMap2,Flat' (VectorIndex.describe where it exists)."""
    describe = getattr(vectors, "describe", None)
    if describe is not None:
        facts = describe()
        params = ",".join(f"{k}={v}" for k, v in sorted(facts.params.items()))
        text = f"{facts.factory}{f' ({params})' if params else ''}"
        if facts.delta_vectors:
            text += f" + {facts.delta_vectors} in delta"
        return text
    names, index = [], getattr(vectors, "index", None)
    while index is not None:
        index = faiss.downcast_index(index)
        names.append(type(index).__name__)
        index = getattr(index, "index", None)
    return " > ".join(names) or type(vectors).__name__


# ---- report --------------------------------------------------------------------------------------
def report(config: dict, results: list[dict]) -> None:
    print(f"# Query latency ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})\n")
    machine = config["machine"]
    print(
        f"{machine['cpu']} ({machine['cores']} cores, native bf16: {machine['native_bf16']}), torch "
        f"{machine['torch']} ({machine['torch_threads']} threads); load average at start / end: "
        f"{config['load_start']} / {config['load_end']}; k={config['k']}, "
        f"{config['queries']} queries per path ({config['warmup']} warm-up not counted).\n"
    )
    print(
        "| vectors | precision | FAISS index | encoder p50 | FAISS p50 | baseline sum | path | p50 ms "
        "| p99 ms | p50 / baseline |"
    )
    print("|---:|---|---|---:|---:|---:|---|---:|---:|---:|")
    for row in results:
        m, size = row["measured"], size_label(row["size"])
        for path, label in (("cli", "CLI in-process"), ("http", "HTTP, 1 client")):
            if path not in m:
                continue
            print(
                f"| {size} | {row['precision']} | {m['index']} | {m['encoder']['p50_ms']:.1f} "
                f"| {m['faiss']['p50_ms']:.2f} | {m['baseline_ms']:.1f} | {label} | {m[path]['p50_ms']:.1f} "
                f"| {m[path]['p99_ms']:.1f} | {m[path]['p50_ratio']:.2f}x |"
            )
    print(json.dumps({"benchmark": "query_latency", **config, "results": results}))


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", default="10k,100k,1M", type=lambda s: [parse_size(x) for x in s.split(",")],
        help="collection sizes (default 10k,100k,1M)",
    )  # fmt: skip
    parser.add_argument("--precisions", default="auto", type=lambda s: s.split(","), help="e.g. auto,fp32")
    parser.add_argument("--queries", type=int, default=300, help="timed queries per path and size")
    parser.add_argument("--warmup", type=int, default=10, help="queries run first and not counted")
    parser.add_argument("-k", type=int, default=10, help="results per query (default 10, as pixseek search)")
    parser.add_argument("--paths", default="cli,http", type=lambda s: s.split(","), help="cli,http or cli")
    parser.add_argument("--quick", action="store_true", help="10k and 100k, 60 queries: a few minutes")
    parser.add_argument(
        "--rebuild-index", action="store_true",
        help="rebuild the cached collections' FAISS indexes with Library.rebuild_vectors first "
        "(the index kind then follows the current pixseek; the SQL rows are kept)",
    )  # fmt: skip
    parser.add_argument("--work-dir", type=Path, default=DEFAULT_WORK_DIR)
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes = [s for s in args.sizes if s <= 100_000] or [10_000]
        args.queries = min(args.queries, 60)
    if set(args.paths) - {"cli", "http"} or "cli" not in args.paths:
        parser.error("--paths: cli or cli,http")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks: stop the server
    work_dir = args.work_dir.resolve()
    load_start = load_average()
    checkpoint = ensure_checkpoint(work_dir)
    probe = load_encoder(str(checkpoint), device="cpu", precision="fp32")
    identity = {
        "model_id": probe.model_id,
        "fingerprint": probe.fingerprint,
        "dim": probe.dim,
        "precision": resolve_precision("auto", probe.device),
    }
    del probe
    if identity["dim"] != DIM:
        raise SystemExit(f"the checkpoint embeds into {identity['dim']}-d, the benchmark generates {DIM}-d")
    texts = query_texts(args.warmup + args.queries)
    results = []
    for size in args.sizes:
        data_dir = ensure_collection(work_dir, size, checkpoint, identity)
        if args.rebuild_index:
            rebuild_index(data_dir, checkpoint)
        for precision in args.precisions:
            resolved = resolve_precision(precision, torch.device("cpu"))
            log(f"{size_label(size)} vectors, precision {precision} ({resolved}): {len(texts)} queries")
            measured = measure(
                data_dir, checkpoint, precision, args.k, texts, args.warmup, "http" in args.paths
            )
            results.append({"size": size, "precision": resolved, "measured": measured})
            for path in ("cli", "http"):
                if path in measured:
                    m = measured[path]
                    log(
                        f"  {path}: p50 {m['p50_ms']:.1f} ms, p99 {m['p99_ms']:.1f} ms, "
                        f"{m['p50_ratio']:.2f}x the baseline {measured['baseline_ms']:.1f} ms"
                    )
    config = {
        "machine": machine_info(),
        "load_start": load_start,
        "load_end": load_average(),
        "k": args.k,
        "queries": args.queries,
        "warmup": args.warmup,
        "quick": args.quick,
    }
    report(config, results)


if __name__ == "__main__":
    main()
