"""``pixseek index --ray``: the local indexer's rules, with reading, decoding and the model on Ray actors.

The driver does what it does locally: walk the folders, compare them with the store (unchanged files
are skipped without being read), then store each batch in one transaction and mirror it in the
FAISS index (:class:`pixseek.indexer.pipeline.Indexer`, whose planning, batching, reuse, sweep and
save this class inherits). Only the preparation of the files that need work moves: Ray Data sends
their *paths* to a fixed pool of actors (``map_batches`` with ``ActorPoolStrategy``); each actor
loads the model once, reads the files from shared storage, hashes them, asks the store whether an
indexed image has the same content (then no model call: the driver moves or copies its vector) and
otherwise decodes with pixseek's decoder and embeds. Pixels never cross the network; vectors (2 kB
each at 512-d) and file facts come back, in input order, so ids are assigned as locally.

Because the driver owns every write, a run is idempotent and resumable exactly like a local one:
an interrupted run keeps its committed batches, and the next run skips them as unchanged.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import pickle
import re
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pixseek.distributed import connect
from pixseek.errors import PixseekError
from pixseek.indexer.pipeline import Indexer
from pixseek.indexer.preparation import PreparedFile, prepare_file
from pixseek.indexer.walker import FileEntry
from pixseek.media.decode import DEFAULT_MAX_PIXELS
from pixseek.media.files import DEFAULT_MAX_FILE_BYTES, FileOpener

if TYPE_CHECKING:
    from pixseek.embedding import Encoder
    from pixseek.indexer.text_reading import TextReader
    from pixseek.library import Library
    from pixseek.service.text_reading import OcrChoice
    from pixseek.store.records import CollectionInfo
    from pixseek.store.repository import Store
    from pixseek.store.vector_index import VectorIndex

log = logging.getLogger(__name__)

# CPUs reserved per actor on a cluster without GPUs: torch's intra-op threads for one model. Four
# fit on any worker node we expect; more actors of this size beat one actor with many threads,
# because decoding and the model then overlap across actors.
CPUS_PER_CPU_ACTOR = 4


@dataclass(frozen=True)
class ActorPlan:
    """How many embedding actors to start and what each one reserves from Ray's scheduler."""

    actors: int
    num_cpus: float
    num_gpus: float


