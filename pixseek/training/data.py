"""Training pairs from a caption set: which images are usable, which pairs form each step's batch,
and the tensors for one batch.

Batches hold distinct images, each with one of its captions drawn at random: two captions of the
same image in one batch would be each other's negatives, a contradiction the CLIP loss cannot
resolve. The order of step ``s`` depends only on ``(seed, s)``, so a resumed run sees exactly the
batches an uninterrupted one would have.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pixseek.evaluation.dataset import CaptionSet
from pixseek.media.decode import decode_image
from pixseek.media.errors import DecodeError
from pixseek.media.preprocess import preprocess_image

Progress = Callable[[int, int], None]


class ImageLoader:
    """Decode with the project's decoder and pre-process with the checkpoint's image processor,
    keeping results in memory up to ``cache_bytes``: small sets are then decoded once, not per epoch."""

    def __init__(self, image_processor: Any, min_side: int, cache_bytes: int) -> None:
        self.image_processor = image_processor
        self.min_side = min_side
        self.cache_bytes = cache_bytes
        self.cached_bytes = 0
        self._cache: dict[Path, np.ndarray] = {}

    def pixels(self, path: Path) -> np.ndarray:
        """Model-ready pixels; DecodeError for a file that is not (or no longer) a readable image."""
        cached = self._cache.get(path)
        if cached is not None:
            return cached
        try:
            data = path.read_bytes()
        except OSError as error:
            raise DecodeError(f"unreadable ({error.strerror or error})") from None
        pixels = preprocess_image(self.image_processor, decode_image(data, min_side=self.min_side).image)
        if self.cached_bytes + pixels.nbytes <= self.cache_bytes:
            self._cache[path] = pixels
            self.cached_bytes += pixels.nbytes
        return pixels

    def clear(self) -> None:
        self._cache.clear()
        self.cached_bytes = 0


@dataclass
class TrainingSet:
    data: CaptionSet
    usable: np.ndarray  # indices into data.images that decoded when scanned
    captions_of: list[np.ndarray]  # per usable position: indices into data.captions
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (image path, reason)


def scan(
    data: CaptionSet, loader: ImageLoader, *, workers: int | None = None, progress: Progress | None = None
) -> TrainingSet:
    """Decode every image once before training: a corrupt file is reported now and never batched,
    so steps per epoch and the batch order are known (and reproducible) from the start."""
    skipped: list[tuple[str, str]] = []
    usable: list[int] = []

    def check(index: int) -> tuple[int, str | None]:
        try:
            loader.pixels(data.images[index])
        except DecodeError as error:
            return index, error.reason
        return index, None

    # Decoding releases the GIL; the cache dict tolerates concurrent inserts of distinct keys.
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        for done, (index, reason) in enumerate(pool.map(check, range(len(data.images))), 1):
            if reason is None:
                usable.append(index)
            else:
                skipped.append((str(data.images[index]), reason))
            if progress:
                progress(done, len(data.images))
    by_image: dict[int, list[int]] = {}
    for caption, owner in enumerate(data.caption_image.tolist()):
        by_image.setdefault(owner, []).append(caption)
    return TrainingSet(
        data=data,
        usable=np.asarray(usable, dtype=np.int64),
        captions_of=[np.asarray(by_image[i]) for i in usable],
        skipped=skipped,
    )


@dataclass(frozen=True)
class BatchPlan:
    """Which (image, caption) pairs make up optimizer step ``step``'s batch."""

    images: int  # usable images
    batch_size: int  # pairs per optimizer step (all micro-batches together)
    seed: int

    @property
    def steps_per_epoch(self) -> int:
        return self.images // self.batch_size  # the last partial batch is dropped: fewer negatives

    def pairs(self, step: int, training: TrainingSet) -> tuple[np.ndarray, np.ndarray]:
        """(indices into data.images, indices into data.captions) for ``step``."""
        epoch, offset = divmod(step, self.steps_per_epoch)
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(self.images)
        choice = rng.random(self.images)  # one caption per image per epoch
        chosen = order[offset * self.batch_size : (offset + 1) * self.batch_size]
        captions = np.array(
            [training.captions_of[p][int(choice[p] * len(training.captions_of[p]))] for p in chosen]
        )
        return training.usable[chosen], captions


@dataclass(frozen=True)
class Pooled:
    """A locked tower's output for a batch, looked up instead of running the tower (see frozen.py)."""

    features: torch.Tensor

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, rows: slice) -> Pooled:
        return Pooled(self.features[rows])

    def to(self, device: torch.device) -> Pooled:
        return Pooled(self.features.to(device))


