"""Keyword index latency at scale: median ``Store.keyword_search`` time on SQLite FTS5 and PostgreSQL
full-text search over bulk-loaded synthetic OCR-like text, next to the vector search time of a
collection of the same size, measured in the same run.

The text: a vocabulary of 20,000 pronounceable pseudo-words drawn with a Zipf distribution (s=1.1,
as word frequencies in real text), 8 words per image, plus one word unique to each image (an order
number, say). Rows are bulk-loaded (executemany in chunks of 10,000, through the migration's FTS5
triggers and generated tsvector column, then ANALYZE / FTS5 'optimize'), never one at a time.

Queries, each repeated and the median reported, through the store's own API (limit 100, matched
words included, as a search page asks for them):
- rare: an image's unique word (1 match);
- common word: a word in ~4% of the images;
- two words: two mid-frequency words, ANDed;
- phrase: a quoted pair of adjacent words taken from one image's text;
- most common word: the most frequent word (~72% of the images: before the common-word guard,
  every match was scored before the top 100 were cut);
- rare + most common: an image's unique word and the most frequent word, ANDed;
- two common words: the most frequent word and the ~4% one, ANDed (only common words).
Each figure says whether the guard bounded it (``Store.common_keyword_words``); ``--unguarded``
lifts the guard's bound (COMMON_WORD_TEXTS) to measure what the same queries cost without it.
Vectors: synthetic clustered 512-d (bench/common.py), FAISS flat at 100k and IVF (nlist 1024,
nprobe 16) at 1M, single-query latency.

    python bench/bench_keyword.py                       # 100k and 1M, SQLite and PostgreSQL
    python bench/bench_keyword.py --sizes 100000 300000 --backends sqlite
    python bench/bench_keyword.py --sizes 1000000 --no-vector --unguarded --repeats 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import faiss
import numpy as np
from sqlalchemy import create_engine, insert, text

from common import DEFAULT_WORK_DIR, VECTOR_DIM, clustered_vectors, log, machine_info, uptime
from pixseek.store import keyword_queries as guard
from pixseek.store.models import ImageRecord, ImageText
from pixseek.store.repository import Store

POSTGRES_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
VOCABULARY, WORDS_PER_IMAGE, ZIPF_S, CHUNK = 20_000, 8, 1.1, 10_000
_SYLLABLES = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]


def vocabulary(size: int) -> list[str]:
    """Distinct pseudo-words of 2-4 syllables ("kelado"), letters only so both parsers see a word."""
    rng = np.random.default_rng(7)
    words: dict[str, None] = {}
    while len(words) < size:
        syllables = rng.integers(0, len(_SYLLABLES), rng.integers(2, 5))
        words["".join(_SYLLABLES[s] for s in syllables)] = None
    return list(words)


def zipf_ranks(rng: np.random.Generator, size: int, shape: tuple[int, ...]) -> np.ndarray:
    weights = 1.0 / np.arange(1, size + 1) ** ZIPF_S
    return rng.choice(size, size=shape, p=weights / weights.sum())


def texts(count: int, words: list[str]) -> Iterator[list[str]]:
    """Each image's OCR-like words, reproducible; the last one is unique to the image."""
    rng = np.random.default_rng(0)
    for start in range(0, count, CHUNK):
        n = min(CHUNK, count - start)
        ranks = zipf_ranks(rng, len(words), (n, WORDS_PER_IMAGE))
        for offset, row in enumerate(ranks):
            yield [words[r] for r in row] + [f"uniq{start + offset}"]


