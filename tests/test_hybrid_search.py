"""Text and hybrid search over the keyword index (file names, EXIF descriptions), through the CLI
and the API, on the tiny random-weight CLIP: random weights rank nothing, so what is checked is
what the words decide (a keyword match found, fused first, its matched words reported)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from api_client import wait_for_job
from cli_runner import cli, runner
from pixseek.api.app import create_app
from pixseek.api.config import ServerSettings
from pixseek.cli import app

NAMES = ["receipt_lidl_2041.jpg", "sunset_beach.jpg", "IMG_0001.jpg", "cat-on-sofa.jpg", "invoice-acme.jpg"]
DESCRIPTION = "Order number 55812 from the bakery"


def _folder(root: Path, described: bool) -> Path:
    root.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for name in NAMES:
        exif = Image.Exif()
        if described and name == "IMG_0001.jpg":
            exif[0x010E] = DESCRIPTION  # ImageDescription
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(root / name, exif=exif)
    return root


def _search(*args: object) -> tuple[list[dict], str]:
    result = runner.invoke(app, ["search", *map(str, args), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout), result.stderr


def test_text_mode_finds_the_words_of_names_and_descriptions_and_says_what_matched(
    cli_env: Path, tmp_path: Path
) -> None:
    photos = _folder(tmp_path / "photos", described=True)
    cli("index", photos)
    hits, _ = _search("order number", "--mode", "text")
    assert [Path(h["path"]).name for h in hits] == ["IMG_0001.jpg"]
    assert {(m["source"], m["text"]) for m in hits[0]["matches"]} == {
        ("description", "order"),
        ("description", "number"),
    }
    assert _search('"number order"', "--mode", "text")[0] == []  # a phrase keeps its word order
    assert [Path(h["path"]).name for h in _search('"order number"', "--mode", "text")[0]] == ["IMG_0001.jpg"]
    lidl, _ = _search("LIDL", "--mode", "text")  # file-name words, any case
    assert [Path(h["path"]).name for h in lidl] == ["receipt_lidl_2041.jpg"]
    assert lidl[0]["score"] == lidl[0]["keyword_score"]  # no model ran: the score is the keyword one
    nothing = runner.invoke(app, ["search", "--like", str(hits[0]["id"]), "--mode", "text"])
    assert nothing.exit_code == 0 and "this query has no text" in nothing.stderr


def test_hybrid_is_the_default_once_the_collection_has_keyword_text(cli_env: Path, tmp_path: Path) -> None:
    cli("index", _folder(tmp_path / "plain", described=False))
    plain, notes = _search("receipt", "-k", "5")
    assert "mode: hybrid" not in notes and all(h["fused_score"] is None for h in plain)  # names alone
    cli("index", _folder(tmp_path / "described", described=True))
    hybrid, notes = _search("lidl receipt", "-k", "5")
    assert "mode: hybrid" in notes
    # Reciprocal rank fusion: the keyword match is in both lists, so it is first whatever the
    # random model's cosine; the others are semantic-only.
    assert Path(hybrid[0]["path"]).name == "receipt_lidl_2041.jpg" and hybrid[0]["keyword_score"] > 0
    assert all(h["fused_score"] is not None for h in hybrid) and len(hybrid) == 5
    assert [h["fused_score"] for h in hybrid] == sorted((h["fused_score"] for h in hybrid), reverse=True)
    semantic, notes = _search("lidl receipt", "-k", "5", "--mode", "semantic")
    assert "mode: hybrid" not in notes and all(h["keyword_score"] is None for h in semantic)


@pytest.fixture
def keyword_client(tmp_path: Path, clip_dir: Path) -> Iterator[TestClient]:
    photos = _folder(tmp_path / "photos", described=True)
    settings = ServerSettings(
        data_dir=tmp_path / "data",
        model=str(clip_dir),
        precision="fp32",
        device="cpu",
        library_roots=[photos],
    )
    with TestClient(create_app(settings)) as client:
        assert wait_for_job(client, client.post("/index").json()["id"])["state"] == "done"
        yield client


def test_api_modes_and_matched_words(keyword_client: TestClient) -> None:
    text = keyword_client.post("/search", json={"query": "bakery", "mode": "text"}).json()
    assert text["mode"] == "text" and [r["image"]["path"] for r in text["results"]] == ["IMG_0001.jpg"]
    assert text["results"][0]["matches"] == [
        {"source": "description", "text": "bakery", "box": None, "confidence": None}
    ]
    hybrid = keyword_client.post("/search", json={"query": "invoice acme", "k": 3}).json()
    assert hybrid["mode"] == "hybrid" and hybrid["results"][0]["image"]["path"] == "invoice-acme.jpg"
    assert hybrid["results"][0]["fused_score"] is not None
    image_only = keyword_client.post("/search", json={"terms": [{"image_id": 1}], "mode": "hybrid"}).json()
    assert image_only["mode"] == "semantic"  # no words to match: the embedding alone
    refused = keyword_client.post("/search", json={"query": "x", "mode": "fuzzy"})
    assert refused.status_code == 422 and "mode" in refused.json()["detail"]
