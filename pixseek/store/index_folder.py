"""A collection's vector index on disk: the folder, its manifest format and the atomic writes.

``manifest.json`` names the current base files and the delta file; every file is written under a
fresh name and published by rewriting the manifest (temp file, fsync, rename), so a reader or a
crash never sees a half-written index, and a process that has the old base memory-mapped keeps a
valid file. Kept apart from :class:`pixseek.store.vector_index.VectorIndex`, which searches and
updates the index in memory and only asks this module to read or write what it holds.
"""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from pixseek.store.ann.base import BaseIndex, SearchParams
from pixseek.store.ann.delta import delta_ids, delta_vectors
from pixseek.store.ann.plan import IndexPlan
from pixseek.store.records import SavedIndexSummary
from pixseek.vocabulary import IndexKind

FORMAT = 2
MANIFEST = "manifest.json"
_NO_IDS = np.empty(0, dtype=np.int64)


@dataclass(frozen=True)
class SavedIndex:
    """What a saved index holds, read back: the base (with its manifest entry), the delta's ids and
    vectors, the tombstones and the store generation it reflects."""

    generation: int
    base: BaseIndex | None
    base_files: dict | None  # the base's manifest entry
    delta_ids: np.ndarray
    delta_vectors: np.ndarray
    tombstones: np.ndarray


def write_atomically(path: Path, write: Callable[[str], object]) -> None:
    """Write to a temp file in the same folder, fsync, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def describe_saved(folder: Path) -> SavedIndexSummary:
    """What ``pixseek status`` shows of a saved index, from its manifest alone (no FAISS load):
    type, factory string, tuned parameters, measured recall and bytes on disk."""
    manifest = folder / MANIFEST
    base = json.loads(manifest.read_text()).get("base") if manifest.exists() else None
    plan = IndexPlan.from_json(base["plan"]) if base else IndexPlan(IndexKind.FLAT)
    files = [path for path in folder.iterdir() if path.is_file()] if folder.is_dir() else []
    return SavedIndexSummary(
        type=plan.kind,
        factory=plan.factory_key(),
        params=base.get("params", {}) if base else {},
        measured_recall=base.get("measured_recall") if base else 1.0,
        bytes=sum(path.stat().st_size for path in files),
    )


def legacy_paths(path: Path) -> tuple[Path, Path]:
    """Where pixseek before the segmented layout kept the index (one Flat file + sidecar)."""
    old = path.with_name(path.name + ".faiss")
    return old, old.with_name(old.name + ".json")


# ---- reading -----------------------------------------------------------------------------------
def read_saved(folder: Path, dim: int, *, mmap: bool) -> SavedIndex | None:
    """The index saved in ``folder``, or in the old one-file layout beside it; None when nothing is
    saved. Raises (RuntimeError, OSError, ValueError, KeyError) for an unreadable or wrong-sized
    index."""
    if not (folder / MANIFEST).exists():
        return _read_legacy(folder, dim)
    attempts = 3  # a writer may publish a new manifest while this one is read
    while True:
        manifest = json.loads((folder / MANIFEST).read_text())
        if manifest.get("format") != FORMAT or manifest.get("dim") != dim:
            raise ValueError(f"format {manifest.get('format')}, {manifest.get('dim')}-d, not {dim}-d")
        try:
            return _read(folder, manifest, mmap)
        except FileNotFoundError:
            attempts -= 1
            if not attempts:
                raise


def _read(folder: Path, manifest: dict, mmap: bool) -> SavedIndex:
    base = manifest.get("base")
    base_index = None
    if base:
        plan = IndexPlan.from_json(base["plan"])
        params = SearchParams(**base.get("params", {}))
        template = folder / base["template"] if base.get("template") else None
        base_index = BaseIndex.read(
            folder / base["index"], folder / base["ids"], template, plan, params, mmap=mmap
        )
        base_index.measured_recall = base.get("measured_recall")
    with np.load(folder / manifest["delta"]) as delta:
        ids, vectors, tombstones = delta["ids"], delta["vectors"], np.sort(delta["tombstones"])
    generation = int(manifest.get("generation", -1))
    return SavedIndex(generation, base_index, base or None, ids, vectors, tombstones)


def _read_legacy(path: Path, dim: int) -> SavedIndex | None:
    old, meta = legacy_paths(path)
    if not old.exists():
        return None
    legacy = faiss.read_index(str(old))
    if legacy.d != dim:
        raise ValueError(f"{old} is {legacy.d}-d")
    ids, vectors = delta_ids(legacy), delta_vectors(legacy)
    generation = int(json.loads(meta.read_text()).get("generation", -1)) if meta.exists() else -1
    return SavedIndex(generation, None, None, ids, vectors, _NO_IDS)


# ---- writing -----------------------------------------------------------------------------------
def new_tag() -> str:
    """The fresh part of the names of one save's files."""
    return uuid.uuid4().hex[:12]


def write_base(folder: Path, base: BaseIndex, tag: str) -> dict:
    """Write ``base`` under fresh names; returns their names (its manifest entry's files)."""
    template = f"base-{tag}.trained.faiss" if base.template else None
    files: dict = {
        "index": f"base-{tag}.faiss",
        "ids": f"base-{tag}.ids.npy",
        "template": template,
    }
    base.write(folder / files["index"], folder / files["ids"], folder / template if template else None)
    return files


def write_delta(folder: Path, tag: str, ids: np.ndarray, vectors: np.ndarray, tombstones: np.ndarray) -> str:
    """Write the delta and the tombstones under a fresh name; returns it."""
    name = f"delta-{tag}.npz"

    def write(tmp: str) -> None:
        with open(tmp, "wb") as handle:
            np.savez(handle, ids=ids, vectors=vectors, tombstones=tombstones)

    write_atomically(folder / name, write)
    return name


def publish(
    folder: Path, dim: int, generation: int, delta_name: str, base: BaseIndex | None, base_files: dict | None
) -> dict:
    """Replace the manifest by one naming ``delta_name`` and the written ``base_files``; returns it."""
    manifest: dict = {
        "format": FORMAT,
        "dim": dim,
        "generation": generation,
        "delta": delta_name,
    }
    if base is not None:
        written = base_files or {}
        manifest["base"] = {
            **{k: v for k, v in written.items() if k in ("index", "ids", "template")},
            "plan": base.plan.to_json(),
            "params": base.params.to_json(),
            "measured_recall": base.measured_recall,
            "vectors": len(base),
        }
    text = json.dumps(manifest, indent=1)
    write_atomically(folder / MANIFEST, lambda tmp: Path(tmp).write_text(text))
    return manifest


def remove_stale(folder: Path, manifest: dict) -> None:
    """Delete the files ``manifest`` no longer names, and the old one-file layout beside the folder.
    A mapped file stays valid for its readers after unlink."""
    referenced = {
        MANIFEST,
        manifest["delta"],
        *(v for v in (manifest.get("base") or {}).values() if isinstance(v, str)),
    }
    for stale in folder.iterdir():
        if stale.name not in referenced and not stale.name.startswith("."):
            stale.unlink(missing_ok=True)
    for legacy in legacy_paths(folder):
        legacy.unlink(missing_ok=True)
