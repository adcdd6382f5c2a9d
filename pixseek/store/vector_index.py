"""The FAISS index of one collection: derived from SQL, saved atomically, reconciled on open.

Two parts, like the segments of a search engine:

* the **base**, a trained index of a snapshot (exact ``Flat`` for small collections, ``IVF`` or
  ``IVF-PQ`` with exact re-ranking for large ones, ``HNSW`` on request: see
  :mod:`pixseek.store.ann.plan`), never written once built, hence memory-mapped read-only and
  shared by every process that opens it;
* the **delta**, an exact in-memory index of the vectors added since, and **tombstones**, the base
  ids removed since, masked at search time.

Searches query both and merge the top k. When the delta or the tombstones grow past a share of the
base, or the collection outgrows what the base was trained for, a new base is built from the stored
embeddings (in a background thread for long-running processes) and swapped in atomically: changes
that arrived meanwhile are carried over by comparing id sets, never lost.

On disk a collection's index is a folder (:mod:`pixseek.store.index_folder`): every file is written
under a fresh name and published by rewriting ``manifest.json``, so a reader or a crash never sees a
half-written index. The manifest records the store generation it reflects; when SQL has moved on,
the index catches up from SQL.

Several processes on one collection (``pixseek serve --workers N``): one writes (indexes, saves,
rebuilds the base); the others set :attr:`VectorIndex.writes_allowed` so that they never save or
rebuild, and :meth:`VectorIndex.follow` SQL: the changes past their generation from the change log
(:mod:`pixseek.store.change_log`), and the writer's new base, memory-mapped, once it publishes one.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import faiss
import numpy as np

from pixseek.store import index_folder
from pixseek.store.ann.base import BaseIndex, SearchParams, gpu_count
from pixseek.store.ann.delta import delta_ids, delta_vectors, new_delta
from pixseek.store.ann.plan import IndexPlan, choose_plan, nlist_for
from pixseek.store.ann.source import StoreVectors, VectorSource
from pixseek.store.ann.topk import merge_top_k
from pixseek.store.ann.tuning import tune
from pixseek.store.index_options import IndexOptions
from pixseek.store.records import IndexDescription
from pixseek.vocabulary import IndexKind

if TYPE_CHECKING:
    from pixseek.store.records import CollectionInfo
    from pixseek.store.repository import Store

log = logging.getLogger(__name__)

__all__ = ["VectorIndex", "gpu_count"]

# Batches of >= 2 queries take FAISS's BLAS path (a matrix product) instead of one scan per query:
# the default threshold of 20 left batches of 16 at a quarter of the BLAS speed (project notes).
faiss.cvar.distance_compute_blas_threshold = 2
_NO_IDS = np.empty(0, dtype=np.int64)


class VectorIndex:
    """Thread-safe: searches and updates may come from different threads (API, watcher)."""

    # Whether this process may save an index and rebuild a base (None: it may). A server worker
    # that does not hold the writer lock says no: its index follows SQL and the writer's files.
    writes_allowed: ClassVar[Callable[[], bool] | None] = None
    # Set on the index of a collection this process builds (pixseek.service.collections): no other
    # process writes a collection still being built, so a reader worker's build saves it too.
    builds_here: bool = False

    def __init__(
        self,
        dim: int,
        *,
        source: VectorSource | None = None,
        options: IndexOptions | None = None,
        generation: int = -1,
    ):
        self.dim = dim
        self.source = source  # the stored vectors: for (re)builds and exact re-ranking
        self.options = options or IndexOptions()
        self.generation = generation
        self.base: BaseIndex | None = None
        self.delta = new_delta(dim)
        self.tombstones = _NO_IDS  # sorted base ids removed since the base was built
        self.path: Path | None = None  # the folder this index was loaded from or saved to
        self._base_files: dict | None = None  # the base's file names once written
        self._lock = threading.RLock()
        self._maintenance: threading.Thread | None = None
        self.last_maintenance_error: str | None = None
        self._manifest_seen: int | None = None  # follow(): the manifest's mtime last looked at

    # ---- sizes -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return (len(self.base) if self.base else 0) - len(self.tombstones) + int(self.delta.ntotal)

    def ids(self) -> np.ndarray:
        with self._lock:
            base = self.base.ids[~np.isin(self.base.ids, self.tombstones)] if self.base else _NO_IDS
            return np.concatenate([np.asarray(base), delta_ids(self.delta)])

    def describe(self) -> IndexDescription:
        """What `pixseek status`, `reindex` and the API report about the index."""
        with self._lock:
            base = self.base
            return IndexDescription(
                type=base.plan.kind if base else IndexKind.FLAT,
                factory=base.plan.factory_key() if base else "IDMap2,Flat",
                vectors=len(self),
                base_vectors=len(base) if base else 0,
                delta_vectors=int(self.delta.ntotal),
                tombstones=len(self.tombstones),
                params=base.params.overridden_by(self.options.overrides).to_json() if base else {},
                measured_recall=base.measured_recall if base else 1.0,
                recall_target=self.options.recall_target,
                bytes_per_vector=base.plan.bytes_per_vector(self.dim) if base else 4 * self.dim + 16,
                gpus=gpu_count(),
                maintenance_running=bool(self._maintenance and self._maintenance.is_alive()),
                last_maintenance_error=self.last_maintenance_error,
            )

    def reconstruct(self, image_id: int) -> np.ndarray:
        """The indexed vector of ``image_id`` (delta, or a base kind that keeps raw vectors)."""
        with self._lock:
            if image_id in set(delta_ids(self.delta).tolist()):
                return self.delta.reconstruct(int(image_id))
            vector = self.base.reconstruct(image_id) if self.base else None
            if vector is None or image_id in set(self.tombstones.tolist()):
                raise KeyError(image_id)
            return vector

    # ---- updates -----------------------------------------------------------------------------
    def update(
        self, added_ids: np.ndarray, added_vectors: np.ndarray, removed_ids: np.ndarray, generation: int
    ) -> None:
        """Mirror one applied SQL batch: removals leave the delta or become base tombstones, new
        vectors go to the delta. Added ids are new: SQL never reuses a row id (autoincrement)."""
        removed_ids = np.ascontiguousarray(removed_ids, dtype=np.int64)
        with self._lock:
            if len(removed_ids):
                self.delta.remove_ids(removed_ids)
                if self.base is not None:
                    in_base = removed_ids[self.base.contains(removed_ids)]
                    self.tombstones = np.union1d(self.tombstones, in_base)
            if len(added_ids):
                self.delta.add_with_ids(
                    np.ascontiguousarray(added_vectors, dtype=np.float32),
                    np.ascontiguousarray(added_ids, dtype=np.int64),
                )
            self.generation = generation

    def reconcile(self, store: Store, collection: CollectionInfo) -> tuple[int, int]:
        """Make the index hold exactly the stored embeddings; returns (added, removed) counts."""
        if self.generation == collection.generation:
            return 0, 0
        in_sql = store.indexed_ids(collection.id)
        in_index = self.ids()
        missing = np.setdiff1d(in_sql, in_index)
        stale = np.setdiff1d(in_index, in_sql)
        if len(missing):
            ids, vectors = store.embeddings(missing.tolist(), collection.dim)
        else:
            ids, vectors = missing, np.empty((0, collection.dim), dtype=np.float32)
        self.update(ids, vectors, stale, collection.generation)
        if len(missing) or len(stale):
            log.info(
                "reconciled vector index: +%d from stored embeddings, -%d stale", len(missing), len(stale)
            )
        return len(missing), len(stale)

    def _may_write(self) -> bool:
        allowed = VectorIndex.writes_allowed
        return self.builds_here or allowed is None or allowed()

    def follow(self, store: Store, collection: CollectionInfo) -> tuple[int, int]:
        """A reading process's catch-up with the writer, cheap when nothing changed (one SQL
        query and a stat): take up the base the writer published if it is new, then apply the
        changes past this index's generation from the change log, or compare id sets when the log
        does not reach back that far. Returns (added, removed) counts."""
        self._take_new_base(collection.dim)
        current = store.generation(collection.id)
        if current is None or current == self.generation:
            return 0, 0
        since = self.generation  # behind SQL by the log, or not comparable (-1; a recreated collection)
        changes = store.changes_since(collection.id, since, current) if 0 <= since < current else None
        if changes is None:
            return self.reconcile(store, dataclasses.replace(collection, generation=current))
        if len(changes.added):
            ids, vectors = store.embeddings(changes.added.tolist(), collection.dim)
        else:
            ids, vectors = changes.added, np.empty((0, collection.dim), dtype=np.float32)
        with self._lock:
            if self.generation != changes.since:  # a reload or another catch-up ran meanwhile
                return 0, 0
            # Idempotent: an id-set comparison (on open, or above) may already have seen the
            # newest rows while it recorded the generation read before them.
            present = np.isin(ids, delta_ids(self.delta))
            if self.base is not None:
                present |= self.base.contains(ids)
            ids, vectors = ids[~present], vectors[~present]
            self.update(ids, vectors, changes.removed, current)
        return len(ids), len(changes.removed)

    def _take_new_base(self, dim: int) -> None:
        """When the writer published a manifest naming another base than the one held: load the
        saved index (its base memory-mapped) in place of this one's parts."""
        if self.path is None:
            return
        manifest = self.path / index_folder.MANIFEST
        try:
            seen = manifest.stat().st_mtime_ns
            if seen == self._manifest_seen:
                return
            named = (json.loads(manifest.read_text()).get("base") or {}).get("index")
        except (OSError, ValueError):
            return  # nothing saved yet, or a manifest being replaced: next time
        self._manifest_seen = seen
        if named == (self._base_files or {}).get("index"):
            return
        try:
            saved = index_folder.read_saved(self.path, dim, mmap=self.options.mmap)
        except (RuntimeError, OSError, ValueError, KeyError) as error:
            log.warning("could not take up the new vector index base in %s (%s)", self.path, error)
            self._manifest_seen = None
            return
        if saved is None:
            return
        delta = new_delta(dim)
        if len(saved.delta_ids):
            delta.add_with_ids(np.ascontiguousarray(saved.delta_vectors), saved.delta_ids)
        with self._lock:
            self.base, self._base_files, self.delta = saved.base, saved.base_files, delta
            self.tombstones, self.generation = saved.tombstones, saved.generation
        log.info("took up the vector index base %s (generation %d)", named, saved.generation)

    # ---- (re)building the base -----------------------------------------------------------------
    def planned(self) -> tuple[IndexPlan, str] | None:
        """The base the index should have now and why, or None if the current one is fine."""
        live, options = len(self), self.options
        base = self.base
        wanted = choose_plan(live, self.dim, options.budget(), options.kind)
        if base is None:
            if live < options.merge_min and wanted.kind == "flat":
                return None  # the exact delta alone serves small collections
            return wanted, "first base"
        # Between IVF and IVF-PQ only an explicit budget decides again: the default follows the
        # free memory of the moment, and a rebuild each time it wobbles would be churn.
        flapping = base.plan.trained and wanted.trained and options.memory_budget is None
        if wanted.kind != base.plan.kind and not flapping:
            return wanted, f"collection of {live} vectors now wants {wanted.kind}"
        if flapping:
            wanted = IndexPlan(base.plan.kind, nlist=wanted.nlist, pq_m=base.plan.pq_m)
        if base.plan.trained and nlist_for(live) >= options.regrow_ratio * base.plan.nlist:
            return wanted, f"grown to {live} vectors, trained for {len(base)}"
        threshold = max(options.merge_min, options.merge_ratio * len(base))
        if self.delta.ntotal >= threshold or len(self.tombstones) >= threshold:
            return base.plan, f"{self.delta.ntotal} new and {len(self.tombstones)} removed vectors"
        return None

    def maintain(self, *, wait: bool = False, force: bool = False) -> bool:
        """Start (or, with ``wait``, run to the end) a base rebuild if one is due; True if it ran."""
        if self.source is None or not self._may_write():
            return False
        with self._lock:
            if self._maintenance is not None and self._maintenance.is_alive():
                running = self._maintenance
            else:
                running = None
                plan = self.planned()
                if plan is None and force:
                    plan = (
                        choose_plan(len(self), self.dim, self.options.budget(), self.options.kind),
                        "asked",
                    )
                if plan is None:
                    return False
                self._maintenance = threading.Thread(
                    target=self._rebuild_logged, args=plan, name="pixseek-index-build", daemon=True
                )
                if self.options.background and not wait:
                    self._maintenance.start()
                    return True
        if running is not None:
            if wait:
                running.join()
                return self.maintain(wait=True, force=False)
            return False
        self._maintenance.run()  # in this thread: a CLI run waits for its index
        return True

    def _rebuild_logged(self, plan: IndexPlan, reason: str) -> None:
        try:
            self.rebuild_base(plan, reason)
            self.last_maintenance_error = None
        except Exception as error:  # the old base keeps serving; the next change retries
            self.last_maintenance_error = f"{type(error).__name__}: {error}"
            log.exception("rebuilding the vector index failed; the current one stays in use")

    def rebuild_base(self, plan: IndexPlan, reason: str = "asked") -> None:
        """Build a new base from the stored vectors, tune it, and swap it in. The index must
        mirror SQL (loaded and reconciled): what it holds is the live set the swap keeps."""
        started = time.perf_counter()
        current = self.base
        template = current.template if current is not None and current.plan == plan else None
        log.info(
            "building %s base (%s)%s", plan.factory_key(), reason, "" if template is None else ", reused"
        )
        new_base = BaseIndex.build(plan, self._source(), template=template)
        tune(new_base, self._source(), self.options.recall_target)
        self._switch(new_base)
        log.info(
            "new %s base of %d vectors in %.1f s",
            plan.factory_key(),
            len(new_base),
            time.perf_counter() - started,
        )
        if self.path is not None:
            self.save(self.path)

    def _source(self) -> VectorSource:
        """The stored vectors a build needs; an index made without them never builds a base."""
        if self.source is None:
            raise RuntimeError("this vector index has no vector source to build a base from")
        return self.source

    def _switch(self, new_base: BaseIndex) -> None:
        """Swap in ``new_base`` and carry over what changed since its snapshot, by id sets: live ids it
        lacks stay in (or join) the delta; ids it has that are no longer live become tombstones."""
        with self._lock:
            live = self.ids()
            in_new = new_base.contains(live)
            carried = live[~in_new]
            in_delta = delta_ids(self.delta)
            from_delta = carried[np.isin(carried, in_delta)]
            vectors = [self.delta.reconstruct_batch(from_delta)] if len(from_delta) else []
            elsewhere = carried[~np.isin(carried, in_delta)]
            if len(elsewhere):  # in the old base only: the snapshot missed them
                found, extra = self._source().by_ids(elsewhere)
                from_delta, vectors = np.concatenate([from_delta, found]), [*vectors, extra]
            delta = new_delta(self.dim)
            if len(from_delta):
                delta.add_with_ids(np.concatenate(vectors).astype(np.float32), from_delta)
            self.base, self.delta = new_base, delta
            self.tombstones = np.setdiff1d(new_base.ids, live)
            self._base_files = None

    @classmethod
    def from_base(
        cls, base: BaseIndex, source: VectorSource, options: IndexOptions | None = None, generation: int = -1
    ) -> VectorIndex:
        """An index whose live set is exactly ``base`` (benchmarks, shards built elsewhere)."""
        index = cls(base.dim, source=source, options=options, generation=generation)
        index.base = base
        return index

    @classmethod
    def rebuild(
        cls, store: Store, collection: CollectionInfo, options: IndexOptions | None = None
    ) -> VectorIndex:
        """A fresh index of everything stored (no model needed), with a base if the size calls for one."""
        source = StoreVectors(store, collection.id, collection.dim)
        fresh = cls(collection.dim, source=source, options=options, generation=collection.generation)
        live = source.ids()
        plan = choose_plan(len(live), collection.dim, fresh.options.budget(), fresh.options.kind)
        if len(live) >= fresh.options.merge_min or fresh.options.kind not in ("auto", "flat"):
            fresh.base = BaseIndex.build(plan, source)
            tune(fresh.base, source, fresh.options.recall_target)
        else:
            for ids, vectors in source.chunks():
                fresh.delta.add_with_ids(vectors, ids)
        return fresh

    # ---- persistence (the files: pixseek.store.index_folder) ---------------------------------------

    @classmethod
    def load(
        cls,
        path: Path,
        dim: int,
        *,
        source: VectorSource | None = None,
        options: IndexOptions | None = None,
    ) -> VectorIndex:
        """Load the saved index; a missing, unreadable or wrong-sized one yields an empty index that
        :meth:`reconcile` fills from SQL. An index in the old one-file layout becomes the delta."""
        index = cls(dim, source=source, options=options)
        index.path = Path(path)
        try:
            saved = index_folder.read_saved(Path(path), dim, mmap=index.options.mmap)
        except (RuntimeError, OSError, ValueError, KeyError) as error:
            log.warning("vector index %s unreadable (%s); rebuilding it from the store", path, error)
            return index
        if saved is not None:
            index.base, index._base_files = saved.base, saved.base_files
            if len(saved.delta_ids):
                index.delta.add_with_ids(np.ascontiguousarray(saved.delta_vectors), saved.delta_ids)
            index.tombstones, index.generation = saved.tombstones, saved.generation
        return index

    def save(self, path: Path) -> None:
        """Write what changed under fresh names, then publish it by replacing the manifest (not in
        a process that :attr:`writes_allowed` forbids: it follows the writer's files instead)."""
        if not self._may_write():
            self.path = Path(path)
            return
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        with self._lock:
            self.path = folder
            tag = index_folder.new_tag()
            if self.base is not None and self._base_files is None:
                self._base_files = index_folder.write_base(folder, self.base, tag)
            delta_name = index_folder.write_delta(
                folder, tag, delta_ids(self.delta), delta_vectors(self.delta), self.tombstones
            )
            manifest = index_folder.publish(
                folder, self.dim, self.generation, delta_name, self.base, self._base_files
            )
            if self.base is not None:
                self._base_files = manifest["base"]
        index_folder.remove_stale(folder, manifest)

    # ---- search ------------------------------------------------------------------------------
    def search(
        self,
        queries: np.ndarray,
        k: int,
        allowed_ids: np.ndarray | None = None,
        params: SearchParams | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k by inner product over base and delta; with ``allowed_ids`` only those ids compete,
        so k results come back whenever k allowed vectors exist (filtering before ranking)."""
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)
        with self._lock:
            total = len(self)
            if allowed_ids is None:
                k = min(k, total) or 1
            elif len(allowed_ids) == 0:
                empty = np.zeros((len(queries), 0))
                return empty.astype(np.float32), empty.astype(np.int64)
            else:
                allowed_ids = np.ascontiguousarray(allowed_ids, dtype=np.int64)
                k = min(k, len(allowed_ids))
            results = []
            if self.base is not None and len(self.base):
                chosen = self.base.params.overridden_by(self.options.overrides).overridden_by(params)
                results.append(
                    self.base.search(
                        queries,
                        k,
                        chosen,
                        allowed=allowed_ids,
                        tombstones=self.tombstones,
                        refine=self.source,
                    )
                )
            if self.delta.ntotal:
                results.append(self._search_delta(queries, k, allowed_ids))
        if not results:
            return np.full((len(queries), k), -np.inf, np.float32), np.full((len(queries), k), -1, np.int64)
        return results[0] if len(results) == 1 else merge_top_k(results, k)

    def _search_delta(self, queries: np.ndarray, k: int, allowed: np.ndarray | None):
        k_delta = min(k, int(self.delta.ntotal))
        if allowed is None:
            scores, ids = self.delta.search(queries, k_delta)
        else:
            selector = faiss.IDSelectorBatch(allowed)
            scores, ids = self.delta.search(queries, k_delta, params=faiss.SearchParameters(sel=selector))
        return scores, ids
