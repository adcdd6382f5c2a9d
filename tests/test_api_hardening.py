"""What a hostile tester and a new user's first hour found in the REST API: request limits that
the schema states and the store honours, validation before a job starts, no server paths in
messages, a read timeout for stalled bodies, routes that answer their own 405, offline API docs,
status counts of what is searchable, and an OpenAPI document that says what this server accepts."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
import uvicorn
from fastapi.testclient import TestClient
from PIL import Image

from api_client import wait_for_job
from pixseek.api.app import create_app
from pixseek.api.config import ServerSettings
from pixseek.api.schemas import MAX_FOLDER_LENGTH, MAX_FOLDERS, Filters
from pixseek.config import Settings
from pixseek.library import Library


# ---- issue 11.5: folder filters -------------------------------------------------------------------
def test_folder_filters_are_limited_in_the_schema_and_the_limits_work(client: TestClient) -> None:
    def search(folders: list[str]):
        return client.post("/search", json={"query": "a cat", "filters": {"folders": folders}})

    too_many = search([f"photos/f{i}" for i in range(499)])  # was a 500 on SQLite
    assert too_many.status_code == 422 and "folders" in too_many.json()["detail"]
    too_long = search(["photos/" + "d" * 50_001])  # was a 500 on SQLite
    assert too_long.status_code == 422 and "folders" in too_long.json()["detail"]
    # What the schema allows, the store takes: the most folders, each as long as allowed.
    longest = "photos/" + "d" * (MAX_FOLDER_LENGTH - len("photos/"))
    allowed = search([f"{longest[:-4]}{i:04d}" for i in range(MAX_FOLDERS - 1)] + ["photos/outdoor"])
    assert allowed.status_code == 200, allowed.text
    results = allowed.json()["results"]
    assert results and all(r["image"]["path"].startswith("outdoor/") for r in results)


def test_a_timezone_in_a_taken_filter_is_ignored_not_converted() -> None:
    """EXIF times are camera-local: 11:00-05:00 means 11:00 on the camera's clock, on both backends."""
    filters = Filters(taken_after="2021-06-01T11:00:00-05:00", taken_before="2021-06-02T00:00:00")
    assert filters.taken_after == datetime(2021, 6, 1, 11) and filters.taken_before == datetime(2021, 6, 2)


# ---- issue 11.9a: POST /index validates, and no message names a server path ----------------------
def test_indexing_a_missing_path_is_refused_before_a_job_starts(client: TestClient, photos: Path) -> None:
    jobs_before = len(client.get("/status").json()["jobs"])
    response = client.post("/index", json={"path": "photos/no/such/folder"})
    assert response.status_code == 404, response.text
    detail = response.json()["detail"]
    assert "'photos/no/such/folder'" in detail and str(photos) not in detail
    assert len(client.get("/status").json()["jobs"]) == jobs_before