def plan_actors(resources: Mapping[str, float], actors: int | None = None) -> ActorPlan:
    """One actor per GPU when the cluster has GPUs (each reserves one GPU); otherwise one per
    ``CPUS_PER_CPU_ACTOR`` CPUs. ``actors`` overrides the count; CPU actors then share the CPUs."""
    if actors is not None and actors < 1:
        raise PixseekError(f"--ray-actors must be at least 1, got {actors}")
    gpus = int(resources.get("GPU", 0))
    cpus = max(1, int(resources.get("CPU", 1)))
    if gpus:
        return ActorPlan(actors or gpus, num_cpus=1, num_gpus=1)
    count = actors or max(1, cpus // CPUS_PER_CPU_ACTOR)
    return ActorPlan(count, num_cpus=max(1, min(CPUS_PER_CPU_ACTOR, cpus // count)), num_gpus=0)


@dataclass(frozen=True)
class WorkerSpec:
    """Everything an actor needs to prepare and embed files on its own node (sent once per actor)."""

    model: str
    device: str
    precision: str
    database_url: str
    collection_id: int
    fingerprint: str
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    decode_threads: int = 2
    torch_threads: int = 0  # 0: leave torch's default (Ray sets OMP_NUM_THREADS from num_cpus)


class EmbedWorker:
    """A Ray Data actor: one model and one store connection, loaded once in ``__init__``.

    Called with a batch of ``path``/``size``/``mtime_ns`` columns, it returns one pickled
    :class:`PreparedFile` per row (``vector`` set, ``pixels`` dropped). A file that cannot be read or
    decoded comes back with its reason, like in the local pipeline: a corrupt image fails alone.
    """

    def __init__(self, spec: WorkerSpec):
        import transformers

        from pixseek.embedding import load_encoder
        from pixseek.store.database import create_store_engine
        from pixseek.store.repository import Store

        transformers.utils.logging.set_verbosity_error()  # as in the CLI: no loading chatter per actor
        transformers.utils.logging.disable_progress_bar()
        if spec.torch_threads:
            import torch

            torch.set_num_threads(spec.torch_threads)
        self.encoder = load_encoder(spec.model, device=spec.device, precision=spec.precision)
        if self.encoder.fingerprint != spec.fingerprint:
            # Another checkpoint under the same name on this node: its vectors would not be comparable.
            raise PixseekError(
                f"model {spec.model!r} on this Ray node has fingerprint {self.encoder.fingerprint}, the "
                f"collection's is {spec.fingerprint}: every node must see the same checkpoint"
            )
        # The driver has migrated the schema already; a plain engine avoids N actors racing to check.
        self.store = Store(create_store_engine(spec.database_url))
        self.spec = spec
        self.pool = ThreadPoolExecutor(max(1, spec.decode_threads), thread_name_prefix="pixseek-decode")
        self.opener = FileOpener(max_bytes=spec.max_file_bytes)

    def _prepare(self, entry: FileEntry) -> PreparedFile:
        spec = self.spec
        return prepare_file(entry, self.store, spec.collection_id, self.encoder, spec.max_pixels, self.opener)

    def __call__(self, batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        entries = [
            FileEntry(Path(str(path)), int(size), int(mtime_ns))
            for path, size, mtime_ns in zip(batch["path"], batch["size"], batch["mtime_ns"], strict=True)
        ]
        prepared = list(self.pool.map(self._prepare, entries))
        ready = [i for i, item in enumerate(prepared) if item.pixels is not None]
        if ready:
            pixels = [item.pixels for item in prepared if item.pixels is not None]
            vectors = self.encoder.embed_pixels(np.stack(pixels))
            for i, vector in zip(ready, vectors, strict=True):
                prepared[i] = dataclasses.replace(prepared[i], pixels=None, vector=np.array(vector))
        blobs = np.empty(len(prepared), dtype=object)
        blobs[:] = [pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL) for item in prepared]
        return {"prepared": blobs}


class RayIndexer(Indexer):
    """:class:`Indexer` whose files are prepared and embedded by a Ray Data actor pool."""

    def __init__(
        self,
        store: Store,
        collection: CollectionInfo,
        vectors: VectorIndex,
        encoder: Encoder,
        *,
        spec: WorkerSpec,
        plan: ActorPlan,
        batch_size: int = 32,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        save_vectors: Callable[[], None] = lambda: None,
        save_every_seconds: float = 300.0,
        text_reader: TextReader | None = None,
    ):
        # The actors embed without OCR; the collection's OCR (``text_reader``) reads their images
        # afterwards, on this machine, as it reads images indexed before OCR was turned on.
        super().__init__(
            store,
            collection,
            vectors,
            encoder,
            batch_size=batch_size,
            max_pixels=max_pixels,
            save_vectors=save_vectors,
            save_every_seconds=save_every_seconds,
            text_reader=text_reader,
        )
        self.spec = spec
        self.plan = plan

    @contextlib.contextmanager
    def _prepared_files(self, todo: Sequence[FileEntry]) -> Iterator[Iterator[PreparedFile]]:
        if not todo:  # nothing to read: no actor is started, no model is loaded
            yield iter(())
            return
        import ray.data

        context = ray.data.DataContext.get_current()
        # In input order, so the same files get the same ids as a local run (and a slow actor only
        # delays, never reorders, what the driver stores).
        context.execution_options.preserve_order = True
        context.enable_progress_bars = False  # the CLI shows its own progress bar...
        logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # ...and no note on it
        if not log.isEnabledFor(logging.INFO):  # Ray Data's per-run INFO lines only with --verbose
            logging.getLogger("ray.data").setLevel(logging.WARNING)
        rows = [{"path": str(e.path), "size": e.size, "mtime_ns": e.mtime_ns} for e in todo]
        dataset = ray.data.from_items(rows).map_batches(
            EmbedWorker,
            fn_constructor_kwargs={"spec": self.spec},
            batch_size=self.batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=self.plan.actors),
            num_cpus=self.plan.num_cpus,
            num_gpus=self.plan.num_gpus or None,
        )
        with contextlib.closing(_results(dataset)) as stream:  # closed on Ctrl-C: the actors stop
            yield stream


def _results(dataset: Any) -> Generator[PreparedFile, None, None]:
    """The actors' verdicts, one file at a time; closing this generator shuts the execution down, so
    an interrupted run releases its actors (and their CPUs/GPUs) before the next one asks for them."""
    batches = iter(dataset.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=2))
    try:
        for batch in batches:
            for blob in batch["prepared"]:
                yield pickle.loads(blob)
    except Exception as error:
        reason = actor_error_reason(str(error))
        if reason is None:
            raise
        raise PixseekError(f"a Ray actor failed: {reason}") from error
    finally:
        close = getattr(batches, "close", None)
        if close is not None:
            close()


_PIXSEEK_ERROR_LINE = re.compile(r"^\s*pixseek\.[\w.]+(?:Error|Exception): (.+)$", re.MULTILINE)


def actor_error_reason(message: str) -> str | None:
    """The user-facing reason of a pixseek error raised inside an actor (a model path missing on a
    node, another checkpoint there), found in the traceback text Ray wraps it in (an
    ``ActorDiedError`` does not keep the original exception), so the CLI prints one line."""
    found = _PIXSEEK_ERROR_LINE.findall(message)
    return found[-1].strip() if found else None


def ray_indexer(
    library: Library,
    encoder: Encoder,
    *,
    address: str | None = None,
    actors: int | None = None,
    init_options: Mapping[str, Any] | None = None,
    ocr: OcrChoice | None = None,
) -> RayIndexer:
    """The ``--ray`` counterpart of :meth:`Library.indexer`: same collection, index file, OCR and
    saving."""
    ray = connect(address, **(init_options or {}))
    settings = library.settings
    collection = library.ocr_collection(encoder, ocr)
    vectors = library.vectors(collection)
    plan = plan_actors(ray.cluster_resources(), actors)
    database_url = settings.resolved_database_url
    if database_url.startswith("sqlite") and address and len(ray.nodes()) > 1:
        log.warning("SQLite is only safe on one node: every Ray node must reach the same database file")
    spec = WorkerSpec(
        model=encoder.model_id,  # the resolved checkpoint: what the collection's fingerprint belongs to
        device=settings.device,
        precision=settings.precision,
        database_url=database_url,
        collection_id=collection.id,
        fingerprint=collection.model_fingerprint,
        max_file_bytes=settings.max_file_bytes,
        decode_threads=settings.decode_workers,
        torch_threads=0 if plan.num_gpus else int(plan.num_cpus),
    )
    log.info("Ray indexing with %s", plan)
    return RayIndexer(
        library.store,
        collection,
        vectors,
        encoder,
        spec=spec,
        plan=plan,
        batch_size=settings.batch_size,
        save_vectors=lambda: vectors.save(library.index_path(collection)),
        text_reader=library.text_reader(collection),
    )
