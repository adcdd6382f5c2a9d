"""Retrieval metrics against a hand-computed case and an independent brute-force ranking."""

from __future__ import annotations

import numpy as np
import pytest

from pixseek.evaluation.metrics import first_relevant_ranks, image_to_text, text_to_image


def test_hand_computed_case() -> None:
    # 3 images, 4 captions: captions 0 and 1 describe image 0, caption 2 image 1, caption 3 image 2.
    images = np.eye(3, dtype=np.float32)
    texts = np.array(
        [
            [0.9, 0.1, 0.0],  # -> image 0 first: rank 1
            [0.2, 0.8, 0.0],  # -> image 1 first, image 0 second: rank 2
            [0.0, 0.3, 0.7],  # -> image 2 first, image 1 second: rank 2
            [0.0, 0.0, 1.0],  # -> image 2 first: rank 1
        ],
        dtype=np.float32,
    )
    owner = np.array([0, 0, 1, 2])
    t2i = text_to_image(texts, images, owner, ks=(1, 2))
    assert t2i.recall == {1: 0.5, 2: 1.0} and t2i.mean_rank == 1.5 and t2i.queries == 4
    # Image 0's best caption is caption 0 (0.9): rank 1. Image 1: caption 1 (0.8) outranks its own
    # caption 2 (0.3): rank 2. Image 2: caption 3 (1.0): rank 1.
    i2t = image_to_text(images, texts, owner, ks=(1,))
    assert i2t.recall == {1: pytest.approx(2 / 3)} and i2t.mean_rank == pytest.approx(4 / 3)


def test_ties_count_against_the_query() -> None:
    constant = np.zeros((2, 3))
    relevant = np.eye(2, 3, dtype=bool)
    assert first_relevant_ranks(constant, relevant).tolist() == [3, 3]


def test_matches_brute_force_on_random_embeddings() -> None:
    rng = np.random.default_rng(0)
    images = rng.standard_normal((40, 16))
    texts = rng.standard_normal((120, 16))
    owner = rng.integers(0, 40, 120)
    owner[:40] = np.arange(40)  # every image has at least one caption

    def brute_rank(scores: np.ndarray, relevant: set[int]) -> int:
        order = sorted(range(len(scores)), key=lambda i: -scores[i])
        return 1 + min(order.index(i) for i in relevant)

    similarity = texts @ images.T
    t2i = [brute_rank(similarity[c], {owner[c]}) for c in range(len(texts))]
    i2t = [brute_rank(similarity[:, i], set(np.flatnonzero(owner == i))) for i in range(len(images))]
    got_t2i = text_to_image(texts, images, owner, ks=(1, 5, 10))
    got_i2t = image_to_text(images, texts, owner, ks=(1, 5, 10))
    assert got_t2i.mean_rank == pytest.approx(np.mean(t2i))
    assert got_i2t.mean_rank == pytest.approx(np.mean(i2t))
    for k in (1, 5, 10):
        assert got_t2i.recall[k] == pytest.approx(np.mean(np.array(t2i) <= k))
        assert got_i2t.recall[k] == pytest.approx(np.mean(np.array(i2t) <= k))


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="differ in shape"):
        first_relevant_ranks(np.zeros((2, 3)), np.zeros((3, 2), dtype=bool))
    with pytest.raises(ValueError, match="at least one relevant"):
        first_relevant_ranks(np.zeros((2, 3)), np.zeros((2, 3), dtype=bool))
