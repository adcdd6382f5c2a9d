"""The REST API with FastAPI's TestClient on the tiny CLIP checkpoint: every endpoint, auth,
limits, traversal attempts and bad uploads."""

from __future__ import annotations

import io
import os
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from api_client import wait_for_job
from pixseek.api.app import create_app
from pixseek.api.config import ServerSettings
from pixseek.api.schemas import SearchResponse
from pixseek.config import Settings
from pixseek.library import Library

KEY = "s3cret-key"


def jpeg_bytes(path: Path) -> bytes:
    buffer = io.BytesIO()
    Image.open(path).convert("RGB").save(buffer, "JPEG")
    return buffer.getvalue()


def test_search_pages_similar_and_image_endpoints(client: TestClient, photos: Path) -> None:
    first = client.post("/search", json={"query": "a cat", "k": 5})
    assert first.status_code == 200
    body = first.json()
    assert len(body["results"]) == 5 and body["next_offset"] == 5
    scores = [r["score"] for r in body["results"]]
    assert scores == sorted(scores, reverse=True)
    second = client.post("/search", json={"query": "a cat", "k": 5, "offset": 5}).json()
    assert not {r["image"]["id"] for r in body["results"]} & {r["image"]["id"] for r in second["results"]}
    everything = client.post("/search", json={"query": "a cat", "k": 200}).json()
    assert everything["next_offset"] is None and len(everything["results"]) < 200

    hit = body["results"][0]["image"]
    assert hit["root"] == "photos" and not hit["path"].startswith("/")
    assert (photos / hit["path"]).is_file()
    assert client.get(f"/images/{hit['id']}").json() == hit

    similar = client.get(hit["similar_url"], params={"k": 4}).json()["results"]
    assert len(similar) == 4 and hit["id"] not in [r["image"]["id"] for r in similar]

    thumb = client.get(hit["thumbnail_url"], params={"size": 128})
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert max(Image.open(io.BytesIO(thumb.content)).size) <= 128
    assert "max-age" in thumb.headers["cache-control"]
    again = client.get(
        hit["thumbnail_url"], params={"size": 128}, headers={"If-None-Match": thumb.headers["etag"]}
    )
    assert again.status_code == 304

    original = client.get(hit["file_url"])
    assert original.status_code == 200 and original.content == (photos / hit["path"]).read_bytes()


def test_search_by_uploaded_image_ranks_it_first(client: TestClient, photos: Path) -> None:
    chelsea = next(photos.rglob("chelsea.png"))
    response = client.post(
        "/search/image", files={"file": ("q.png", chelsea.read_bytes(), "image/png")}, data={"k": "3"}
    )
    assert response.status_code == 200
    assert response.json()["results"][0]["image"]["path"] == str(chelsea.relative_to(photos))


def test_filters_use_root_relative_folders(client: TestClient) -> None:
    body = client.post(
        "/search",
        json={"query": "a photo", "k": 50, "filters": {"folders": ["photos/outdoor"], "formats": ["PNG"]}},
    ).json()
    assert body["results"] and all(r["image"]["path"].startswith("outdoor/") for r in body["results"])
    assert all(r["image"]["format"] == "PNG" for r in body["results"])
    none = client.post("/search", json={"query": "x", "filters": {"min_width": 100000}}).json()
    assert none["results"] == [] and none["next_offset"] is None


@pytest.mark.parametrize(
    ("payload", "status"),
    [
        ({"query": ""}, 422),
        ({"query": "   "}, 422),
        ({"query": "cat", "k": 0}, 422),
        ({"query": "cat", "k": 201}, 422),
        ({"query": "cat", "offset": -1}, 422),
        ({"query": "cat", "colour": "red"}, 422),
        ({"query": "cat", "filters": {"formats": ["EXE"]}}, 422),
        ({"query": "cat", "filters": {"taken_after": "yesterday"}}, 422),
        ({"query": "cat", "filters": {"folders": ["../etc"]}}, 403),
        ({"query": "cat", "filters": {"folders": ["/etc"]}}, 403),
        ({"query": "cat", "filters": {"folders": ["nosuchroot/x"]}}, 403),
    ],
)
def test_bad_search_requests_get_4xx_with_reason(client: TestClient, payload: dict, status: int) -> None:
    response = client.post("/search", json=payload)
    assert response.status_code == status, response.text
    assert response.json()["detail"]


