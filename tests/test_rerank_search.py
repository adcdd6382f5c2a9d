"""Re-ranked text search end to end: order, cutoff, nothing lost, cache warm and cold, the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from statistics import fmean

import numpy as np
import pytest
import torch
import transformers
from PIL import Image
from typer.testing import CliRunner

from pixseek.cli import app
from pixseek.config import Settings
from pixseek.library import Library
from pixseek.media.hashing import content_hash
from pixseek.search.rerank import CachedScorer, FeatureCache, ImageRef, rerank_hits, rerank_search

QUERY = "a black cat on the beach"
KINDS = ("bridgetower", "blip2")
runner = CliRunner(env={"COLUMNS": "300"})


@pytest.fixture
def library(tmp_path: Path, clip_dir: Path, bridgetower_dir: Path, blip2_dir: Path, gallery: Path):
    settings = Settings(
        data_dir=tmp_path / "data",
        model=str(clip_dir),
        bridgetower_model=str(bridgetower_dir),
        blip2_model=str(blip2_dir),
        precision="fp32",
        device="cpu",
        decode_workers=1,
    )
    library = Library(settings)
    library.indexer(library.load_encoder()).run([gallery])
    yield library
    library.close()


def documented(kind: str, checkpoint: Path, paths: list[str]) -> dict[str, float]:
    """Per-pair scores as the seed documents compute them, from the files on disk."""
    if kind == "bridgetower":
        model = transformers.BridgeTowerForImageAndTextRetrieval.from_pretrained(checkpoint).eval()
        processor = transformers.BridgeTowerProcessor.from_pretrained(checkpoint)
    else:
        model = transformers.Blip2ForImageTextRetrieval.from_pretrained(checkpoint).eval()
        processor = transformers.Blip2Processor.from_pretrained(checkpoint)
    scores = {}
    with torch.no_grad():
        for path in paths:
            image = Image.open(path).convert("RGB")
            if kind == "bridgetower":
                logits = model(**processor(image, QUERY, return_tensors="pt")).logits
            else:
                inputs = processor(images=image, text=QUERY, return_tensors="pt")
                logits = model(**inputs, use_image_text_matching_head=True).logits_per_image
            scores[path] = torch.softmax(logits, dim=-1)[0, 1].item()
    return scores


def test_order_fusion_and_first_stage_scores(library: Library) -> None:
    searcher = library.searcher()
    scorers = [library.scorer(kind) for kind in KINDS]
    first_stage = {hit.id: hit.score for hit in searcher.by_text(QUERY, 10)}
    result = rerank_search(searcher, QUERY, scorers, k=4, rerank_k=10)
    assert result.candidates == 10 and len(result.hits) == 4 and not result.unscored
    finals = [hit.final_score for hit in result.hits]
    assert finals == sorted(finals, reverse=True)
    for hit in result.hits:
        assert set(hit.rerank_scores) == set(KINDS)
        assert hit.final_score == pytest.approx(fmean(hit.rerank_scores.values()))
        assert hit.score == pytest.approx(first_stage[hit.id])  # the first-stage score is kept
    # The top 4 of the fused order are the best 4 of all 10 candidates, not of the first 4.
    everything = rerank_search(searcher, QUERY, scorers, k=10, rerank_k=10).hits
    assert [h.id for h in everything[:4]] == [h.id for h in result.hits]
    assert [h.id for h in everything] != sorted(first_stage, key=first_stage.get, reverse=True)


def test_scores_equal_the_documented_loop_cold_and_warm(
    library: Library, bridgetower_dir: Path, blip2_dir: Path
) -> None:
    searcher = library.searcher()
    scorers = {kind: library.scorer(kind) for kind in KINDS}
    cold = rerank_search(searcher, QUERY, list(scorers.values()), k=14, rerank_k=14).hits
    paths = [hit.path for hit in cold]
    for kind, checkpoint in (("bridgetower", bridgetower_dir), ("blip2", blip2_dir)):
        want = documented(kind, checkpoint, paths)
        for hit in cold:
            assert hit.rerank_scores[kind] == pytest.approx(want[hit.path], abs=1e-4)
        assert len(scorers[kind].cache) == 14  # cold: every candidate's features were computed

    records = library.store.images([hit.id for hit in cold])
    refs = [ImageRef.from_record(records[hit.id]) for hit in cold]
    warm_scores = scorers["blip2"].score(QUERY, refs)
    assert warm_scores.cache_hits == 14 and warm_scores.computed == 0
    warm = rerank_search(searcher, QUERY, list(scorers.values()), k=14, rerank_k=14).hits
    assert [(h.id, h.rerank_scores) for h in warm] == [(h.id, h.rerank_scores) for h in cold]  # identical


def test_min_score_cuts_on_the_match_probability(library: Library) -> None:
    searcher = library.searcher()
    scorers = [library.scorer("blip2")]
    all_hits = rerank_search(searcher, QUERY, scorers, k=12, rerank_k=12).hits
    threshold = float(np.median([hit.final_score for hit in all_hits]))
    cut = rerank_search(searcher, QUERY, scorers, k=12, rerank_k=12, min_score=threshold)
    expected = [hit.id for hit in all_hits if hit.final_score >= threshold]
    assert [hit.id for hit in cut.hits] == expected and 0 < len(expected) < 12
    assert cut.below_min_score == 12 - len(expected)
    assert rerank_search(searcher, QUERY, scorers, k=3, rerank_k=12, min_score=threshold).hits == cut.hits[:3]
    nothing = rerank_search(searcher, QUERY, scorers, k=12, rerank_k=12, min_score=1.0)
    assert nothing.hits == [] and nothing.below_min_score == 12
    with pytest.raises(ValueError, match="probability"):
        rerank_search(searcher, QUERY, scorers, k=3, rerank_k=12, min_score=1.5)


def test_vanished_and_unreadable_candidates_are_reported(library: Library, gallery: Path) -> None:
    (gallery / "img_03.png").unlink()
    (gallery / "img_07.png").write_bytes(b"this is no longer a picture")
    searcher = library.searcher()
    scorers = [library.scorer(kind) for kind in KINDS]
    candidates = searcher.by_text(QUERY, 14)
    records = library.store.images([hit.id for hit in candidates])
    ranked = rerank_hits(QUERY, candidates, records, scorers)
    assert sorted(hit.id for hit in ranked) == sorted(hit.id for hit in candidates)  # k in, k out
    reasons = {Path(hit.path).name: hit.rerank_error for hit in ranked if hit.rerank_error}
    assert reasons.keys() == {"img_03.png", "img_07.png"}
    assert reasons["img_03.png"] == "file vanished" and reasons["img_07.png"].startswith("unreadable")
    assert all(hit.final_score is None for hit in ranked[-2:]) and all(h.final_score for h in ranked[:-2])

    result = rerank_search(searcher, QUERY, scorers, k=14, rerank_k=14, min_score=0.0)
    assert len(result.hits) == 12 and {Path(hit.path).name for hit in result.unscored} == reasons.keys()


def test_changed_file_is_scored_on_its_new_content(library: Library, gallery: Path, tmp_path: Path) -> None:
    scorer = library.scorer("bridgetower")
    target = gallery / "img_05.png"
    record = library.store.image_by_path(library.collection().id, str(target))
    before = scorer.score(QUERY, [ImageRef.from_record(record)])
    Image.open(gallery / "img_09.png").save(target)  # new content, same path, not re-indexed
    after = scorer.score(QUERY, [ImageRef.from_record(record)])
    fresh = scorer.reranker.score(QUERY, [Image.open(target).convert("RGB")])
    assert after.probabilities[0] == pytest.approx(float(fresh[0]), abs=1e-6)
    assert after.probabilities[0] != before.probabilities[0]
    assert content_hash(target.read_bytes()) in scorer.cache  # cached under the new content's hash


def test_fill_at_index_time_and_within_budget(library: Library, tmp_path: Path) -> None:
    scorer = library.scorer("blip2")
    report = library.fill_rerank_cache(scorer)
    assert (report.images, report.computed, report.already_cached, report.failed) == (14, 14, 0, [])
    again = library.fill_rerank_cache(scorer)
    assert (again.computed, again.already_cached) == (0, 14)

    room = 5
    small = CachedScorer(
        scorer.reranker,
        FeatureCache(
            tmp_path / "small",
            room * (scorer.reranker.feature_bytes + 128),
            scorer.reranker.feature_shape,
            scorer.reranker.feature_dtype,
        ),
    )
    bounded = library.fill_rerank_cache(small)
    assert (bounded.computed, bounded.over_budget) == (room, 14 - room) and len(small.cache) == room


@pytest.fixture
def cli_env(tmp_path: Path, clip_dir: Path, bridgetower_dir: Path, blip2_dir: Path, monkeypatch) -> Path:
    monkeypatch.setenv("PIXSEEK_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("PIXSEEK_MODEL", str(clip_dir))
    monkeypatch.setenv("PIXSEEK_PRECISION", "fp32")
    monkeypatch.setenv("PIXSEEK_DEVICE", "cpu")
    monkeypatch.setenv("PIXSEEK_BLIP2_MODEL", str(blip2_dir))
    return tmp_path / "data"


def cli(*args: str, code: int = 0) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, result.output
    return result.output


def cli_json(*args: str) -> object:
    """Parse stdout only: warnings and notes go to stderr, so --json output stays parseable."""
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_cli_rerank(cli_env: Path, gallery: Path, bridgetower_dir: Path) -> None:
    summary = cli_json("index", str(gallery), "--rerank-cache", "blip2")
    assert summary["rerank_cache"]["blip2"]["computed"] == 14
    assert len(list((cli_env / "rerank-cache").rglob("*.npy"))) == 14

    bridgetower = ("--bridgetower-model", str(bridgetower_dir))
    hits = cli_json("search", QUERY, "--rerank", "both", *bridgetower, "--rerank-k", "8", "-k", "3")
    assert len(hits) == 3 and all(set(hit["rerank_scores"]) == set(KINDS) for hit in hits)
    finals = [hit["final_score"] for hit in hits]
    assert finals == sorted(finals, reverse=True) and all("score" in hit for hit in hits)

    table = cli("search", QUERY, "--rerank", "blip2", "-k", "2")
    assert "match" in table and "blip2" in table and "cosine" in table
    assert cli_json("search", QUERY, "--rerank", "blip2", "--min-score", "1") == []
    strict = cli("search", QUERY, "--rerank", "blip2", "--min-score", "1")
    assert "14 of 14 candidates below --min-score 1.0" in strict and "no results" in strict

    plain = cli_json("search", QUERY, "-k", "2")
    assert plain[0]["final_score"] is None and plain[0]["rerank_scores"] is None
    note = cli("search", "--image", str(gallery / "img_01.png"), "--rerank", "blip2", "-k", "1")
    assert "this one has none, so it is not re-ranked" in note
    assert "--min-score" in cli("search", QUERY, "--min-score", "0.5", code=2)
    assert "rerank" in cli("search", QUERY, "--rerank", "vilt", code=2)
    assert "--blip2-model" in cli("search", QUERY, "--rerank", "blip2", "--blip2-model", "nope/nope", code=2)
    assert "are not re-ranked" in " ".join(cli("search", "--help").split())