def bulk_load(
    store: Store, count: int, words: list[str], counted: set[str]
) -> tuple[int, float, list[str], dict[str, int]]:
    """``count`` images with one OCR text each; returns the collection id, seconds, the first
    texts, and how many images hold each word of ``counted``."""
    collection = store.ensure_collection(
        "bench", model_id="bench", fingerprint="bench", dim=VECTOR_DIM, precision="fp32"
    )
    started = time.perf_counter()
    sample: list[str] = []
    holders: dict[str, int] = {}
    now = datetime(2026, 1, 1)
    generator = texts(count, words)
    with store.engine.begin() as connection:
        for start in range(0, count, CHUNK):
            chunk = [next(generator) for _ in range(min(CHUNK, count - start))]
            ids = range(start + 1, start + 1 + len(chunk))
            connection.execute(
                insert(ImageRecord.__table__),
                [
                    {
                        "id": image_id, "collection_id": collection.id, "path": f"/bench/{image_id}.jpg",
                        "size": 1, "mtime_ns": 1, "status": "indexed", "indexed_at": now,
                    }
                    for image_id in ids
                ],
            )  # fmt: skip
            connection.execute(
                insert(ImageText.__table__),
                [
                    {
                        "image_id": image_id,
                        "collection_id": collection.id,
                        "source": "ocr",
                        "text": " ".join(row),
                        "terms": " ".join(row),
                    }
                    for image_id, row in zip(ids, chunk, strict=True)
                ],
            )
            for row in chunk:
                for word in counted.intersection(row):
                    holders[word] = holders.get(word, 0) + 1
            if len(sample) < 100:
                sample.extend(" ".join(row) for row in chunk[:100])
            if start and start % 100_000 == 0:
                log(f"  {start} rows")
    # What a collection looks like once settled: FTS5 segments merged; PostgreSQL's GIN pending
    # list (where fresh rows wait, scanned linearly by every query) flushed, as autovacuum does.
    with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        if connection.dialect.name == "sqlite":
            connection.execute(text("INSERT INTO image_texts_fts(image_texts_fts) VALUES ('optimize')"))
            connection.execute(text("ANALYZE"))
        else:
            connection.execute(text("VACUUM ANALYZE images"))
            connection.execute(text("VACUUM ANALYZE image_texts"))
    return collection.id, time.perf_counter() - started, sample, holders


def median_ms(run: Callable[[], object], repeats: int) -> float:
    run()  # warm: the first query of a kind reads the index pages from disk
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


QUERY_KINDS = (
    "rare word",
    "common word",
    "two words",
    "phrase",
    "most common word",
    "rare + most common",
    "two common words",
)


def keyword_queries(count: int, words: list[str], sample: list[str], repeats: int) -> dict[str, list[str]]:
    rng = np.random.default_rng(1)
    phrase_words = [row.split()[2:4] for row in sample[:repeats]]
    return {
        "rare word": [f"uniq{int(i)}" for i in rng.integers(0, count, repeats)],
        "common word": [words[20]],  # in ~8% of the images
        "two words": [f"{words[40]} {words[80]}"],
        "phrase": [f'"{a} {b}"' for a, b in phrase_words],
        "most common word": [words[0]],  # in ~72% of the images
        "rare + most common": [f"uniq{int(i)} {words[0]}" for i in rng.integers(0, count, repeats)],
        "two common words": [f"{words[0]} {words[20]}"],
    }


def keyword_figures(
    store: Store, collection_id: int, queries: dict[str, list[str]], holders: dict[str, int], repeats: int
) -> dict:
    out = {}
    for name, options in queries.items():
        cycle = iter(options * (repeats + 1))
        hits = len(store.keyword_search(collection_id, options[0], limit=10_000, with_matches=False))
        ms = median_ms(
            lambda cycle=cycle: store.keyword_search(collection_id, next(cycle), limit=100), repeats
        )
        held = holders.get(options[0]) if len(options) == 1 else None
        bounded = store.common_keyword_words(options[0])
        out[name] = {
            "ms": ms, "results_up_to_10k": hits, "images_with_word": held, "query": options[0],
            "bounded_by": bounded,
        }  # fmt: skip
        log(
            f"    {name:18s} {ms:8.2f} ms  ({hits} results (max 10,000) for {options[0]!r}; "
            f"images with it: {held}; guard: {bounded or 'no'}; load: {uptime().split('average:')[-1]})"
        )
    return out


