"""Composed and negative queries, region queries, and sorted searches with the adaptive cutoff,
through the rules (pixseek.search.query), the CLI and the API, on the tiny random-weight CLIP.

Random weights rank nothing, so these tests check what holds whatever the weights: the combination
rule, that a crop searches exactly what the cropped file would, that named images are left out,
that sorted results come in the order asked for and page through every match, and that every
mistake is one line (CLI) or a 4xx with a reason (API). What the features are worth is measured
on a trained model in docs/search.md.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import ExifTags, Image, ImageDraw

from cli_runner import cli, runner
from pixseek.cli import app
from pixseek.config import Settings
from pixseek.errors import PixseekError
from pixseek.library import Library
from pixseek.search.cutoff import robust_threshold
from pixseek.search.query import Crop, Query, QueryTerm, combine, split_weight
from pixseek.vocabulary import TermKind

TWIN_DATES = {"twin_a": datetime(2020, 5, 1), "twin_b": datetime(2018, 1, 2), "twin_c": datetime(2022, 3, 4)}


def _jpeg(image: Image.Image, path: Path, taken: datetime | None) -> None:
    exif = Image.Exif()
    if taken is not None:
        exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.DateTimeOriginal] = taken.strftime("%Y:%m:%d %H:%M:%S")
    image.save(path, "JPEG", quality=95, exif=exif)


@pytest.fixture
def dated(tmp_path: Path) -> Path:
    """Twelve distinct noisy pictures, and four "twins": the same pixels with different dates taken
    (one undated), which embed alike and so are each other's matches."""
    root = tmp_path / "dated"
    root.mkdir()
    rng = np.random.default_rng(3)
    for i in range(12):
        image = Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
        colour = tuple(int(c) for c in rng.integers(0, 255, 3))
        ImageDraw.Draw(image).rectangle((4 + i, 8, 40, 30 + i), fill=colour)
        _jpeg(image, root / f"noise_{i:02d}.jpg", None)
    twin = Image.new("RGB", (64, 64), (250, 250, 250))
    ImageDraw.Draw(twin).ellipse((10, 10, 54, 54), fill=(200, 20, 20))
    for name, taken in [*TWIN_DATES.items(), ("twin_d", None)]:
        _jpeg(twin, root / f"{name}.jpg", taken)
    return root


