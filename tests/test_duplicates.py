"""Duplicate finding (issue 14, part 4): the perceptual hash, the k-NN candidate pairs and union-find,
exact and near groups end to end through the CLI and the API on the tiny CLIP, the keeper rule, and
the migration that adds the hash to a database indexed before it (filled on demand)."""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import ExifTags, Image
from sqlalchemy import insert, text

from api_client import wait_for_job
from cli_runner import cli, runner
from pixseek.api.app import create_app
from pixseek.api.config import ServerSettings
from pixseek.cli import app
from pixseek.config import Settings
from pixseek.library import IndexedImage, Library
from pixseek.media.decode import decode_image
from pixseek.media.perceptual import hamming, perceptual_hash
from pixseek.search.duplicates import UnionFind, near_pairs
from pixseek.service.duplicates import keeper_rank
from pixseek.store.models import Collection, ImageRecord

# ---- the perceptual hash ---------------------------------------------------------------------


def _jpeg(image: Image.Image, quality: int = 75, exif: bytes | None = None) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality, **({"exif": exif} if exif else {}))
    return buffer.getvalue()


def _photo(sample_photo_paths: list[Path], name: str) -> Image.Image:
    return Image.open(next(p for p in sample_photo_paths if p.name == name)).convert("RGB")


def test_the_hash_survives_copying_and_tells_photos_apart(sample_photo_paths: list[Path]) -> None:
    astronaut = _photo(sample_photo_paths, "astronaut.png")
    original = perceptual_hash(astronaut)
    assert -(2**63) <= original < 2**63  # fits BIGINT
    small = astronaut.resize((300, 300), Image.Resampling.LANCZOS)
    brighter = Image.eval(astronaut, lambda v: min(255, int(v * 1.2) + 10))
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6  # stored a quarter turn left; decoding turns it back
    rotated = decode_image(_jpeg(astronaut.transpose(Image.Transpose.ROTATE_90), 90, exif.tobytes())).image
    for copy in (small, decode_image(_jpeg(astronaut, 30)).image, brighter, rotated):
        assert hamming(original, perceptual_hash(copy)) <= 4
    others = [_photo(sample_photo_paths, name) for name in ("chelsea.png", "coffee.png", "rocket.jpg")]
    assert all(hamming(original, perceptual_hash(other)) >= 16 for other in others)


def test_the_hash_of_a_draft_decoded_jpeg_is_that_of_the_full_decode(sample_photo_paths: list[Path]) -> None:
    for name in ("chelsea.png", "coffee.png", "rocket.jpg"):
        big = _photo(sample_photo_paths, name).resize((2000, 1400), Image.Resampling.BICUBIC)
        data = _jpeg(big, 90)
        drafted = decode_image(data, min_side=64).image
        assert max(drafted.size) < 1000  # libjpeg scaled it
        assert hamming(perceptual_hash(drafted), perceptual_hash(decode_image(data).image)) <= 2


def test_hamming_takes_signed_hashes_and_arrays() -> None:
    assert hamming(-1, 0) == 64 and hamming(-(2**63), 0) == 1 and hamming(5, 5) == 0
    assert hamming(np.array([0, -1, 3]), np.array([1, -1, 0])).tolist() == [1, 0, 2]


# ---- candidate pairs and groups --------------------------------------------------------------