ImageInput = torch.Tensor | Pooled  # pixel values, or the locked image tower's output
TextInput = dict[str, torch.Tensor] | Pooled  # tokens, or the locked text tower's output


@dataclass
class Batch:
    images: ImageInput
    texts: TextInput
    skipped: list[tuple[str, str]]

    def __len__(self) -> int:
        return len(self.images)

    def to(self, device: torch.device) -> Batch:
        texts = (
            self.texts.to(device)
            if isinstance(self.texts, Pooled)
            else {k: v.to(device) for k, v in self.texts.items()}
        )
        return Batch(self.images.to(device), texts, self.skipped)

    def chunks(self, count: int) -> list[tuple[ImageInput, TextInput]]:
        """``count`` micro-batches, as equal as possible."""
        bounds = np.linspace(0, len(self), count + 1).astype(int)
        texts = self.texts
        return [
            (
                self.images[a:b],
                texts[a:b] if isinstance(texts, Pooled) else {k: v[a:b] for k, v in texts.items()},
            )
            for a, b in itertools.pairwise(bounds)
            if b > a
        ]


def collate(
    training: TrainingSet,
    image_ids: Sequence[int] | np.ndarray,
    caption_ids: Sequence[int] | np.ndarray,
    loader: ImageLoader,
    tokenizer: Any,
    max_tokens: int,
    frozen_images: dict[int, torch.Tensor] | None = None,
    frozen_texts: torch.Tensor | None = None,
    decode_pool: ThreadPoolExecutor | None = None,
) -> Batch:
    """Tensors for one batch; an image that stopped decoding since the scan leaves the batch (and is
    reported) rather than stopping the run. ``frozen_images`` (by image index) and ``frozen_texts``
    (by caption index) hold locked towers' outputs; ``decode_pool`` decodes uncached images in
    parallel."""

    def load(image_id: int) -> np.ndarray | str:
        try:
            return loader.pixels(training.data.images[image_id])
        except DecodeError as error:
            return error.reason

    ids = [int(i) for i in image_ids]
    loaded: list[Any]  # per image: pixels (or a locked tower's features), or why it failed
    if frozen_images is None:
        loaded = list(decode_pool.map(load, ids) if decode_pool is not None else map(load, ids))
    else:  # an image missing here stopped decoding when the locked tower ran; reported then
        loaded = [frozen_images.get(i, "") for i in ids]
    pixels: list[Any] = []  # decoded arrays, or a locked tower's feature tensors
    kept_images: list[int] = []
    kept_captions: list[int] = []
    skipped: list[tuple[str, str]] = []
    for image_id, caption_id, result in zip(ids, caption_ids, loaded, strict=True):
        if isinstance(result, str):
            if frozen_images is None:
                skipped.append((str(training.data.images[image_id]), result))
            continue
        pixels.append(result)
        kept_images.append(image_id)
        kept_captions.append(int(caption_id))
    if not kept_images:
        return Batch(torch.zeros(0), {}, skipped)
    images: ImageInput
    images = Pooled(torch.stack(pixels)) if frozen_images is not None else torch.from_numpy(np.stack(pixels))
    texts: TextInput
    if frozen_texts is not None:
        texts = Pooled(frozen_texts[kept_captions])
    else:
        # Pad to the longest caption in the batch, not max_tokens: far fewer FLOPs for short captions.
        captions = [training.data.captions[c] for c in kept_captions]
        texts = dict(
            tokenizer(captions, padding=True, truncation=True, max_length=max_tokens, return_tensors="pt")
        )
    return Batch(images, texts, skipped)


class Prefetcher:
    """Builds the next step's batch in a background thread while the model trains on this one, so
    decoding images that do not fit the cache overlaps the forward and backward passes. Batches are
    a pure function of the step (no torch random numbers), so prefetching changes no result."""

    def __init__(self, make: Callable[[int], Batch]) -> None:
        self._make = make
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pixseek-prefetch")
        self._pending: dict[int, Future[Batch]] = {}

    def get(self, step: int, next_step: int | None) -> Batch:
        future = self._pending.pop(step, None) or self._pool.submit(self._make, step)
        if next_step is not None and next_step not in self._pending:
            self._pending[next_step] = self._pool.submit(self._make, next_step)
        return future.result()

    def close(self) -> None:
        self._pending.clear()
        self._pool.shutdown(wait=True, cancel_futures=True)