def _hits(*args: object) -> list[dict]:
    """``search ARGS --json``'s results (stdout only: notes such as the query go to stderr)."""
    result = runner.invoke(app, ["search", *map(str, args), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _id(folder: Path, name: str) -> int:
    (hit,) = [h for h in _hits("--image", folder / name, "-k", "20") if h["path"] == str(folder / name)]
    return int(hit["id"])


# ---- the rules --------------------------------------------------------------------------------


def test_terms_combine_as_the_normalised_weighted_sum_of_normalised_vectors() -> None:
    vectors = np.array([[3.0, 0.0, 0.0], [0.0, 0.5, 0.0], [0.0, 0.0, 2.0]], dtype=np.float32)
    combined = combine(vectors, [1.0, 0.5, -0.25])
    expected = np.array([1.0, 0.5, -0.25]) / np.linalg.norm([1.0, 0.5, -0.25])
    np.testing.assert_allclose(combined, expected, rtol=1e-6)
    with pytest.raises(PixseekError, match="cancel each other out"):
        combine(vectors[:1].repeat(2, axis=0), [1.0, -1.0])


def test_weights_crops_and_queries_refuse_what_has_no_meaning() -> None:
    assert split_weight("0.5:./pool.jpg") == (0.5, "./pool.jpg")
    assert split_weight("note: red") == (1.0, "note: red")  # a text with a colon stays a text
    assert split_weight("2e-1:leash") == (0.2, "leash")
    for spec, message in [("1..5:x", "not a number"), ("0:x", "non-zero"), ("1000:x", "up to 100")]:
        with pytest.raises(PixseekError, match=message):
            split_weight(spec)
    assert Crop.parse("8,8,32,16").box(64, 64) == (8, 8, 40, 24)  # integers: pixels
    assert Crop.parse("0.5,0,0.5,1").box(64, 48) == (32, 0, 64, 48)  # a decimal point: fractions
    for text, size, message in [
        ("0,0,100,10", (64, 64), "reaches outside the 64x64 image"),
        ("0.6,0,0.5,1.0", (64, 64), "reaches outside the image"),
        ("1,2,3", (64, 64), "give X,Y,W,H"),
        ("0,0,0,5", (64, 64), "width and height > 0"),
        ("a,b,c,d", (64, 64), "must be numbers"),
    ]:
        with pytest.raises(PixseekError, match=message):
            Crop.parse(text).box(*size)
    with pytest.raises(PixseekError, match="positive term"):
        Query((QueryTerm(TermKind.TEXT, "red", -1.0),))
    with pytest.raises(PixseekError, match="not to a text"):
        QueryTerm(TermKind.TEXT, "red", crop=Crop(0, 0, 1, 1))


def test_the_cutoff_is_a_robust_z_score_capped_below_the_best_score() -> None:
    rng = np.random.default_rng(0)
    background = np.concatenate([rng.normal(0.2, 0.05, 1800), rng.normal(0.6, 0.05, 200)])  # 10% match
    threshold = robust_threshold(background, z=3.0)
    assert threshold.median == pytest.approx(0.21, abs=0.01)  # the matches barely move it
    assert threshold.spread == pytest.approx(0.055, abs=0.01)  # nor the spread (a plain std: 0.13)
    standing_out = threshold.score(top=0.9)  # best match far above: the z-score decides
    assert standing_out == pytest.approx(threshold.median + 3 * threshold.spread)
    broad = threshold.score(top=0.3)  # best match within 3 spreads: capped below it, never empty
    assert broad == pytest.approx(0.3 - 0.5 * threshold.spread) and broad < 0.3


# ---- through the CLI --------------------------------------------------------------------------


def test_a_composed_query_is_its_terms_combined_and_leaves_out_the_images_it_names(
    cli_env: Path, dated: Path, clip_dir: Path
) -> None:
    cli("index", dated)
    twin_a, twin_b = _id(dated, "twin_a.jpg"), _id(dated, "twin_b.jpg")
    printed = cli("search", "--like", twin_a, "--plus", f"0.5:{dated / 'twin_b.jpg'}", "--minus", "0.5:red")
    assert f"query: {twin_a} +0.5:{twin_b} -0.5:red" in printed  # the indexed path became its id
    hits = _hits("--like", twin_a, "--plus", f"0.5:{dated / 'twin_b.jpg'}", "--minus", "0.5:red", "-k", "20")
    assert len(hits) == 14 and {twin_a, twin_b}.isdisjoint(hit["id"] for hit in hits)

    outside = dated.parent / "query.png"  # an image file that is not indexed: embedded from pixels
    Image.new("RGB", (40, 40), (0, 90, 200)).save(outside)
    with Library(Settings(model=str(clip_dir), precision="fp32")) as library:
        searcher = library.searcher()
        query = Query(
            (
                QueryTerm(TermKind.TEXT, "a red circle"),
                QueryTerm(TermKind.IMAGE, outside, 0.5),
                QueryTerm(TermKind.INDEXED, twin_a, -0.25),
            )
        )
        embedded = searcher.embed(query)
        encoder = library.encoder_for(library.collection())
        parts = np.stack(
            [
                encoder.embed_texts(["a red circle"])[0],
                encoder.embed_images([Image.open(outside).convert("RGB")])[0],
                library.store.embeddings([twin_a], encoder.dim)[1][0],
            ]
        )
        parts /= np.linalg.norm(parts, axis=1, keepdims=True)
        expected = parts.T @ np.array([1.0, 0.5, -0.25], dtype=np.float32)
        np.testing.assert_allclose(embedded.vector, expected / np.linalg.norm(expected), atol=1e-5)
        assert embedded.excluded == {twin_a}
        scores = {hit.id: hit.score for hit in searcher.search(query, k=20)}
        _, stored = library.store.embeddings(sorted(scores), encoder.dim)
        np.testing.assert_allclose(sorted(scores.values()), np.sort(stored @ embedded.vector), atol=1e-5)


def test_a_crop_searches_exactly_what_the_cropped_file_would(cli_env: Path, dated: Path) -> None:
    cli("index", dated)
    source = dated / "noise_03.jpg"
    cropped = dated.parent / "cropped.png"
    Image.open(source).convert("RGB").crop((16, 8, 48, 40)).save(cropped)
    by_file = _hits("--image", cropped, "-k", "6")[:5]
    by_pixels = _hits("--image", source, "--crop", "16,8,32,32", "-k", "5")
    by_fractions = _hits("--image", source, "--crop", "0.25,0.125,0.5,0.5", "-k", "5")
    as_scores = [[(hit["id"], round(hit["score"], 5)) for hit in hits] for hits in (by_file, by_pixels)]
    assert as_scores[0] == as_scores[1]
    assert [hit["id"] for hit in by_fractions] == [hit["id"] for hit in by_file]
    whole = _hits("--image", source, "-k", "5")
    assert [hit["score"] for hit in whole] != [hit["score"] for hit in by_pixels]  # the crop counted
    # An indexed image's region: its file is read again and cut; the image itself is left out.
    region = _hits("--like", source, "--crop", "16,8,32,32", "-k", "5")
    by_file_six = _hits("--image", cropped, "-k", "6")
    assert [hit["id"] for hit in region] == [h["id"] for h in by_file_six if h["path"] != str(source)][:5]


def test_a_date_sorted_search_lists_every_match_oldest_or_newest_first(cli_env: Path, dated: Path) -> None:
    """Random weights put every image within a few deviations of every other (cosines 0.86-0.99
    here): the cutoff's cap below the best score lets the twins (cosine 1) pass; some noise may."""
    cli("index", dated)
    twin_d = _id(dated, "twin_d.jpg")
    oldest = _hits("--like", twin_d, "--sort", "taken", "-k", "100")
    names = [Path(hit["path"]).stem for hit in oldest]
    twins = [name for name in names if name.startswith("twin_")]
    assert twins == ["twin_b", "twin_a", "twin_c"]  # 2018, 2020, 2022: every twin matches its twin
    dated_names = [name for name, hit in zip(names, oldest, strict=True) if hit["taken_at"]]
    assert names[: len(dated_names)] == dated_names  # the undated come after every dated one
    newest = _hits("--like", twin_d, "--sort=-taken", "-k", "100")
    assert [Path(h["path"]).stem for h in newest if h["taken_at"]] == ["twin_c", "twin_a", "twin_b"]
    report = cli("search", "--like", twin_d, "--sort", "path", "-k", "1")
    assert f"1 of {len(oldest)} matches shown" in report or len(oldest) == 1
    by_path = _hits("--like", twin_d, "--sort", "path", "-k", "100")
    assert [hit["path"] for hit in by_path] == sorted(hit["path"] for hit in oldest)
    # Without a cutoff every image matches: the collection by date, the query image left out.
    everything = _hits("--like", twin_d, "--sort", "taken", "--cutoff", "none", "-k", "100")
    assert len(everything) == 15 and [Path(h["path"]).stem for h in everything][:3] == [
        "twin_b",
        "twin_a",
        "twin_c",
    ]
    assert [h["path"] for h in everything[3:]] == sorted(str(p) for p in dated.glob("noise_*.jpg"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["a cat", "--plus", "./missing.jpg"], "no such image file: ./missing.jpg"),
        (["a cat", "--plus", "1..5:red"], "is not a number"),
        (["a cat", "--minus", "0:red"], "non-zero"),
        (["--image", "{twin}", "--crop", "0,0,100,100"], "reaches outside the 64x64 image"),
        (["--image", "{twin}", "--crop", "0,0,x,1"], "must be numbers"),
        (["a cat", "--crop", "0,0,10,10"], "cuts the query image"),
        (["a cat", "--sort", "sideways"], "Invalid value for '--sort'"),
        (["--minus", "red"], "needs a positive term"),
    ],
)
def test_query_mistakes_are_one_line(cli_env: Path, dated: Path, args: list[str], message: str) -> None:
    cli("index", dated)
    printed = cli("search", *[arg.format(twin=dated / "twin_a.jpg") for arg in args], code=2)
    assert message in printed and "Traceback" not in printed and len(printed.strip().splitlines()) == 1


# ---- through the API --------------------------------------------------------------------------


def _search(client: TestClient, **body: object) -> dict:
    response = client.post("/search", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def _ids(response: dict) -> list[int]:
    return [result["image"]["id"] for result in response["results"]]


def test_api_terms_compose_and_an_indexed_term_is_like_more_like_this(client: TestClient) -> None:
    some = _ids(_search(client, query="a cat", k=3))
    composed = _search(client, query="a cat", terms=[{"text": "a dog", "weight": -0.5}], k=5)
    assert composed["query"] == "a cat -0.5:a dog" and len(composed["results"]) == 5
    like = client.get(f"/images/{some[0]}/similar", params={"k": 5}).json()
    as_term = _search(client, terms=[{"image_id": some[0]}], k=5)
    assert _ids(as_term) == _ids(like) and some[0] not in _ids(as_term)
    everything = {"x": 0, "y": 0, "width": 1.0, "height": 1.0, "unit": "fraction"}
    whole = _search(client, terms=[{"image_id": some[0], "crop": everything}], k=5)
    assert _ids(whole)[:3] == _ids(like)[:3]  # the whole image re-embedded from its file


def test_api_upload_with_terms_and_a_crop(client: TestClient, sample_photo_paths: list[Path]) -> None:
    data = sample_photo_paths[0].read_bytes()
    files = {"file": ("q.png", data, "application/octet-stream")}
    crop = json.dumps({"x": 0, "y": 0, "width": 0.5, "height": 0.5, "unit": "fraction"})
    form = {"terms": json.dumps([{"text": "a cat", "weight": 0.5}]), "crop": crop, "k": "4"}
    response = client.post("/search/image", files=files, data=form)
    assert response.status_code == 200, response.text
    assert response.json()["query"] == "an uploaded image [crop 0,0,0.5,0.5] +0.5:a cat"
    outside = json.dumps({"x": 0, "y": 0, "width": 10_000, "height": 10})
    refused = client.post("/search/image", files=files, data={"crop": outside})
    assert refused.status_code == 400 and "reaches outside" in refused.json()["detail"]
    bad_json = client.post("/search/image", files=files, data={"terms": "[{"})
    assert bad_json.status_code == 422 and "terms" in bad_json.json()["detail"]
    bad_term = client.post("/search/image", files=files, data={"terms": '[{"text": "x", "weight": 0}]'})
    assert bad_term.status_code == 422 and "non-zero" in bad_term.json()["detail"]


def test_api_sorted_pages_hold_every_match_once_in_order(client: TestClient) -> None:
    anchor = _ids(_search(client, query="a cat", k=1))[0]
    first = _search(client, terms=[{"image_id": anchor}], sort="path", k=2)
    total = first["total"]
    assert total is not None and first["cutoff"] is not None
    seen, response, offset = [], first, 0
    while True:
        seen += [(r["image"]["root"], r["image"]["path"]) for r in response["results"]]
        if response["next_offset"] is None:
            break
        offset = response["next_offset"]
        response = _search(client, terms=[{"image_id": anchor}], sort="path", k=2, offset=offset)
    assert len(seen) == total == len(set(seen)) and seen == sorted(seen)


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"terms": [{"text": "x", "weight": 0}]}, 422, "non-zero"),
        ({"terms": [{"text": "x", "weight": "heavy"}]}, 422, "JSON number"),
        ({"terms": [{"text": "x", "image_id": 1}]}, 422, "text: Extra inputs are not permitted"),
        ({"terms": [{"text": "x", "crop": {"x": 0, "y": 0, "width": 1, "height": 1}}]}, 422, "crop: Extra"),
        ({"terms": [{"text": "x", "weight": -1}]}, 422, "a term needs a positive weight"),
        ({"terms": [{"image_id": 999_999}]}, 404, "999999"),
        ({"k": 3}, 422, "give a query, terms, or both"),
        ({"query": "x", "terms": [{"text": "x", "weight": -1}]}, 400, "cancel each other out"),
        ({"query": "x", "sort": "sideways"}, 422, "sort"),
    ],
)
def test_api_query_mistakes_are_4xx_with_a_reason(
    client: TestClient, body: dict, status: int, message: str
) -> None:
    response = client.post("/search", json=body)
    assert response.status_code == status and message in response.json()["detail"], response.text