def _exact_search(vectors: np.ndarray, ids: np.ndarray):
    def search(queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores = queries @ vectors.T
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(scores, order, axis=1), ids[order]

    return search


def _unit(matrix: np.ndarray) -> np.ndarray:
    return (matrix / np.linalg.norm(matrix, axis=1, keepdims=True)).astype(np.float32)


def test_near_pairs_finds_each_pair_once_and_widens_saturated_queries() -> None:
    rng = np.random.default_rng(0)
    distinct = _unit(rng.standard_normal((30, 16)))
    burst = _unit(distinct[0] + 0.01 * rng.standard_normal((25, 16)))  # 26 near-identical shots
    twin = _unit(distinct[1:2] + 0.05 * rng.standard_normal((1, 16)))
    vectors = np.concatenate([distinct, burst, twin])
    ids = np.arange(100, 100 + len(vectors), dtype=np.int64)
    chunks = [(ids[:20], vectors[:20]), (ids[20:], vectors[20:])]
    pairs = near_pairs(chunks, _exact_search(vectors, ids), 0.95, k=4)
    assert (pairs.first < pairs.second).all()
    assert len({(a, b) for a, b in zip(pairs.first.tolist(), pairs.second.tolist(), strict=True)}) == len(
        pairs
    )
    found = set(zip(pairs.first.tolist(), pairs.second.tolist(), strict=True))
    assert (101, int(ids[-1])) in found  # the twin
    burst_ids = {100, *ids[30:55].tolist()}
    in_burst = {pair for pair in found if set(pair) <= burst_ids}
    assert len(in_burst) == len(burst_ids) * (len(burst_ids) - 1) // 2  # k=4 widened to all 25 others
    assert (pairs.similarity >= 0.95).all()


@pytest.mark.parametrize("kind", ["exact", "temporary ivf", "collection ivf"])
def test_the_scan_index_finds_planted_pairs(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whichever index answers (the exact one, a temporary IVF for a large exact index, the
    collection's own IVF with fewer probes), planted near-duplicates are found."""
    from pixseek.store import self_join
    from pixseek.store.ann.base import BaseIndex
    from pixseek.store.ann.plan import IndexPlan
    from pixseek.store.ann.source import ArrayVectors
    from pixseek.store.vector_index import VectorIndex
    from pixseek.vocabulary import IndexKind

    rng = np.random.default_rng(1)
    centres = _unit(rng.standard_normal((20, 32)))
    vectors = _unit(centres[rng.integers(0, 20, 3000)] + 0.3 * rng.standard_normal((3000, 32)))
    vectors[-30:] = _unit(vectors[:30] + 0.05 * rng.standard_normal((30, 32)))  # 30 planted pairs
    ids = np.arange(1, 3001, dtype=np.int64)
    source = ArrayVectors(ids, vectors)
    if kind == "collection ivf":
        index = VectorIndex.from_base(BaseIndex.build(IndexPlan(IndexKind.IVF, nlist=32), source), source)
    else:
        index = VectorIndex(32, source=source)
        index.delta.add_with_ids(vectors, ids)
        if kind == "temporary ivf":
            monkeypatch.setattr(self_join, "EXACT_SCAN_MAX", 1000)
    search = self_join.neighbour_search(index)
    pairs = near_pairs(source.chunks(500), search, 0.95)
    found = set(zip(pairs.first.tolist(), pairs.second.tolist(), strict=True))
    assert {(int(i), int(i) + 2970) for i in range(1, 31)} <= found


def test_union_find_groups_are_deterministic() -> None:
    pairs = [(5, 9), (1, 2), (9, 7), (3, 4), (2, 8), (4, 3)]
    groups = []
    for order in (pairs, pairs[::-1]):
        union = UnionFind()
        union.union_all([20, 21, 22])
        for a, b in order:
            union.union(a, b)
        union.find(30)  # a singleton is no group
        groups.append(union.groups())
    assert groups[0] == groups[1] == [[1, 2, 8], [3, 4], [5, 7, 9], [20, 21, 22]]


def _image(image_id: int, width: int, height: int, size: int, taken: datetime | None) -> IndexedImage:
    return IndexedImage(
        image_id, f"/p/{image_id}.jpg", size, "JPEG", width, height, taken, None, None, None, "h"
    )


def test_keeper_most_pixels_then_largest_file_then_oldest_then_lowest_id() -> None:
    old, new = datetime(2020, 1, 1), datetime(2021, 1, 1)
    candidates = [
        _image(1, 100, 100, 900, old),
        _image(2, 300, 100, 500, new),  # the most pixels
        _image(3, 100, 200, 700, new),
        _image(4, 100, 200, 700, None),  # no date: after those with one
        _image(5, 100, 200, 700, old),  # the oldest of the 700-byte ones
        _image(6, 100, 200, 700, old),
        _image(7, 100, 200, 800, None),  # the largest file of the 20,000-pixel ones
    ]
    assert [image.id for image in sorted(candidates, key=keeper_rank)] == [2, 7, 5, 6, 3, 4, 1]


# ---- end to end: CLI ---------------------------------------------------------------------------


@pytest.fixture
def duplicated(photos: Path) -> dict[str, Path]:
    """The sample photos plus an exact copy of chelsea and a smaller, recompressed astronaut."""
    chelsea = next(photos.rglob("chelsea.png"))
    copy = photos / "outdoor" / "chelsea copy.png"
    shutil.copy(chelsea, copy)
    astronaut = next(photos.rglob("astronaut.png"))
    small = photos / "indoor" / "astronaut small.jpg"
    Image.open(astronaut).convert("RGB").resize((320, 320), Image.Resampling.LANCZOS).save(small, quality=70)
    return {"chelsea": chelsea, "copy": copy, "astronaut": astronaut, "small": small}


def _names(groups: list[dict]) -> list[set[str]]:
    return [{Path(member["path"]).name for member in group["members"]} for group in groups]


# What the defaults group among the sample photos besides the planted copies: two files with the
# same chessboard (grey and RGB: the same pixels), and the stereo pair's two cameras, a look-alike
# the hash cannot tell from a copy (docs/search.md, "Duplicates").
EXPECTED = [
    {"chelsea.png", "chelsea copy.png"},
    {"astronaut.png", "astronaut small.jpg"},
    {"chessboard_GRAY.png", "chessboard_RGB.png"},
    {"motorcycle_left.png", "motorcycle_right.png"},
]


def test_cli_groups_exact_and_near_copies_and_suggests_the_keeper(
    cli_env: Path, duplicated: dict[str, Path]
) -> None:
    cli("index", duplicated["chelsea"].parent.parent, "--quiet")
    report = json.loads(cli("duplicates", "--json"))
    groups = report["groups"]
    assert sorted(map(sorted, _names(groups))) == sorted(map(sorted, EXPECTED))
    by_name = {frozenset(names): group for names, group in zip(_names(groups), groups, strict=True)}
    exact = by_name[frozenset(EXPECTED[0])]
    assert exact["kind"] == "exact" and exact["similarity"] == 1.0
    near = by_name[frozenset(EXPECTED[1])]
    assert near["kind"] == "near" and near["similarity"] >= 0.9 and near["distance"] <= 12
    keeper = next(member for member in near["members"] if member["id"] == near["keeper"])
    assert Path(keeper["path"]).name == "astronaut.png" and near["members"][0] == keeper  # most pixels
    assert report["images"] >= 27 and report["hashed"] == 0  # hashed while indexing

    table = cli("duplicates")
    assert "the same content" in table and "near-duplicates" in table and "keep" in table
    assert str(duplicated["small"]) in table
    assert json.loads(cli("duplicates", "--json", "--max-distance", "0"))["groups"] != groups
    strict = _names(json.loads(cli("duplicates", "--json", "--threshold", "1"))["groups"])
    assert EXPECTED[0] in strict and EXPECTED[1] not in strict  # exact copies need no threshold


def test_the_indexer_stores_the_hash_and_a_copy_gets_its_originals(
    settings: Settings, duplicated: dict[str, Path]
) -> None:
    with Library(settings) as library:
        library.indexer(library.load_encoder()).run([duplicated["chelsea"].parent.parent])
        collection = library.collection()
        records = library.store.images(library.store.indexed_ids(collection.id).tolist())
        rows = {Path(r.path).name: r for r in records.values()}
    assert all(row.perceptual_hash is not None for row in rows.values())
    assert rows["chelsea copy.png"].perceptual_hash == rows["chelsea.png"].perceptual_hash
    expected = perceptual_hash(decode_image(duplicated["astronaut"].read_bytes()).image)
    assert rows["astronaut.png"].perceptual_hash == expected


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["duplicates", "--threshold", "0"], "--threshold must be a cosine similarity in (0, 1]"),
        (["duplicates", "--threshold", "1.5"], "--threshold must be a cosine similarity in (0, 1]"),
        (["duplicates", "--max-distance", "65"], "--max-distance must be a number of bits in 0..64"),
        (["duplicates", "--threshold", "high"], "Invalid value for '--threshold'"),
        (["duplicates"], "no collection 'default' yet"),
    ],
)
def test_cli_errors_are_one_line(cli_env: Path, args: list[str], message: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_help_says_what_is_grouped_and_which_signal_decides(cli_env: Path) -> None:
    text = " ".join(cli("duplicates", "--help").split())
    for words in ("Exact copies", "perceptual hashes", "--threshold", "--max-distance", "Keeper"):
        assert words in text
    assert "duplicates" in cli("--help")


# ---- end to end: API -------------------------------------------------------------------------


@pytest.fixture
def duplicates_client(server_settings: ServerSettings, duplicated: dict[str, Path]) -> Iterator[TestClient]:
    with TestClient(create_app(server_settings)) as client:
        assert wait_for_job(client, client.post("/index").json()["id"])["state"] == "done"
        yield client


def test_api_pages_the_groups_with_served_paths_and_thumbnails(duplicates_client: TestClient) -> None:
    body = duplicates_client.get("/duplicates").json()
    assert body["total"] == len(EXPECTED) and body["next_offset"] is None and body["offset"] == 0
    assert sorted(map(sorted, _names(body["groups"]))) == sorted(map(sorted, EXPECTED))
    assert body["threshold"] == 0.9 and body["max_distance"] == 12
    for group in body["groups"]:
        assert group["members"][0]["id"] == group["keeper_id"]
        for member in group["members"]:
            assert member["root"] == "photos" and not member["path"].startswith("/")
            assert duplicates_client.get(member["thumbnail_url"]).status_code == 200

    pages = [duplicates_client.get("/duplicates", params={"limit": 1, "offset": i}).json() for i in range(4)]
    assert [page["groups"][0] for page in pages] == body["groups"]
    assert [page["next_offset"] for page in pages] == [1, 2, 3, None]
    assert duplicates_client.get("/duplicates", params={"offset": 10}).json()["groups"] == []
    strict = duplicates_client.get("/duplicates", params={"threshold": 1, "max_distance": 0}).json()
    assert {group["kind"] for group in strict["groups"]} == {"exact"} or strict["total"] < body["total"]


@pytest.mark.parametrize(
    "params",
    [
        {"threshold": 0},
        {"threshold": 1.01},
        {"threshold": "high"},
        {"max_distance": 65},
        {"max_distance": -1},
        {"limit": 0},
        {"limit": 201},
        {"offset": -1},
    ],
)
def test_api_refuses_bad_parameters_with_a_reason(duplicates_client: TestClient, params: dict) -> None:
    response = duplicates_client.get("/duplicates", params=params)
    assert response.status_code == 422 and next(iter(params)) in response.json()["detail"]


def test_api_without_a_collection_is_404(server_settings: ServerSettings) -> None:
    with TestClient(create_app(server_settings)) as client:
        response = client.get("/duplicates")
    assert response.status_code == 404 and "no collection" in response.json()["detail"]


def test_the_page_loads_the_duplicates_view(client: TestClient) -> None:
    assert 'src="static/duplicates.js"' in client.get("/").text
    script = client.get("/static/duplicates.js")
    assert script.status_code == 200 and "/duplicates" in script.text


# ---- a database indexed before the hash was stored ---------------------------------------------


def test_upgrade_from_0002_keeps_rows_and_the_hash_is_filled_on_demand(
    database_url: str, tmp_path: Path, sample_photo_paths: list[Path]
) -> None:
    from alembic import command

    from pixseek.store.database import _alembic_config, create_store_engine, head_revision

    folder = tmp_path / "old"
    folder.mkdir()
    chelsea = folder / "chelsea.png"
    shutil.copy(next(p for p in sample_photo_paths if p.name == "chelsea.png"), chelsea)
    shutil.copy(chelsea, folder / "chelsea copy.png")
    Image.open(chelsea).convert("RGB").resize((225, 150)).save(folder / "chelsea small.jpg", quality=70)
    shutil.copy(next(p for p in sample_photo_paths if p.name == "coffee.png"), folder / "coffee.png")
    engine = create_store_engine(database_url)
    config = _alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0002")
    cat, near_cat, coffee = _unit(np.array([[1, 0, 0, 0], [1, 0.02, 0.01, 0], [0, 1, 0, 0]], np.float32))
    rows = [  # name, content hash, vector: two copies of one file, a smaller copy, another photo
        ("chelsea.png", "h-cat", cat),
        ("chelsea copy.png", "h-cat", cat),
        ("chelsea small.jpg", "h-small", near_cat),
        ("coffee.png", "h-coffee", coffee),
    ]
    with engine.begin() as connection:
        connection.execute(
            insert(Collection.__table__).values(
                id=1, name="default", model_id="m", model_fingerprint="f", dim=4, precision="fp32",
                generation=1, created_at=datetime(2026, 1, 1),
            )
        )  # fmt: skip
        for name, content_hash, vector in rows:
            path = folder / name
            with Image.open(path) as image:
                (width, height), image_format = image.size, image.format
            connection.execute(
                insert(ImageRecord.__table__).values(
                    collection_id=1, path=str(path), size=path.stat().st_size, mtime_ns=1,
                    content_hash=content_hash, status="indexed", format=image_format, width=width,
                    height=height, indexed_at=datetime(2026, 1, 1),
                    embedding=np.asarray(vector, "<f4").tobytes(),
                )
            )  # fmt: skip
    engine.dispose()

    settings = Settings(database_url=database_url, data_dir=tmp_path / "data")
    with Library(settings) as library:
        store = library.store
        ids = store.indexed_ids(1).tolist()
        assert len(ids) == 4 and set(store.perceptual_hashes(ids).values()) == {None}
        report = library.duplicates()
        assert [sorted(Path(m.path).name for m in group.members) for group in report.groups] == [
            ["chelsea copy.png", "chelsea small.jpg", "chelsea.png"]
        ]
        (group,) = report.groups
        assert group.kind == "near" and Path(group.keeper.path).name == "chelsea.png"  # lowest id
        assert report.hashed == 3  # the candidates only: coffee was never a candidate
        stored = {Path(store.images([i])[i].path).name: h for i, h in store.perceptual_hashes(ids).items()}
        assert (
            stored["coffee.png"] is None and stored["chelsea.png"] == stored["chelsea copy.png"] is not None
        )
    with Library(settings) as library:
        assert library.duplicates().hashed == 0  # stored by the first run
    with create_store_engine(database_url).connect() as connection:
        assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar() == head_revision()


# ---- the page ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_duplicates_view_in_a_browser(server_settings: ServerSettings, duplicated: dict[str, Path]) -> None:
    """The view lists the groups with loaded thumbnails, the keeper first and marked, and a file
    name that looks like markup as text; on a phone's width nothing scrolls sideways."""
    import socket
    import threading
    import time

    import uvicorn
    from test_web_browser import CHROMIUM, CHROMIUM_ARGS, HOSTILE_NAME, _require_browser, no_horizontal_scroll

    sync_api = _require_browser()
    photos = duplicated["chelsea"].parent.parent
    shutil.copy2(next(photos.rglob("rocket.jpg")), photos / "outdoor" / HOSTILE_NAME)
    with Library(server_settings) as library:
        library.indexer(library.load_encoder()).run([photos])
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(server_settings), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        assert thread.is_alive()
        time.sleep(0.05)
    try:
        with sync_api.sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            for width in (1280, 390):
                page = chromium.new_page(
                    viewport={"width": width, "height": 900},
                    base_url=f"http://127.0.0.1:{sock.getsockname()[1]}",
                )
                errors: list[str] = []
                page.on("pageerror", lambda error, errors=errors: errors.append(str(error)))
                page.goto("/")
                page.get_by_role("button", name="Duplicates").click()
                page.locator("#duplicates-summary").filter(has_text="groups of duplicates").wait_for()
                groups = page.locator(".dup-group")
                assert groups.count() == len(EXPECTED) + 1  # and the rocket's markup-named copy
                for number in range(groups.count()):
                    members = groups.nth(number).locator(".dup-member")
                    assert members.count() >= 2 and "keeper" in (members.first.get_attribute("class") or "")
                    assert groups.nth(number).locator(".keeper").count() == 1
                page.wait_for_function(
                    "() => [...document.querySelectorAll('.dup-member img')].every(i => i.naturalWidth > 0)"
                )
                assert page.locator(".dup-name").filter(has_text=HOSTILE_NAME).count() == 1
                assert page.locator("img[src='x']").count() == 0 and page.title() == "pixseek"
                assert no_horizontal_scroll(page) and errors == []
                page.get_by_role("button", name="Hide duplicates").click()
                assert page.locator("#duplicates").is_hidden()
                page.close()
            chromium.close()
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
