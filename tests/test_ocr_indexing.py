"""OCR at index time: `index --ocr` reads the words of new images in the decoding pool, records the
choice on the collection (later runs, the watcher's updates and the server follow it), reads images
indexed before OCR was turned on, and loses nothing when the engine cannot read a picture.

The real RapidOCR engine runs (its models ship in the ``rapidocr-onnxruntime`` wheel): signs with
large clean print, so the assertions are about the indexing, not about OCR accuracy (that is
bench/bench_ocr.py's job).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
from pathlib import Path

import pytest
import skimage
from fastapi.testclient import TestClient
from PIL import Image, ImageDraw, ImageFont

from api_client import wait_for_job
from cli_runner import cli
from pixseek.api.app import create_app
from pixseek.api.config import ServerSettings
from pixseek.config import Settings
from pixseek.indexer.walker import FileEntry
from pixseek.library import Library, OcrChoice
from pixseek.ocr.reader import OcrReader
from pixseek.store.ocr_queries import OcrReading
from pixseek.store.records import TEXT_OCR, KeywordText, TextWord
from pixseek.vocabulary import OcrEngine

FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")
ASTRONAUT = Path(skimage.__file__).parent / "data" / "astronaut.png"

if importlib.util.find_spec("rapidocr_onnxruntime") is None and not os.environ.get("CI"):
    pytest.skip("rapidocr is not installed (pip install 'pixseek[ocr]')", allow_module_level=True)


def _sign(
    path: Path, words: str, size: tuple[int, int] = (2400, 1600), at: tuple[int, int] = (300, 700)
) -> None:
    """A JPEG sign with ``words`` in large black print on white; at 2400x1600 the indexer's draft
    decode halves it, so the stored boxes must be scaled back to the full size."""
    image = Image.new("RGB", size, "white")
    ImageDraw.Draw(image).text(at, words, font=ImageFont.truetype(str(FONT), 110), fill="black")
    image.save(path, quality=92)


def _ocr_ids(library: Library, words: str) -> list[int]:
    hits = library.store.keyword_search(library.collection().id, words)
    return [hit.image_id for hit in hits if any(m.source == TEXT_OCR for m in hit.matches)]


@pytest.fixture
def signs(tmp_path: Path) -> Path:
    folder = tmp_path / "signs"
    folder.mkdir()
    _sign(folder / "a.jpg", "MARMALADE STATION")
    _sign(folder / "b.jpg", "TUNDRA 48213", size=(1400, 900), at=(100, 380))
    shutil.copy(ASTRONAUT, folder / "photo.png")  # a photo without text: read, no words
    return folder


@pytest.fixture
def library(settings: Settings, database_url: str) -> Library:
    library = Library(settings.model_copy(update={"database_url": database_url}))
    yield library
    library.close()


def test_index_with_ocr_stores_words_with_full_size_boxes_and_records_the_choice(
    library: Library, signs: Path
) -> None:
    encoder = library.load_encoder()
    report = library.indexer(encoder, ocr=OcrChoice(True)).run([signs])
    assert (report.embedded, report.text_read, report.text_unread) == (3, 3, [])
    collection = library.collection()
    assert collection.ocr is not None and collection.ocr.engine == OcrEngine.RAPIDOCR
    assert collection.ocr.languages == ("en",)
    (hit,) = library.store.keyword_search(collection.id, "marmalade")
    row = library.store.images([hit.image_id])[hit.image_id]
    assert Path(row.path).name == "a.jpg" and row.ocr == "rapidocr:en"
    (match,) = [m for m in hit.matches if m.source == TEXT_OCR]
    assert match.box is not None and match.confidence is not None and match.confidence > 0.5
    left, top, right, bottom = match.box
    # The word was drawn at (300, 700) of the 2400x1600 original, 110 px type: decoded at half
    # size for OCR, its box must come back in full-size pixels, not the decoded ones.
    assert 250 < left < 400 and 650 < top < 780 and right > 900 and 780 < bottom < 900
    assert _ocr_ids(library, "tundra 48213") != []
    photo = library.store.image_by_path(collection.id, str(signs / "photo.png"))
    assert photo is not None and photo.ocr == "rapidocr:en"  # read, found nothing: not read again
    again = library.indexer(encoder).run([signs])  # the record applies; nothing left to read
    assert (again.unchanged, again.text_read) == (3, 0)


def test_later_runs_and_watcher_updates_follow_the_recorded_choice(library: Library, signs: Path) -> None:
    encoder = library.load_encoder()
    library.indexer(encoder, ocr=OcrChoice(True)).run([signs])
    _sign(signs / "new.jpg", "PELICAN HARBOUR", size=(1200, 800), at=(80, 330))
    report = library.indexer(encoder).run([signs])  # no choice given: the collection's record
    assert (report.embedded, report.text_read) == (1, 1) and len(_ocr_ids(library, "pelican")) == 1
    _sign(signs / "watched.jpg", "WALRUS QUAY", size=(1200, 800), at=(80, 330))
    stat = (signs / "watched.jpg").stat()
    update = library.indexer(encoder).update(
        [FileEntry(signs / "watched.jpg", stat.st_size, stat.st_mtime_ns)]
    )
    assert (update.embedded, update.text_read) == (1, 1) and len(_ocr_ids(library, "walrus quay")) == 1
    library.indexer(encoder, ocr=OcrChoice(False))  # --no-ocr: recorded, new images are not read
    assert library.collection().ocr is None
    _sign(signs / "late.jpg", "OSPREY", size=(1200, 800), at=(80, 330))
    late = library.indexer(encoder).run([signs])
    assert (late.embedded, late.text_read) == (1, 0) and _ocr_ids(library, "osprey") == []
    assert len(_ocr_ids(library, "pelican")) == 1  # words read before stay searchable


def test_turning_ocr_on_reads_images_indexed_before_and_copies_take_the_reading(
    library: Library, signs: Path
) -> None:
    encoder = library.load_encoder()
    first = library.indexer(encoder).run([signs])
    assert (first.embedded, first.text_read) == (3, 0) and _ocr_ids(library, "marmalade") == []
    seen: list[tuple[int, int]] = []
    report = library.indexer(encoder, ocr=OcrChoice(True)).run(
        [signs], progress=lambda d, t: seen.append((d, t))
    )
    assert (report.unchanged, report.embedded, report.text_read) == (3, 0, 3)
    assert seen[-1] == (6, 6)  # the progress bar goes on past the walk, one step per image read
    assert len(_ocr_ids(library, "marmalade station")) == 1
    shutil.copy(signs / "a.jpg", signs / "copy_of_a.jpg")
    copied = library.indexer(encoder).run([signs])
    assert (copied.copied, copied.text_read) == (1, 0)  # the copy takes its original's words
    assert len(_ocr_ids(library, "marmalade")) == 2
    relang = library.indexer(encoder, ocr=OcrChoice(languages=("en", "de"))).run([signs])
    assert relang.text_read == 4 and library.collection().ocr_signature == "rapidocr:en+de"


class _Failing:
    """An engine that raises on every picture, as a broken model or an odd image would."""

    name = "rapidocr"
    languages = ("en",)
    thread_safe = True

    def recognise(self, image: Image.Image) -> list:
        raise RuntimeError("onnxruntime: invalid input")


def test_an_image_the_engine_rejects_is_still_indexed_and_reported(
    library: Library, signs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("pixseek.ocr.loader.load_ocr", lambda *a, **k: OcrReader(_Failing()))
    Image.new("RGB", (3, 3), "white").save(signs / "tiny.png")  # too small to hold a glyph
    report = library.indexer(library.load_encoder(), ocr=OcrChoice(True)).run([signs])
    assert report.embedded == 4 and report.failed == []
    reasons = dict(report.text_unread)
    assert "engine failed: RuntimeError" in reasons[str(signs / "a.jpg")]
    assert "too small" in reasons[str(signs / "tiny.png")]
    assert len(library.searcher().by_text("a sign", k=10)) == 4  # every image searchable by meaning


def test_a_file_gone_before_its_text_is_read_is_reported_not_fatal(library: Library, signs: Path) -> None:
    encoder = library.load_encoder()
    library.indexer(encoder).run([signs])
    stat = (signs / "b.jpg").stat()
    entry = FileEntry(signs / "b.jpg", stat.st_size, stat.st_mtime_ns)
    (signs / "b.jpg").unlink()  # gone between the watcher's event and the OCR read
    report = library.indexer(encoder, ocr=OcrChoice(True)).update([entry])
    assert report.text_read == 0 and "gone" in dict(report.text_unread)[str(signs / "b.jpg")]
    assert library.indexer(encoder).run([signs]).text_read == 2  # the others are read next run


def test_recorded_readings_replace_the_old_words_in_one_step(library: Library, signs: Path) -> None:
    library.indexer(library.load_encoder()).run([signs])
    store, c = library.store, library.collection().id
    image = store.image_by_path(c, str(signs / "a.jpg"))
    assert image is not None
    word = TextWord("heron", (1.0, 2.0, 30.0, 12.0), 0.9)
    assert store.record_ocr({image.id: OcrReading("rapidocr:en", KeywordText.from_words([word]))}) == 1
    assert _ocr_ids(library, "heron") == [image.id]
    store.record_ocr({image.id: OcrReading("rapidocr:en+de", None), 999_999: OcrReading("x:en", None)})
    assert _ocr_ids(library, "heron") == [] and store.images([image.id])[image.id].ocr == "rapidocr:en+de"


def test_cli_index_ocr_status_and_search(cli_env: Path, signs: Path) -> None:
    output = cli("index", signs, "--ocr", "--ocr-lang", "en,de")
    assert "OCR read 3 images" in output
    status = json.loads(cli("status", "--json"))["collections"][0]
    assert status["ocr"] == {"engine": "rapidocr", "languages": ["en", "de"]}
    assert "OCR: rapidocr, languages en,de" in cli("status")
    results = json.loads(cli("search", "tundra", "--mode", "text", "--json"))
    assert [Path(r["path"]).name for r in results] == ["b.jpg"]
    assert results[0]["matches"][0]["source"] == "ocr" and len(results[0]["matches"][0]["box"]) == 4


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--no-ocr", "--ocr-lang", "de"], "--ocr-lang and --ocr-engine need OCR on"),
        (["--ocr-lang", " , "], "--ocr-lang needs at least one language code"),
        (["--ocr-lang", "xx"], "xx"),
        (["--ocr-engine", "abbyy"], "abbyy"),
    ],
)
def test_cli_ocr_mistakes_are_one_line_errors(
    cli_env: Path, signs: Path, args: list[str], message: str
) -> None:
    output = cli("index", signs, *args, code=2)
    assert message in output and "Traceback" not in output
    assert not (cli_env / "indexes").exists()  # refused before anything was indexed


def test_cli_without_the_ocr_extra_names_it_before_the_model_loads(
    cli_env: Path, signs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "rapidocr_onnxruntime", None)  # import fails as if not installed
    output = cli("index", signs, "--ocr", code=2)
    assert "pip install 'pixseek[ocr]'" in output and len(output.strip().splitlines()) == 1
    assert not (cli_env / "indexes").exists()


def test_server_indexing_follows_the_collections_ocr(tmp_path: Path, settings: Settings, signs: Path) -> None:
    with Library(settings) as library:  # the CLI's `index --ocr`, into the server's data dir
        library.indexer(library.load_encoder(), ocr=OcrChoice(True, ("en", "de"))).run([signs])
    _sign(signs / "later.jpg", "PELICAN HARBOUR", size=(1200, 800), at=(80, 330))
    server = ServerSettings(
        data_dir=settings.data_dir,
        model=settings.model,
        precision="fp32",
        device="cpu",
        library_roots=[signs],
    )
    with TestClient(create_app(server)) as client:
        assert wait_for_job(client, client.post("/index").json()["id"])["state"] == "done"
        assert client.get("/status").json()["collection"]["ocr"] == {
            "engine": "rapidocr",
            "languages": ["en", "de"],
        }
        found = client.post("/search", json={"query": "pelican", "mode": "text"}).json()
        (result,) = found["results"]
        assert result["image"]["path"] == "later.jpg" and result["matches"][0]["source"] == "ocr"
        left, top, right, bottom = result["matches"][0]["box"]
        assert 0 <= left < right <= 1200 and 0 <= top < bottom <= 800


def test_api_index_turns_ocr_on_and_refuses_bad_choices(tmp_path: Path, clip_dir: Path, signs: Path) -> None:
    server = ServerSettings(
        data_dir=tmp_path / "data", model=str(clip_dir), precision="fp32", device="cpu", library_roots=[signs]
    )
    with TestClient(create_app(server)) as client:
        for body, status, reason in [
            ({"ocr": {"languages": ["xx"]}}, 422, "unknown OCR language 'xx'"),
            ({"ocr": {"engine": "abbyy"}}, 422, "engine"),
            ({"ocr": {"languages": []}}, 422, "languages"),
            ({"ocr": True}, 422, "ocr"),
        ]:
            refused = client.post("/index", json=body)
            assert refused.status_code == status and reason in json.dumps(refused.json()), refused.json()
        assert client.get("/status").json()["collection"] is None  # nothing was created or recorded
        job = client.post("/index", json={"ocr": {"languages": ["en"]}}).json()
        assert wait_for_job(client, job["id"])["state"] == "done"
        assert client.get("/status").json()["collection"]["ocr"] == {
            "engine": "rapidocr",
            "languages": ["en"],
        }
        found = client.post("/search", json={"query": "marmalade", "mode": "text"}).json()
        assert [r["image"]["path"] for r in found["results"]] == ["a.jpg"]
        stop = client.post("/index", json={"ocr": False}).json()
        assert wait_for_job(client, stop["id"])["state"] == "done"
        assert client.get("/status").json()["collection"]["ocr"] is None