def test_api_region_of_an_indexed_image_outside_it_is_a_400(client: TestClient) -> None:
    anchor = _search(client, query="a cat", k=1)["results"][0]["image"]
    box = {"x": 0, "y": 0, "width": anchor["width"] + 1, "height": 1}
    response = client.post("/search", json={"terms": [{"image_id": anchor["id"], "crop": box}]})
    assert response.status_code == 400 and "reaches outside" in response.json()["detail"]


def test_a_composed_query_is_re_ranked_by_its_positive_texts_and_says_so(
    cli_env: Path, dated: Path, blip2_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIXSEEK_BLIP2_MODEL", str(blip2_dir))
    cli("index", dated)
    rerank = ("--rerank", "blip2", "--rerank-k", "16")
    plain = {hit["id"]: hit["rerank_scores"]["blip2"] for hit in _hits("a red circle", *rerank, "-k", "16")}
    composed_args = ("a red circle", "--plus", "0.5:round", "--minus", "blue", "--plus", dated / "twin_a.jpg")
    printed = cli("search", *composed_args, *rerank, "-k", "5")
    assert "re-ranked by the query's positive text: 'a red circle, round'" in printed
    composed = _hits(*composed_args, *rerank, "-k", "5")
    assert len(composed) == 5 and all(set(hit["rerank_scores"]) == {"blip2"} for hit in composed)
    # The re-ranker read the positive texts only: the same text gives the same probability as a
    # plain search re-ranked with that text.
    again = {
        hit["id"]: hit["rerank_scores"]["blip2"] for hit in _hits("a red circle, round", *rerank, "-k", "16")
    }
    assert all(hit["rerank_scores"]["blip2"] == pytest.approx(again[hit["id"]], abs=1e-5) for hit in composed)
    assert any(again[i] != pytest.approx(plain[i], abs=1e-5) for i in again)  # the text did matter
    only_images = cli("search", "--like", dated / "twin_a.jpg", "--minus", "blue", *rerank, "-k", "2")
    assert "this one has none, so it is not re-ranked" in only_images


def test_browsing_orders_in_sql_and_many_folders_give_the_same_order(
    cli_env: Path, dated: Path, clip_dir: Path
) -> None:
    """Without a cutoff a sorted search is one sorted SQL query; filters naming more folders than
    one query takes fall back to ordering every match in Python, with the same result."""
    from pixseek.library import SearchFilters
    from pixseek.vocabulary import Cutoff, SortOrder

    cli("index", dated)
    with Library(Settings(model=str(clip_dir), precision="fp32")) as library:
        few = SearchFilters(folders=(str(dated),))
        many = SearchFilters(folders=(str(dated), *(f"/nowhere/{i}" for i in range(150))))
        for sort in (SortOrder.TAKEN, SortOrder.NEWEST, SortOrder.PATH):
            runs = [
                library.search("a red circle", k=50, filters=filters, sort=sort, cutoff=Cutoff.NONE)
                for filters in (few, many)
            ]
            assert [h.id for h in runs[0].hits] == [h.id for h in runs[1].hits]
            assert runs[0].total == runs[1].total == 16 == len(runs[0].hits)
            assert [h.score for h in runs[0].hits] == pytest.approx([h.score for h in runs[1].hits], abs=1e-5)
