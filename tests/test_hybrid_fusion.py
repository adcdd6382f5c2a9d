"""Reciprocal rank fusion, the rule of hybrid search, on inputs whose fused order is worked out by hand."""

from __future__ import annotations

import pytest

from pixseek.search.hybrid import Fused, reciprocal_rank_fusion


def test_rrf_sums_one_over_k_plus_rank_and_rewards_agreement() -> None:
    fused = reciprocal_rank_fusion({"semantic": [1, 2, 3], "keyword": [3, 4]}, k=60)
    assert [f.id for f in fused] == [3, 1, 2, 4]  # 3 is in both lists: 1/63 + 1/61 beats 1/61
    assert fused[0] == Fused(3, pytest.approx(1 / 63 + 1 / 61), {"semantic": 3, "keyword": 1})
    assert fused[1].score == pytest.approx(1 / 61) and fused[1].ranks == {"semantic": 1}


def test_rrf_ties_break_by_best_rank_then_id_and_weights_tilt_the_order() -> None:
    tied = reciprocal_rank_fusion({"semantic": [7, 8], "keyword": [8, 7]})
    assert [f.id for f in tied] == [7, 8]  # equal sums and equal best ranks: lower id first
    tilted = reciprocal_rank_fusion({"semantic": [7, 8], "keyword": [8, 7]}, weights={"keyword": 2.0})
    assert [f.id for f in tilted] == [8, 7]
    assert reciprocal_rank_fusion({"semantic": [5, 5, 6]})[0].ranks == {"semantic": 1}  # first place
    with pytest.raises(ValueError, match="k must be"):
        reciprocal_rank_fusion({"semantic": [1]}, k=-1)
    assert reciprocal_rank_fusion({}) == [] and reciprocal_rank_fusion({"keyword": []}) == []


def test_rrf_prefer_breaks_exact_ties_by_that_lists_rank_before_the_id() -> None:
    # 9 only in the keyword list and 1 only in the semantic list, both at rank 1: the same sum and
    # the same best rank; hybrid search prefers the keyword list's image (docs/search.md, measured).
    lists = {"semantic": [1, 2], "keyword": [9]}
    assert [f.id for f in reciprocal_rank_fusion(lists)] == [1, 9, 2]  # without: the lower id
    assert [f.id for f in reciprocal_rank_fusion(lists, prefer="keyword")] == [9, 1, 2]
    mirrored = {"semantic": [7, 8], "keyword": [8, 7]}  # 7 and 8 tie on score and best rank
    assert [f.id for f in reciprocal_rank_fusion(mirrored, prefer="keyword")] == [8, 7]
    assert [f.id for f in reciprocal_rank_fusion(mirrored, prefer="semantic")] == [7, 8]
    # A real score difference still wins over the preference; an unknown name changes nothing.
    assert [
        f.id for f in reciprocal_rank_fusion({"semantic": [1, 3], "keyword": [2, 3]}, prefer="keyword")
    ] == [
        3,
        2,
        1,
    ]
    assert [f.id for f in reciprocal_rank_fusion(lists, prefer="exif")] == [1, 9, 2]
