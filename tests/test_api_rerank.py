"""Re-ranked search over the API: ordering by the fused ITM score, per-model scores in results,
min_score, pages bounded by the re-ranked candidates, and re-rankers the server did not load."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from pixseek.api.app import create_app
from pixseek.api.config import ServerSettings


@pytest.fixture
def client(tmp_path: Path, clip_dir: Path, bridgetower_dir: Path, blip2_dir: Path, gallery: Path):
    settings = ServerSettings(
        data_dir=tmp_path / "data",
        model=str(clip_dir),
        bridgetower_model=str(bridgetower_dir),
        blip2_model=str(blip2_dir),
        precision="fp32",
        device="cpu",
        library_roots=[gallery],
        rerank="bridgetower",  # the server loads only BridgeTower
    )
    with TestClient(create_app(settings)) as client:
        job = client.post("/index").json()
        while client.get(f"/jobs/{job['id']}").json()["state"] not in ("done", "failed"):
            time.sleep(0.05)
        yield client


def test_reranked_search_orders_by_itm_and_keeps_every_score(client: TestClient) -> None:
    assert client.get("/status").json()["rerankers"] == ["bridgetower"]
    body = client.post("/search", json={"query": "a red circle", "k": 5, "rerank_k": 10}).json()
    results = body["results"]
    assert len(results) == 5
    finals = [r["final_score"] for r in results]
    assert finals == sorted(finals, reverse=True) and all(0.0 <= f <= 1.0 for f in finals)
    assert all(r["rerank_scores"]["bridgetower"] == pytest.approx(r["final_score"]) for r in results)
    assert all(-1.0 <= r["score"] <= 1.0 for r in results)  # the first-stage cosine is kept

    plain = client.post("/search", json={"query": "a red circle", "k": 5, "rerank": "none"}).json()["results"]
    assert all(r["final_score"] is None and r["rerank_scores"] == {} for r in plain)

    second = client.post(
        "/search", json={"query": "a red circle", "k": 5, "offset": 5, "rerank_k": 10}
    ).json()
    assert second["next_offset"] is None  # the 10 re-ranked candidates are used up
    ids = [r["image"]["id"] for r in results + second["results"]]
    assert len(ids) == len(set(ids)) == 10

    threshold = sorted(finals)[2]
    cut = client.post(
        "/search", json={"query": "a red circle", "k": 5, "rerank_k": 10, "min_score": threshold}
    )
    assert all(r["final_score"] >= threshold for r in cut.json()["results"])


def test_rerank_errors_are_4xx(client: TestClient) -> None:
    not_loaded = client.post("/search", json={"query": "a cat", "rerank": "blip2"})
    assert not_loaded.status_code == 400 and "not loaded on this server" in not_loaded.json()["detail"]
    assert client.post("/search", json={"query": "a cat", "rerank": "nope"}).status_code == 422
    assert (
        client.post("/search", json={"query": "a cat", "rerank": "none", "min_score": 0.5}).status_code == 400
    )
    assert client.post("/search", json={"query": "a cat", "min_score": 1.5}).status_code == 422


def test_openapi_offers_only_the_rerankers_this_server_loaded(client: TestClient) -> None:
    """Asking for an unloaded re-ranker gets 400, so the schema must not promise it (it listed all)."""
    properties = client.get("/openapi.json").json()["components"]["schemas"]["SearchRequest"]["properties"]
    assert properties["rerank"]["anyOf"][0]["enum"] == ["none", "bridgetower"]
    assert "min_score" in properties  # with a re-ranker loaded, min_score can apply
