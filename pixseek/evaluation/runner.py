"""Run a retrieval evaluation: embed an image-caption set, rank, and report both directions, per
language, first stage alone and re-ranked (text->image, the top ``rerank_k`` as in BLIP-2's paper)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from pixseek.embedding import Encoder
from pixseek.evaluation.dataset import CaptionSet
from pixseek.evaluation.metrics import (
    RetrievalMetrics,
    first_relevant_ranks,
    image_to_text,
    summarize,
    text_to_image,
)
from pixseek.media.decode import decode_image
from pixseek.search.rerank.scorer import CachedScorer, ImageRef

Progress = Callable[[str, int, int], None]


@dataclass
class EvalReport:
    images: int
    captions: int
    text_to_image: dict[str, RetrievalMetrics] = field(default_factory=dict)  # by stage, e.g. "first"
    image_to_text: RetrievalMetrics | None = None
    per_language: dict[str, dict[str, RetrievalMetrics]] = field(default_factory=dict)
    ms_per_query: dict[str, float] = field(default_factory=dict)


def _embed_images(
    encoder: Encoder, paths: Sequence, batch_size: int, progress: Progress | None
) -> np.ndarray:
    vectors = []
    for start in range(0, len(paths), batch_size):
        batch = paths[start : start + batch_size]
        pixels = [
            encoder.preprocess_image(decode_image(p.read_bytes(), min_side=encoder.image_min_side).image)
            for p in batch
        ]
        vectors.append(encoder.embed_pixels(np.stack(pixels)))
        if progress:
            progress("images", start + len(batch), len(paths))
    return np.concatenate(vectors)


def rerank_ranks(
    captions: Sequence[str],
    caption_image: np.ndarray,
    similarity: np.ndarray,
    image_refs: Sequence[ImageRef],
    scorers: Sequence[CachedScorer],
    rerank_k: int,
) -> np.ndarray:
    """Text->image ranks after re-ranking each caption's first-stage top ``rerank_k`` by the mean ITM
    probability; a correct image outside those candidates keeps its first-stage rank (> rerank_k)."""
    first = first_relevant_ranks(
        similarity, np.arange(similarity.shape[1])[None, :] == caption_image[:, None]
    )
    ranks = first.copy()
    for c, text in enumerate(captions):  # every caption is re-ranked, so the timing is honest
        candidates = np.argsort(-similarity[c], kind="stable")[:rerank_k]
        refs = [image_refs[i] for i in candidates]
        fused = np.zeros(len(candidates))
        for scorer in scorers:
            probabilities = scorer.score(text, refs).probabilities
            fused += np.array([p if p is not None else -1.0 for p in probabilities]) / len(scorers)
        order = candidates[np.argsort(-fused, kind="stable")]
        if first[c] <= rerank_k:
            ranks[c] = int(np.flatnonzero(order == caption_image[c])[0]) + 1
    return ranks


def evaluate(
    encoder: Encoder,
    data: CaptionSet,
    *,
    batch_size: int = 32,
    scorers: dict[str, CachedScorer] | None = None,
    rerank_k: int = 16,
    ks: Sequence[int] = (1, 5, 10),
    progress: Progress | None = None,
) -> EvalReport:
    report = EvalReport(images=len(data.images), captions=len(data.captions))
    images = _embed_images(encoder, data.images, batch_size, progress)
    started = time.perf_counter()
    texts = np.concatenate(
        [
            encoder.embed_texts(data.captions[i : i + batch_size])
            for i in range(0, len(data.captions), batch_size)
        ]
    )
    similarity = texts @ images.T
    report.ms_per_query["first"] = (time.perf_counter() - started) * 1000 / len(data.captions)
    report.text_to_image["first"] = text_to_image(texts, images, data.caption_image, ks)
    report.image_to_text = image_to_text(images, texts, data.caption_image, ks)

    for language in sorted({lang for lang in data.languages if lang}):
        rows = np.array([lang == language for lang in data.languages])
        owners = data.caption_image[rows]
        described = np.unique(owners)  # image->text over the images this language describes
        remap = np.searchsorted(described, owners)
        report.per_language[language] = {
            "text_to_image": text_to_image(texts[rows], images, owners, ks),
            "image_to_text": image_to_text(images[described], texts[rows], remap, ks),
        }

    refs = [ImageRef(str(path)) for path in data.images]
    for name, chosen in _rerank_stages(scorers or {}).items():
        started = time.perf_counter()
        ranks = rerank_ranks(data.captions, data.caption_image, similarity, refs, chosen, rerank_k)
        report.ms_per_query[name] = (time.perf_counter() - started) * 1000 / len(data.captions)
        report.text_to_image[name] = summarize(ranks, ks)
    return report


def _rerank_stages(scorers: dict[str, CachedScorer]) -> dict[str, list[CachedScorer]]:
    stages = {name: [scorer] for name, scorer in scorers.items()}
    if len(scorers) > 1:
        stages["+".join(scorers)] = list(scorers.values())
    return stages