def test_job_errors_name_library_paths_never_server_paths(
    client: TestClient, photos: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class FailingIndexer:
        def run(self, paths, **_options):
            raise OSError(f"[Errno 5] Input/output error: '{photos}/indoor/x.jpg' (cache /var/lib/pixseek/x)")

    monkeypatch.setattr(client.app.state.pixseek.library, "indexer", lambda *_args: FailingIndexer())
    job = wait_for_job(client, client.post("/index", json={"path": "photos/indoor"}).json()["id"])
    assert job["state"] == "failed"
    assert job["error"] == "[Errno 5] Input/output error: 'photos/indoor/x.jpg' (cache <server path>)"
    assert str(photos) not in str(client.get("/status").json()["jobs"])


# ---- issue 11.9d: a stalled request body ---------------------------------------------------------
@pytest.fixture
def live_server(server_settings: ServerSettings) -> Iterator[int]:
    """The app under uvicorn on a free loopback port, with a 1 s body read timeout."""
    app = create_app(server_settings.model_copy(update={"body_timeout_s": 1.0}))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


@pytest.mark.parametrize(
    ("path", "content_type", "start_of_body"),
    [
        ("/search", "application/json", b'{"query": '),
        (
            "/search/image",
            "multipart/form-data; boundary=x",
            b'--x\r\nContent-Disposition: form-data; name="file"; filename="q.png"\r\n\r\n\x89PNG',
        ),
    ],
    ids=["json", "multipart"],
)
def test_a_stalled_body_gets_408_and_the_connection_closes(
    live_server: int, path: str, content_type: str, start_of_body: bytes
) -> None:
    """A client that declares 1000 bytes and sends a few: before, the connection stayed open."""
    with socket.create_connection(("127.0.0.1", live_server), timeout=10) as conn:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\nContent-Length: 1000\r\n\r\n"
        )
        conn.sendall(head.encode() + start_of_body)
        started = time.monotonic()
        received = b""
        try:
            while chunk := conn.recv(4096):  # b"" once the server closes the connection
                received += chunk
        except TimeoutError:
            pytest.fail(f"no answer and no close {time.monotonic() - started:.0f} s after the body stalled")
    assert received.startswith(b"HTTP/1.1 408 "), received[:200]
    assert b"request body" in received and time.monotonic() - started < 5


# ---- issue 11.10: routes answer their own methods; the page and its assets ------------------------
def test_api_routes_answer_405_with_their_own_allow_and_the_page_is_served(client: TestClient) -> None:
    for path, allowed in (("/index", "POST"), ("/search", "POST"), ("/search/image", "POST")):
        response = client.options(path)
        assert response.status_code == 405 and response.headers["allow"] == allowed, path
    assert client.options("/images/1").headers["allow"] == "GET"
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assets = re.findall(r'(?:src|href)="(static/[^"]+)"', page.text)
    assets_expected = [
        "static/app.js",
        "static/collections.js",
        "static/duplicates.js",
        "static/favicon.svg",
        "static/style.css",
    ]
    assert sorted(assets) == assets_expected
    for asset in assets:
        assert client.get(f"/{asset}").status_code == 200, asset
    assert client.get("/static/../pixseek/api/app.py").status_code == 404


# ---- issue 12.9: API docs offline ------------------------------------------------------------------
@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_api_docs_load_nothing_from_other_hosts(client: TestClient, page: str) -> None:
    html = client.get(page)
    assert html.status_code == 200
    assert "http://" not in html.text and "https://" not in html.text, "a CDN or font host"
    urls = re.findall(r'(?:src|href|spec-url)="([^"]+)"', html.text) + re.findall(
        r"url: '([^']+)'", html.text
    )
    assert len(urls) >= 3, urls  # script, style or favicon, and the OpenAPI document
    for url in urls:
        assert url.startswith("/") and client.get(url).status_code == 200, url


# ---- issue 12.11: what is served, how many images are searchable -----------------------------------
def test_status_counts_searchable_images_and_outside_images_say_why_404(
    tmp_path: Path, server_settings: ServerSettings, clip_dir: Path
) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    for colour in ("red", "green", "blue"):
        Image.new("RGB", (64, 64), colour).save(outside / f"{colour}.png")
    library = Library(Settings(data_dir=server_settings.data_dir, model=str(clip_dir), precision="fp32"))
    library.indexer(library.load_encoder()).run([outside])  # the CLI indexed another folder
    outside_id = library.store.image_by_path(library.collection().id, str(outside / "red.png")).id
    library.close()
    with TestClient(create_app(server_settings)) as client:
        wait_for_job(client, client.post("/index").json()["id"])
        status = client.get("/status").json()
        collection = status["collection"]
        inside = len(client.post("/search", json={"query": "x", "k": 200}).json()["results"])
        assert collection["searchable"] == inside and collection["indexed"] == inside + 3
        assert "photos" in status["served"] and "3" in status["served"], status["served"]
        missing = client.get(f"/images/{outside_id}")
        assert missing.status_code == 404 and "outside the folders" in missing.json()["detail"]
        assert client.get("/images/999999").json()["detail"] == "no indexed image 999999"

    unserved = server_settings.model_copy(update={"library_roots": []})
    with TestClient(create_app(unserved)) as client:
        status = client.get("/status").json()
        assert status["collection"]["searchable"] == 0 and status["collection"]["indexed"] > 3
        assert "nothing is served" in status["served"] and "--root" in status["served"]


