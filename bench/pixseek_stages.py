"""Where pixseek's indexing time goes, stage by stage, and the compute bound it is measured against
(issue 17; bench_peers.py prints this after the side-by-side table).

Per image, on one thread with nothing else running: reading the file (page cache), the content
hash, the JPEG decode (drafted to the model's size), the perceptual hash, the image transform, and
``Indexer._prepare`` (all of these plus EXIF and the SQL look-up by hash: one decode worker's cost).
Then the image tower as pixseek runs it (batches of 32, every core) and the SQL + FAISS write of
those batches (``Store.apply`` + ``VectorIndex.update``, the main thread between batches).

The compute bound is what the cores could do if nothing else were spent: the per-image CPU time of
the worker stages plus the model's (its wall time x the cores it uses), spread over the cores. The
issue's bound counts decode + model only; the one with the SQL write is stated next to it.

The parity of the tower pixseek runs against transformers' ``get_image_features`` in fp32 on the
same pixels is measured here too, on the full-size model: max |difference| of normalised vectors
for fp32, minimum cosine for bf16.
"""

from __future__ import annotations

import io
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from bench_indexing import _mean_ms, fresh_library, photo_paths
from PIL import Image

from common import log
from pixseek.embedding import load_encoder
from pixseek.indexer.walker import walk_images
from pixseek.media.decode import decode_image
from pixseek.media.hashing import content_hash
from pixseek.media.perceptual import perceptual_hash
from pixseek.store.records import ChangeBatch, FileFacts

BATCH = 32


def _batches(array: np.ndarray) -> list[np.ndarray]:
    return [array[start : start + BATCH] for start in range(0, len(array), BATCH)]


def profile_set(
    folder: Path, work_dir: Path, checkpoint: Path, precision: str, cache_dir: Path
) -> dict[str, Any]:
    """The stages of one image set with the encoder ``pixseek index`` uses (cached tower)."""
    paths = photo_paths(folder)
    encoder = load_encoder(
        str(checkpoint), device="cpu", precision=precision, runtime="auto", cache_dir=cache_dir
    )
    cores = len(os.sched_getaffinity(0))
    stages: list[dict[str, Any]] = []

    def add(stage: str, ms: float, note: str = "") -> None:
        stages.append({"stage": stage, "ms_per_image": ms, "note": note})
        log(f"stages {folder.name}: {stage}: {ms:.2f} ms/image")

    read_ms, blobs = _mean_ms(lambda path: path.read_bytes(), paths)
    add("read file (page cache)", read_ms)
    add("content hash (sha256)", _mean_ms(content_hash, blobs)[0])
    decode_ms, decoded = _mean_ms(lambda data: decode_image(data, min_side=encoder.image_min_side), blobs)
    width, height = decoded[0].image.size
    add("decode (JPEG draft)", decode_ms, f"to {width}x{height}")
    add("perceptual hash", _mean_ms(lambda d: perceptual_hash(d.image), decoded)[0])
    transform_ms, pixels = _mean_ms(lambda d: encoder.preprocess_image(d.image), decoded)
    add("image transform", transform_ms)

    with fresh_library(work_dir, checkpoint, precision, BATCH, 1) as library:
        indexer = library.indexer(encoder)
        entries = list(walk_images([folder]))
        prepare_ms, _ = _mean_ms(indexer._prepare, entries)
        add("Indexer._prepare (one worker, all of the above + EXIF + SQL look-up)", prepare_ms)

        stacked = np.stack(pixels)
        encoder.embed_pixels(stacked[:BATCH])  # warm-up: the first call compiles for the shape
        started = time.perf_counter()
        vectors = np.concatenate([encoder.embed_pixels(batch) for batch in _batches(stacked)])
        model_ms = (time.perf_counter() - started) * 1000 / len(stacked)
        add(f"image tower ({encoder.runtime}), batches of {BATCH}, {cores} cores", model_ms, "wall time")

        collection = indexer.collection
        vector_index = library.vectors(collection)
        started = time.perf_counter()
        for start in range(0, len(paths), BATCH):
            batch = ChangeBatch()
            for offset, path in enumerate(paths[start : start + BATCH]):
                blob = blobs[start + offset]
                facts = FileFacts(path=str(path), size=len(blob), mtime_ns=0, content_hash=content_hash(blob))
                batch.indexed.append((facts, vectors[start + offset]))
            changes = library.store.apply(collection.id, batch)
            vector_index.update(
                changes.added_ids, changes.added_vectors, changes.removed_ids, changes.generation
            )
        write_ms = (time.perf_counter() - started) * 1000 / len(paths)
        add("SQL + FAISS write (Store.apply + VectorIndex.update)", write_ms, f"batches of {BATCH}")

    decode_core_ms = prepare_ms
    model_core_ms = model_ms * cores
    bound = cores * 1000 / (decode_core_ms + model_core_ms)
    bound_with_write = cores * 1000 / (decode_core_ms + model_core_ms + write_ms)
    return {
        "set": folder.name,
        "images": len(paths),
        "cores": cores,
        "runtime": encoder.runtime,
        "stages": stages,
        "bound_images_per_s": bound,
        "bound_with_write_images_per_s": bound_with_write,
        "model_alone_images_per_s": 1000 / model_ms,
    }


def parity(checkpoint: Path, folder: Path, cache_dir: Path) -> dict[str, float]:
    """pixseek's tower (fp32 and bf16) against transformers' fp32 reference on real pixels."""
    reference = load_encoder(str(checkpoint), device="cpu", precision="fp32", runtime="torch")
    images = []
    for path in photo_paths(folder)[:BATCH]:
        image = Image.open(io.BytesIO(path.read_bytes()))
        image.draft("RGB", (reference.image_min_side, reference.image_min_side))
        images.append(image.convert("RGB"))
    pixels = np.stack([reference.preprocess_image(image) for image in images])
    expected = reference.embed_pixels(pixels)
    out: dict[str, float] = {}
    for precision in ("fp32", "bf16"):
        encoder = load_encoder(
            str(checkpoint), device="cpu", precision=precision, runtime="auto", cache_dir=cache_dir
        )
        got = encoder.embed_pixels(pixels)
        out[f"{precision}_max_abs_diff"] = float(np.abs(got - expected).max())
        out[f"{precision}_min_cosine"] = float((got * expected).sum(axis=1).min())
        out[f"{precision}_runtime"] = encoder.runtime  # type: ignore[assignment]
    log(f"parity against transformers fp32: {out}")
    return out