def vector_figures(count: int, repeats: int) -> dict:
    """Single-query latency of FAISS over ``count`` clustered vectors: flat up to 100k, IVF above."""
    faiss.omp_set_num_threads(1)  # one query at a time: threads only contend on a shared machine
    queries = next(clustered_vectors(repeats + 1, seed=99))
    if count <= 100_000:
        index: faiss.Index = faiss.IndexFlatIP(VECTOR_DIM)
        kind = "flat"
    else:
        quantizer = faiss.IndexFlatIP(VECTOR_DIM)
        index = faiss.IndexIVFFlat(quantizer, VECTOR_DIM, 1024, faiss.METRIC_INNER_PRODUCT)
        index.train(next(clustered_vectors(50_000, seed=5)))
        index.nprobe = 16
        kind = "ivf1024,nprobe16"
    started = time.perf_counter()
    for chunk in clustered_vectors(count):
        index.add(chunk)
    built = time.perf_counter() - started
    cycle = iter(list(queries) * 2)
    ms = median_ms(lambda: index.search(next(cycle)[None, :], 10), repeats)
    log(f"    vector {kind:18s} {ms:8.2f} ms  (added in {built:.1f} s)")
    return {"kind": kind, "ms": ms}


def open_backend(backend: str, work: Path, count: int) -> tuple[Store, Callable[[], None]]:
    if backend == "sqlite":
        path = work / f"keyword-{count}-{uuid.uuid4().hex[:8]}.db"
        store = Store.open(f"sqlite:///{path}")

        def cleanup() -> None:
            store.close()
            for suffix in ("", "-wal", "-shm", ".migrate-lock"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)

        return store, cleanup
    name = f"pixseek_bench_kw_{uuid.uuid4().hex[:8]}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    store = Store.open(POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}")

    def drop() -> None:
        store.close()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return store, drop


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--backends", nargs="+", default=["sqlite", "postgresql"])
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--work-dir", type=Path, default=DEFAULT_WORK_DIR)
    parser.add_argument("--no-vector", action="store_true", help="skip the vector search figures")
    parser.add_argument(
        "--unguarded", action="store_true", help="lift the common-word guard (the cost without it)"
    )
    args = parser.parse_args()
    if args.unguarded:
        guard.COMMON_WORD_TEXTS = 10**12
    args.work_dir.mkdir(parents=True, exist_ok=True)
    words = vocabulary(VOCABULARY)
    report: dict = {
        "machine": machine_info(),
        "load_before": uptime(),
        "guard": {
            "common_word_texts": guard.COMMON_WORD_TEXTS,
            "common_word_sample": guard.COMMON_WORD_SAMPLE,
        },
        "results": [],
    }
    log(f"machine: {report['machine']['cpu']}, load: {report['load_before']}")
    for count in args.sizes:
        vector = (
            {"kind": "skipped", "ms": float("nan")} if args.no_vector else vector_figures(count, args.repeats)
        )
        for backend in args.backends:
            log(f"{backend}: bulk-loading {count} rows")
            store, cleanup = open_backend(backend, args.work_dir, count)
            try:
                counted = {words[0], words[20]}
                collection_id, load_s, sample, holders = bulk_load(store, count, words, counted)
                log(f"  loaded in {load_s:.1f} s (load: {uptime()})")
                queries = keyword_queries(count, words, sample, args.repeats)
                figures = keyword_figures(store, collection_id, queries, holders, args.repeats)
            finally:
                cleanup()
            report["results"].append(
                {"rows": count, "backend": backend, "load_s": load_s, "keyword": figures, "vector": vector}
            )
    report["load_after"] = uptime()
    print(json.dumps(report, indent=2))
    print_table(report)


def print_table(report: dict) -> None:
    log("| rows | backend | bulk load | " + " | ".join(QUERY_KINDS) + " | vector search (1 thread) |")
    for row in report["results"]:
        k = row["keyword"]
        log(
            f"| {row['rows']:,} | {row['backend']} | {row['load_s']:.0f} s | "
            + " | ".join(f"{k[name]['ms']:.1f} ms" for name in QUERY_KINDS)
            + f" | {row['vector']['ms']:.2f} ms ({row['vector']['kind']}) |"
        )


if __name__ == "__main__":
    main()