def test_bad_uploads(client: TestClient, photos: Path, server_settings: ServerSettings) -> None:
    def upload(data: bytes, **form) -> tuple[int, str]:
        response = client.post("/search/image", files={"file": ("q", data, "image/jpeg")}, data=form)
        return response.status_code, str(response.json()["detail"])

    assert upload(b"hello, I am text") == (400, "not a usable image: not an image (text)")
    good = jpeg_bytes(next(photos.rglob("chelsea.png")))
    status, detail = upload(good[: len(good) // 2])
    assert status == 400 and "truncated" in detail
    assert upload(b"")[0] == 400
    assert upload(b"x" * (server_settings.max_upload_bytes + 1))[0] == 413
    assert upload(good, k="0")[0] == 422
    assert upload(good, filters="{not json")[0] == 422
    huge = io.BytesIO()
    Image.new("1", (8000, 8000)).save(huge, "PNG")  # 64 MP > the 50 MP upload cap, a few kB
    status, detail = upload(huge.getvalue())
    assert status == 400 and "too many pixels" in detail
    assert client.post("/search/image", data={"k": "3"}).status_code == 422


def test_not_found_and_bad_parameters(client: TestClient) -> None:
    assert client.get("/images/999999").status_code == 404
    assert client.get("/images/999999/thumbnail").status_code == 404
    assert client.get("/images/999999/file").status_code == 404
    assert client.get("/images/999999/similar").status_code == 404
    assert client.get("/images/abc").status_code == 422
    assert client.get("/images/0").status_code == 422
    assert client.get(f"/images/{2**64}").status_code == 422
    assert client.get(f"/images/{2**64}/similar").status_code == 422
    assert client.get("/jobs/nope").status_code == 404
    some_id = client.post("/search", json={"query": "x", "k": 1}).json()["results"][0]["image"]["id"]
    assert client.get(f"/images/{some_id}/thumbnail", params={"size": 100000}).status_code == 400


@pytest.mark.parametrize(
    "path", ["../x", "/etc", "photos/../..", "photos/../../etc", "photos%2F..%2F..", "nosuch/x"]
)
def test_index_refuses_paths_outside_the_roots(client: TestClient, path: str) -> None:
    response = client.post("/index", json={"path": path})
    assert response.status_code == 403 and response.json()["detail"]


def test_symlinks_out_of_a_root_are_neither_indexed_nor_served(
    tmp_path: Path, server_settings: ServerSettings, photos: Path, clip_dir: Path
) -> None:
    outside = tmp_path / "private"
    outside.mkdir()
    Image.new("RGB", (64, 64), "red").save(outside / "secret.png")
    (photos / "escape").symlink_to(outside)
    (photos / "escape.png").symlink_to(outside / "secret.png")
    # The CLI may have indexed files elsewhere into the same collection: the server must not serve them.
    library = Library(Settings(data_dir=server_settings.data_dir, model=str(clip_dir), precision="fp32"))
    library.indexer(library.load_encoder()).run([outside])
    library.close()
    with TestClient(create_app(server_settings)) as client:
        wait_for_job(client, client.post("/index").json()["id"])
        assert client.post("/index", json={"path": "photos/escape"}).status_code == 403
        results = client.post("/search", json={"query": "red", "k": 200}).json()["results"]
        assert results and not any(
            "secret" in r["image"]["path"] or "escape" in r["image"]["path"] for r in results
        )
        secret = next(r for r in client.get("/status").json()["jobs"])  # the job ran
        assert secret["state"] == "done"
        hidden = Library(Settings(data_dir=server_settings.data_dir)).store
        collection = hidden.collection("default")
        secret_id = hidden.image_by_path(collection.id, str(outside / "secret.png")).id
        hidden.close()
        for url in (f"/images/{secret_id}", f"/images/{secret_id}/file", f"/images/{secret_id}/thumbnail"):
            assert client.get(url).status_code == 404, url


def _is_red(jpeg: bytes) -> bool:
    pixels = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"), dtype=np.int16)
    return bool(np.abs(pixels - (255, 0, 0)).mean() < 30)


@pytest.mark.timeout(120)
def test_a_file_swapped_for_a_symlink_out_of_the_root_is_never_served(
    tmp_path: Path, server_settings: ServerSettings, photos: Path
) -> None:
    """Checking a path, then opening it again by name, serves whatever the path holds by then. A
    thread swaps an indexed file between itself and a symlink to a file outside the root while
    /file and /thumbnail (its cache emptied each time) are asked for it: never the outside bytes,
    never a 500, and no thumbnail of the outside file cached under the inside file's hash."""
    outside = tmp_path / "private" / "secret.png"
    outside.parent.mkdir()
    Image.new("RGB", (64, 64), "red").save(outside)
    secret = outside.read_bytes()
    thumbnails = server_settings.data_dir / "thumbnails"
    with TestClient(create_app(server_settings), raise_server_exceptions=False) as client:
        assert wait_for_job(client, client.post("/index").json()["id"])["state"] == "done"
        hit = client.post("/search", json={"query": "a cat", "k": 1}).json()["results"][0]["image"]
        target = photos / hit["path"]
        keep = tmp_path / "kept-original"
        shutil.copy2(target, keep)
        stop = threading.Event()

        def swap() -> None:
            while not stop.is_set():
                link = target.with_name(".swap-link")
                link.symlink_to(outside)
                os.replace(link, target)
                copy = target.with_name(".swap-copy")
                os.link(keep, copy)
                os.replace(copy, target)

        swapper = threading.Thread(target=swap, daemon=True)
        swapper.start()
        statuses: list[int] = []
        leaks: list[str] = []
        try:
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline or len(statuses) < 300:
                file = client.get(f"/images/{hit['id']}/file")
                shutil.rmtree(thumbnails, ignore_errors=True)
                thumb = client.get(f"/images/{hit['id']}/thumbnail", params={"size": 128})
                statuses += [file.status_code, thumb.status_code]
                if file.status_code == 200 and file.content == secret:
                    leaks.append("file: outside bytes")
                if thumb.status_code == 200 and _is_red(thumb.content):
                    leaks.append("thumbnail: outside pixels")
        finally:
            stop.set()
            swapper.join(timeout=10)
        os.replace(keep, target)
        cached = [path for path in thumbnails.rglob("*.jpg") if _is_red(path.read_bytes())]
    files, thumbs = leaks.count("file: outside bytes"), leaks.count("thumbnail: outside pixels")
    assert not leaks, f"of {len(statuses)} responses, {files} files and {thumbs} thumbnails were outside"
    assert not cached, "a thumbnail of the outside file was cached"
    assert 500 not in statuses, f"{statuses.count(500)} of {len(statuses)} responses were 500"
    assert set(statuses) <= {200, 404}, sorted(set(statuses))
    assert statuses.count(200) > 0  # the swap was not seen every time: the real file was served too


def test_api_key_guards_mutating_endpoints(server_settings: ServerSettings) -> None:
    settings = server_settings.model_copy(update={"api_key": KEY})
    with TestClient(create_app(settings)) as client:
        assert client.post("/index").status_code == 401
        assert client.post("/index", headers={"X-API-Key": "wrong"}).status_code == 401
        job = client.post("/index", headers={"X-API-Key": KEY})
        assert job.status_code == 202
        wait_for_job(client, job.json()["id"])
        assert client.post("/index", headers={"Authorization": f"Bearer {KEY}"}).status_code == 202
        assert client.post("/search", json={"query": "cat"}).status_code == 200  # reading needs no key


def test_searches_keep_working_while_indexing(client: TestClient, photos: Path) -> None:
    for i in range(3):  # more files for the job to write while searches run
        shutil.copytree(photos / "indoor", photos / f"copy{i}")
        for file in (photos / f"copy{i}").iterdir():
            with open(file, "ab") as handle:  # new content: embedded, not reused
                handle.write(bytes([i]))
    job = client.post("/index").json()
    errors: list[str] = []

    def searcher() -> None:
        for _ in range(15):
            response = client.post("/search", json={"query": "a cat", "k": 10})
            if response.status_code != 200:
                errors.append(response.text)

    threads = [threading.Thread(target=searcher) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wait_for_job(client, job["id"])["state"] == "done"
    assert errors == []


def test_status_health_metrics_and_docs(client: TestClient) -> None:
    status = client.get("/status").json()
    assert (
        status["collection"]["indexed"] > 20
        and status["collection"]["vectors"] == status["collection"]["indexed"]
    )
    index = status["collection"]["index"]  # a small collection: exact, all in the delta
    assert index["type"] == "flat" and index["delta_vectors"] == status["collection"]["vectors"]
    assert index["tombstones"] == 0 and index["measured_recall"] == 1.0 and not index["maintenance_running"]
    assert list(status["roots"]) == ["photos"] and status["jobs"][0]["state"] == "done"
    assert status["jobs"][0]["paths"] == ["photos"]
    sub = client.post("/index", json={"path": "photos/indoor"}).json()
    assert sub["paths"] == ["photos/indoor"] and wait_for_job(client, sub["id"])["state"] == "done"
    assert status["device"] == "cpu, fp32, OpenVINO images"
    assert client.get("/health").json() == {"status": "ok"}
    client.post("/search", json={"query": "cat"})
    metrics = client.get("/metrics").text
    assert 'pixseek_requests_total{method="POST",route="/search",status="200"}' in metrics
    assert "pixseek_vectors " in metrics
    schema = client.get("/openapi.json").json()
    assert {"/search", "/search/image", "/images/{image_id}/similar", "/index", "/jobs/{job_id}"} <= set(
        schema["paths"]
    )


def test_search_json_is_the_documented_model_with_headers_and_metrics(client: TestClient) -> None:
    """Search handlers serialise their response model themselves (no second validation by FastAPI):
    the body still is that model, documented as such, and every response still passes the metrics
    and header middleware, errors included."""
    some_id = None
    for method, url, payload in (
        ("POST", "/search", {"query": "a cat", "k": 3}),
        ("GET", "/images/1/similar?k=3", None),
    ):
        response = client.request(method, url, json=payload)
        assert response.status_code == 200 and response.headers["content-type"] == "application/json"
        assert response.headers["x-content-type-options"] == "nosniff"
        body = SearchResponse.model_validate(response.json())
        assert len(body.results) == 3 and body.results[0].image.similar_url.endswith("/similar")
        assert response.json() == body.model_dump(mode="json")
        some_id = body.results[0].image.id
    upload = client.post(
        "/search/image",
        files={"file": ("q.jpg", client.get(f"/images/{some_id}/file").content)},
        data={"k": 2},
    )
    assert upload.status_code == 200 and len(SearchResponse.model_validate(upload.json()).results) == 2
    missing = client.get("/images/999999")
    assert missing.status_code == 404 and missing.headers["x-content-type-options"] == "nosniff"
    assert client.get("/").headers["x-content-type-options"] == "nosniff"  # the web page
    assert client.get("/static/app.js").headers["x-content-type-options"] == "nosniff"  # its files (a mount)
    metrics = client.get("/metrics").text
    for line in (
        'pixseek_requests_total{method="POST",route="/search",status="200"} 1.0',
        'pixseek_requests_total{method="GET",route="/images/{image_id}/similar",status="200"} 1.0',
        'pixseek_requests_total{method="GET",route="/images/{image_id}",status="404"} 1.0',
        'pixseek_requests_total{method="GET",route="/",status="200"} 1.0',
        'pixseek_requests_total{method="GET",route="static",status="200"} 1.0',
        'pixseek_request_seconds_count{route="/search"} 1.0',
    ):
        assert line in metrics
    schema = client.get("/openapi.json").json()
    for path, method in (
        ("/search", "post"),
        ("/search/image", "post"),
        ("/images/{image_id}/similar", "get"),
    ):
        documented = schema["paths"][path][method]["responses"]["200"]["content"]["application/json"]
        assert documented["schema"] == {"$ref": "#/components/schemas/SearchResponse"}


def test_cors_is_off_by_default(client: TestClient, server_settings: ServerSettings) -> None:
    preflight = {"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"}
    assert "access-control-allow-origin" not in client.options("/search", headers=preflight).headers
    allowed = server_settings.model_copy(update={"cors_origins": ["http://app.example"]})
    with TestClient(create_app(allowed)) as cors_client:
        response = cors_client.options("/search", headers={**preflight, "Origin": "http://app.example"})
        assert response.headers["access-control-allow-origin"] == "http://app.example"


def test_search_before_anything_is_indexed_says_what_to_do(server_settings: ServerSettings) -> None:
    with TestClient(create_app(server_settings)) as client:
        response = client.post("/search", json={"query": "cat"})
        assert response.status_code == 404 and "pixseek index" in response.json()["detail"]
        assert client.get("/status").json()["collection"] is None