def test_status_lists_what_rm_keeps_out_without_server_paths(
    tmp_path: Path, server_settings: ServerSettings, clip_dir: Path, photos: Path
) -> None:
    """`pixseek rm` is the CLI's; the server honours it and says what it keeps out."""
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    Image.new("RGB", (64, 64), "red").save(outside / "red.png")
    with Library(
        Settings(data_dir=server_settings.data_dir, model=str(clip_dir), precision="fp32")
    ) as library:
        library.indexer(library.load_encoder()).run([photos, outside])
        library.remove([photos / "indoor", outside])
    with TestClient(create_app(server_settings)) as client:
        wait_for_job(client, client.post("/index").json()["id"])
        status = client.get("/status").json()
        assert sorted(status["collection"]["kept_out"]) == ["<server path>", "photos/indoor"]
        paths = [
            r["image"]["path"]
            for r in client.post("/search", json={"query": "x", "k": 200}).json()["results"]
        ]
        assert paths and not any(path.startswith("indoor/") for path in paths), "the job honoured rm"


# ---- issue 11.10: the OpenAPI document says what this server accepts -------------------------------
def test_openapi_declares_what_this_server_accepts(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    components = schema["components"]["schemas"]
    taken_at = components["ImageInfo"]["properties"]["taken_at"]["anyOf"][0]
    assert "format" not in taken_at and taken_at["pattern"] and "timezone" in taken_at["description"]
    assert re.fullmatch(taken_at["pattern"], datetime(2021, 6, 1, 18, 30).isoformat())
    folders = components["Filters"]["properties"]["folders"]
    assert folders["maxItems"] == MAX_FOLDERS and folders["items"]["maxLength"] == MAX_FOLDER_LENGTH

    size = next(
        p for p in schema["paths"]["/images/{image_id}/thumbnail"]["get"]["parameters"] if p["name"] == "size"
    )
    assert size["schema"]["enum"] == [128, 256, 512]
    rerank = components["SearchRequest"]["properties"]["rerank"]
    assert rerank["anyOf"][0]["enum"] == ["none"], "this server loaded no re-ranker"
    assert "min_score" not in components["SearchRequest"]["properties"]

    upload = schema["paths"]["/search/image"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert "image/jpeg" in upload["encoding"]["file"]["contentType"]
    assert upload["encoding"]["filters"]["contentType"] == "application/json"


def test_upload_filters_may_be_json_null(client: TestClient, photos: Path) -> None:
    image = next(photos.rglob("chelsea.png")).read_bytes()
    for filters in ("null", '{"formats": ["PNG"]}'):
        response = client.post(
            "/search/image", files={"file": ("q.png", image, "image/png")}, data={"filters": filters, "k": 2}
        )
        assert response.status_code == 200, (filters, response.text)


def test_upload_parts_are_the_declared_ones_each_once(client: TestClient, photos: Path) -> None:
    """A misspelt, nameless or repeated part was dropped (or one copy chosen) and a default used."""
    image = next(photos.rglob("chelsea.png")).read_bytes()
    upload = {"file": ("q.png", image, "image/png")}
    misspelt = client.post("/search/image", files=upload, data={"ofset": "5"})
    assert misspelt.status_code == 422 and "unexpected form part" in misspelt.json()["detail"]
    twice = client.post("/search/image", files=upload, data={"k": ["2", "3"]})
    assert twice.status_code == 422 and "more than once" in twice.json()["detail"]
    empty = client.post("/search/image", files=upload, data={"filters": ""})
    assert empty.status_code == 422, "an empty filters part is no JSON, as the schema says"
    body = client.get("/openapi.json").json()["paths"]["/search/image"]["post"]["requestBody"]
    reference = body["content"]["multipart/form-data"]["schema"]["$ref"].rsplit("/", 1)[-1]
    assert (
        client.get("/openapi.json").json()["components"]["schemas"][reference]["additionalProperties"]
        is False
    )


def test_a_query_of_blanks_is_refused_by_the_schema_and_the_check_alike(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()["components"]["schemas"]["SearchRequest"]
    (text,) = [branch for branch in schema["properties"]["query"]["anyOf"] if branch["type"] == "string"]
    pattern = re.compile(text["pattern"])
    for query in ("\v", " \t\n", "\f\r"):
        assert pattern.search(query) is None
        assert client.post("/search", json={"query": query}).status_code == 422
    for query in ("a cat", "\x1c"):  # str.strip() would call the second blank; the schema does not
        assert pattern.search(query) is not None
        assert client.post("/search", json={"query": query, "k": 1}).status_code == 200


def test_thumbnail_sizes_and_rerankers_outside_the_schema_get_4xx(client: TestClient) -> None:
    some_id = client.post("/search", json={"query": "x", "k": 1}).json()["results"][0]["image"]["id"]
    assert client.get(f"/images/{some_id}/thumbnail", params={"size": 300}).status_code == 400
    refused = client.post("/search", json={"query": "x", "rerank": "blip2"})
    assert refused.status_code == 400 and "not loaded on this server" in refused.json()["detail"]


def test_the_deepest_pages_the_schema_allows_are_short_not_refused(client: TestClient) -> None:
    """offset + k may pass the searcher's 10,000 results: that page is empty, not a 400."""
    some_id = client.post("/search", json={"query": "x", "k": 1}).json()["results"][0]["image"]["id"]
    deepest = client.post("/search", json={"query": "x", "k": 200, "offset": 10_000})
    assert deepest.status_code == 200 and deepest.json()["results"] == []
    assert deepest.json()["next_offset"] is None
    assert client.get(f"/images/{some_id}/similar", params={"k": 24, "offset": 9999}).status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        {"query": "x", "k": "5"},
        {"query": "x", "offset": True},
        {"query": "x", "filters": {"min_width": "100"}},
        {"query": "x", "filters": {"taken_before": 0}},
    ],
)
def test_json_bodies_take_the_types_the_schema_names(client: TestClient, body: dict) -> None:
    """Pydantic's lax mode took "5" for an integer and 0 for a date (a Unix time)."""
    response = client.post("/search", json=body)
    assert response.status_code == 422 and "must be a" in response.json()["detail"]


def test_optional_bounds_reach_the_json_schema(client: TestClient) -> None:
    components = client.get("/openapi.json").json()["components"]["schemas"]
    rerank_k = components["SearchRequest"]["properties"]["rerank_k"]["anyOf"][0]
    min_width = components["Filters"]["properties"]["min_width"]["anyOf"][0]
    assert (rerank_k["minimum"], rerank_k["maximum"]) == (1, 512) and "ge" not in rerank_k
    assert (min_width["minimum"], min_width["maximum"]) == (1, 1_000_000)


def test_error_reasons_name_library_paths_never_server_paths(
    client: TestClient, photos: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An OSError's text names the file it failed on: the 422 must say it as ROOT/relative."""
    some_id = client.post("/search", json={"query": "x", "k": 1}).json()["results"][0]["image"]["id"]

    def unreadable(source: str, *_args) -> None:
        raise PermissionError(13, "Permission denied", source)

    monkeypatch.setattr(client.app.state.pixseek.thumbnails, "get", unreadable)
    response = client.get(f"/images/{some_id}/thumbnail", params={"size": 512})
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert "Permission denied: 'photos/" in detail and str(photos) not in detail
