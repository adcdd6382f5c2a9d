"""The web page in headless Chromium (Debian's /usr/bin/chromium, driven by Python Playwright) against
the real API on loopback, on the tiny CLIP checkpoint and the sample photos.

Needs ``apt-get install -y chromium`` and ``pip install playwright`` (never ``playwright install``:
it downloads browsers). Skipped without them, except with CI set, where they are required.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import uvicorn
from PIL import ExifTags, Image, ImageDraw

from pixseek.api.app import create_app
from pixseek.api.config import ServerSettings
from pixseek.library import Library
from pixseek.store.records import TextWord

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
]
TIMEOUT_MS = 20_000
HOSTILE_NAME = "<img src=x onerror=\"document.title='pwned'\">.jpg"  # must show as text, never as markup
MINUS, TIMES = "\u2212", "\u00d7"  # what a "not" chip shows, and a weight in the summary ("2x")
# The same picture taken on different days (one undated): they embed alike, so each is the others'
# best match, and a date-sorted search of one lists the others in date order.
TWIN_DATES = {
    "twin_a.jpg": "2020:05:01 10:00:00",
    "twin_b.jpg": "2018:01:02 10:00:00",
    "twin_c.jpg": "2022:03:04 10:00:00",
}


def _require_browser():
    """The Playwright module, or a skip (a failure with CI set) naming what is missing."""
    missing = []
    if not CHROMIUM.exists():
        missing.append(f"{CHROMIUM} (apt-get install -y chromium)")
    try:
        from playwright import sync_api
    except ImportError:
        sync_api = None
        missing.append("the playwright package (pip install playwright)")
    if missing:
        reason = "browser test needs " + " and ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return sync_api


def _write_twins(folder: Path) -> None:
    folder.mkdir()
    twin = Image.fromarray(np.random.default_rng(5).integers(0, 255, (96, 128, 3), dtype=np.uint8))
    ImageDraw.Draw(twin).ellipse((20, 10, 100, 80), fill=(200, 30, 30))
    for name, taken in [*TWIN_DATES.items(), ("twin_d.jpg", None)]:
        exif = Image.Exif()
        if taken:
            exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.DateTimeOriginal] = taken
        twin.save(folder / name, "JPEG", quality=95, exif=exif)


def _server_settings(tmp_path: Path, clip_dir: Path, photos: Path) -> ServerSettings:
    return ServerSettings(
        data_dir=tmp_path / "data",
        model=str(clip_dir),
        precision="fp32",
        device="cpu",
        batch_size=8,
        decode_workers=2,
        library_roots=[photos],
    )


@pytest.fixture
def server(tmp_path: Path, clip_dir: Path, photos: Path) -> Iterator[str]:
    """The real app on a free loopback port, its library root (``photos``) indexed beforehand."""
    shutil.copy2(next(photos.rglob("rocket.jpg")), photos / "outdoor" / HOSTILE_NAME)
    _write_twins(photos / "dated")
    settings = _server_settings(tmp_path, clip_dir, photos)
    library = Library(settings)
    try:
        report = library.indexer(library.load_encoder()).run([photos])
    finally:
        library.close()
    assert report.embedded >= 25

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(create_app(settings), log_level="warning", lifespan="on")
    uvicorn_server = uvicorn.Server(config)
    thread = threading.Thread(target=uvicorn_server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not uvicorn_server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        uvicorn_server.should_exit = True
        thread.join(timeout=30)
        sock.close()


@pytest.fixture
def browser() -> Iterator[object]:
    sync_api = _require_browser()
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@contextlib.contextmanager
def open_page(browser, base: str, width: int, height: int):
    """A page that records script errors; failed requests are expected in the error-state checks."""
    context = browser.new_context(viewport={"width": width, "height": height}, base_url=base)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on(
        "console",
        lambda message: (
            message.type == "error"
            and not message.text.startswith("Failed to load resource")
            and problems.append(f"console: {message.text}")
        ),
    )
    try:
        yield page
        assert problems == [], problems
    finally:
        context.close()


def card_names(page) -> list[str]:
    return page.locator("#grid .card .thumb img").evaluate_all("imgs => imgs.map(i => i.alt)")


def wait_for_results(page, summary_part: str) -> None:
    page.locator("#summary").filter(has_text=summary_part).wait_for()
    page.locator("#grid .card").first.wait_for()


def no_horizontal_scroll(page) -> bool:
    return page.evaluate("() => document.documentElement.scrollWidth <= document.documentElement.clientWidth")


@pytest.mark.slow
def test_search_page_in_a_browser(browser, server: str, photos: Path, tmp_path: Path) -> None:
    indexed = httpx.get(f"{server}/status", timeout=10).json()["collection"]["indexed"]
    assert indexed > 24, "the results must need two pages"
    chelsea = next(photos.rglob("chelsea.png"))
    chelsea_name = f"photos/{chelsea.relative_to(photos).as_posix()}"

    with open_page(browser, server, 1280, 900) as page:
        offsets = []
        page.on("request", lambda r: r.url.endswith("/search") and offsets.append(r.post_data_json["offset"]))
        page.goto("/")
        page.locator("#status").filter(has_text="images").wait_for()

        # Text search with Enter: a page of thumbnails that really loaded, scores, more on scroll.
        page.get_by_label("Search images").fill("a cat")
        page.get_by_label("Search images").press("Enter")
        wait_for_results(page, "“a cat”")
        assert "q=a+cat" in page.url
        page.wait_for_function("() => document.querySelector('#grid img').naturalWidth > 0")
        page.locator("#summary").filter(has_text=f"{indexed} images for “a cat”").wait_for()
        assert offsets == [0, 24], "the second page comes with next_offset when the end is in view"
        assert len(set(card_names(page))) == indexed
        assert page.locator("#more").is_hidden()

        # A file name that looks like markup stays text, in the grid and in the viewer.
        hostile = page.locator("#grid .card").filter(has_text=HOSTILE_NAME)
        assert hostile.locator(".name").inner_text() == HOSTILE_NAME
        hostile.locator(".thumb").click()
        assert page.locator("#viewer-title").inner_text() == HOSTILE_NAME
        assert page.locator("img[src='x']").count() == 0 and page.title() == "pixseek"
        page.keyboard.press("Escape")
        page.locator("#viewer").wait_for(state="hidden")

        # The viewer: metadata, Esc closes it and gives focus back to the page.
        page.locator("#grid .thumb").first.click()
        viewer = page.locator("#viewer")
        viewer.wait_for()
        assert viewer.locator("dt").first.inner_text() == "Path"
        assert viewer.locator("dd").first.inner_text().startswith("photos/")
        assert "File size" in viewer.locator("dl").inner_text()
        page.keyboard.press("Escape")
        viewer.wait_for(state="hidden")
        assert page.evaluate("() => document.activeElement.classList.contains('thumb')")

        # Search by an uploaded image: that image comes first with a cosine of ~1, which the card
        # does not show (a cosine only ranks one search's results) but its tooltip does.
        page.set_input_files("#file", str(chelsea))
        wait_for_results(page, "the image chelsea.png")
        assert card_names(page)[0] == chelsea_name
        assert page.locator("#grid .score").count() == 0
        tooltip = page.locator("#grid .caption").first.get_attribute("title")
        assert "similarity 1.000" in tooltip or "similarity 0.999" in tooltip, tooltip

        # More like this: the image itself is excluded.
        page.locator("#grid .card").first.get_by_role("button", name="More like").click()
        wait_for_results(page, f"like {chelsea_name}")
        assert chelsea_name not in card_names(page)
        assert "like=" in page.url

        # Paste an image (Ctrl-V) and drop one: both search by it.
        for event in ("paste", "drop"):
            page.evaluate(
                """async ([event, url]) => {
                    const blob = await (await fetch(url)).blob();
                    const data = new DataTransfer();
                    data.items.add(new File([blob], event + ".png", {type: "image/png"}));
                    const init = {bubbles: true, cancelable: true};
                    document.dispatchEvent(event === "paste"
                        ? new ClipboardEvent("paste", {...init, clipboardData: data})
                        : new DragEvent("drop", {...init, dataTransfer: data}));
                }""",
                [event, page.locator("#grid img").first.get_attribute("src")],
            )
            wait_for_results(page, f"the image {event}.png")

        # Empty state: a filter that matches nothing.
        page.locator("#filters summary").click()
        page.get_by_label("Taken after").fill("2099-01-01")
        page.get_by_label("Search images").fill("a cat")
        page.get_by_label("Search images").press("Enter")
        page.locator("#message.empty").filter(has_text="No images for “a cat”").wait_for()
        assert "removing a filter" in page.locator("#message").inner_text()
        assert page.locator("#grid .card").count() == 0

        # Error state: the API's detail is shown.
        page.get_by_role("button", name="Clear filters").click()
        page.get_by_label("Folder").fill("nosuchroot/x")
        page.get_by_label("Search images").press("Enter")
        error = page.get_by_role("alert")
        error.filter(has_text="no library root named 'nosuchroot'").wait_for()
        page.get_by_role("button", name="Clear filters").click()

        # Indexing progress: a job started over the API shows up and reports what it did.
        shutil.copy2(chelsea, photos / "new-cat.png")
        job = httpx.post(f"{server}/index", json={"path": None}, timeout=10)
        assert job.status_code == 202, job.text
        page.locator("#jobs .job").filter(has_text="1 embedded").wait_for()

    # The re-rank toggle stays hidden while /status lists no re-rankers, and is sent once it does.
    with open_page(browser, server, 1280, 900) as page:
        page.goto("/")
        page.locator("#status").filter(has_text="images").wait_for()
        assert page.get_by_label("Re-rank").count() == 1 and page.get_by_label("Re-rank").is_hidden()

        def with_rerankers(route) -> None:
            status = route.fetch().json()
            collection = {**status["collection"], "searchable": 7}  # the header counts what is searchable
            route.fulfill(json={**status, "collection": collection, "rerankers": ["bridgetower", "blip2"]})

        page.route("**/status", with_rerankers)
        page.reload()
        page.locator("#status").filter(has_text="7 images").wait_for()
        page.locator("#filters summary").click()
        rerank = page.get_by_label("Re-rank")
        rerank.wait_for()
        options = rerank.locator("option").evaluate_all("os => os.map(o => o.value)")
        assert options == ["none", "bridgetower", "blip2", "both"]
        rerank.select_option("both")
        with page.expect_request("**/search") as request:
            page.get_by_label("Search images").fill("a cat")
            page.get_by_label("Search images").press("Enter")
        assert request.value.post_data_json["rerank"] == "both"
        # This server loaded no re-ranker (the toggle was injected), so the API's reason is shown.
        alert = page.locator("[role=alert]").filter(has_text="not loaded on this server")
        alert.wait_for()

        # A re-ranked result shows its match probability as a percentage; the raw scores are in its
        # tooltip. (Re-ranked results are faked from a plain search: the server has no re-ranker.)
        def reranked(route) -> None:
            plain = {**route.request.post_data_json, "rerank": "none"}
            body = route.fetch(post_data=json.dumps(plain)).json()
            for result in body["results"]:
                result.update(final_score=0.873, rerank_scores={"blip2": 0.873})
            route.fulfill(json={**body, "reranked_text": "a cat"})  # the positive text, as served

        page.route("**/search", reranked)
        page.get_by_label("Not: push results away").fill("red")
        with page.expect_request("**/search") as request:
            page.get_by_label("Search images").press("Enter")
        assert request.value.post_data_json["cutoff"] == "none"  # with a re-ranker: its candidates
        wait_for_results(page, "“a cat” not “red”")
        page.locator("#summary .reranked").filter(has_text="re-ranked by: a cat").wait_for()
        assert page.locator("#grid .score").first.inner_text() == "87% match"
        tooltip = page.locator("#grid .caption").first.get_attribute("title")
        assert "blip2 0.873" in tooltip and "similarity" in tooltip, tooltip
        page.unroute_all(behavior="ignoreErrors")  # the next page may still be loading through it

    # Phone-sized screen: two columns, no horizontal scroll, the viewer fits.
    with open_page(browser, server, 375, 800) as page:
        page.goto("/?q=a%20dog")
        wait_for_results(page, "“a dog”")
        page.wait_for_function("() => document.querySelector('#grid img').naturalWidth > 0")
        assert no_horizontal_scroll(page)
        columns = page.locator("#grid").evaluate("g => getComputedStyle(g).gridTemplateColumns")
        assert len(columns.split()) == 2, columns
        page.locator("#filters summary").click()
        assert no_horizontal_scroll(page)
        page.screenshot(path=str(tmp_path / "phone.png"))
        page.locator("#grid .thumb").first.click()
        page.locator("#viewer dl").wait_for()
        assert no_horizontal_scroll(page)
        box = page.locator("#viewer").bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 375
        page.screenshot(path=str(tmp_path / "phone-viewer.png"))


def first_page(page, action, path: str = "/search"):
    """The request for the first page of the search that ``action`` starts (later pages, loaded
    as the end comes into view, are left alone)."""

    def first(request) -> bool:
        if request.method != "POST" or not request.url.endswith(path):
            return False
        return path != "/search" or request.post_data_json.get("offset") == 0

    with page.expect_request(first) as request:
        action()
    return request.value


def twins(names: list[str]) -> list[str]:
    return [name.rsplit("/", 1)[-1] for name in names if "/dated/twin_" in name]


@pytest.mark.slow
def test_composed_region_and_sorted_searches_in_a_browser(browser, server: str, photos: Path) -> None:
    with open_page(browser, server, 1280, 900) as page:
        page.goto("/")
        page.locator("#status").filter(has_text="images").wait_for()
        search_box = page.get_by_label("Search images")
        search_box.fill("a cat")
        search_box.press("Enter")
        wait_for_results(page, "“a cat”")

        # Match on words: a text search of the keyword index (file names here); each card says
        # which words matched, and the request carries the mode.
        body = first_page(page, lambda: page.get_by_label("Match on").select_option("text")).post_data_json
        assert body["mode"] == "text"
        search_box.fill("twin")
        search_box.press("Enter")
        wait_for_results(page, "“twin”")
        assert sorted(card_names(page)) == [f"photos/dated/twin_{c}.jpg" for c in "abcd"]
        assert page.locator("#grid .card .matched").first.inner_text() == "matched “twin” (filename)"
        page.get_by_label("Match on").select_option("")
        search_box.fill("a cat")
        search_box.press("Enter")
        wait_for_results(page, "“a cat”")

        # A "not" text: Enter in its box adds it as a chip showing a minus and its weight, and searches.
        not_box = page.get_by_label("Not: push results away")
        not_box.fill("red")
        body = first_page(page, lambda: not_box.press("Enter")).post_data_json
        assert body["query"] == "a cat" and body["terms"] == [{"text": "red", "weight": -1}]
        wait_for_results(page, "for “a cat” not “red”")
        chip = page.locator("#chips .chip").filter(has_text="red")
        assert chip.locator(".sign").inner_text() == MINUS and chip.locator(".weight").inner_text() == "1"
        assert not_box.input_value() == ""

        # Its weight cycles (1 -> 2); Delete on the focused chip removes it: a plain text search again.
        body = first_page(page, lambda: chip.locator(".weight").click()).post_data_json
        assert body["terms"] == [{"text": "red", "weight": -2}]
        wait_for_results(page, f"not 2{TIMES} “red”")
        body = first_page(page, lambda: (chip.focus(), page.keyboard.press("Delete"))).post_data_json
        assert "terms" not in body and body["query"] == "a cat"
        assert page.locator("#chips .chip").count() == 0
        assert page.evaluate("() => document.activeElement.id") == "q"

        # The viewer's image as a "not" term; Backspace on its chip removes it.
        card = page.locator("#grid .card").first
        name = card.locator(".name").inner_text()
        card.locator(".thumb").click()
        body = first_page(
            page, lambda: page.get_by_role("button", name="Not like this").click()
        ).post_data_json
        (term,) = body["terms"]
        assert term["weight"] == -1 and isinstance(term["image_id"], int) and body["query"] == "a cat"
        wait_for_results(page, f"not image {name}")
        image_chip = page.locator("#chips .chip").filter(has_text=name)
        assert image_chip.locator(".sign").inner_text() == MINUS
        first_page(page, lambda: (image_chip.focus(), page.keyboard.press("Backspace")))
        wait_for_results(page, "“a cat”")

        # Date order: more like twin_a, newest first, then oldest first (undated last); every match
        # above the cutoff, which is auto then (and counted).
        twin_a = page.locator("#grid .card").filter(has_text="twin_a.jpg")
        twin_a.get_by_role("button", name="More like").click()
        wait_for_results(page, "like photos/dated/twin_a.jpg")
        body = first_page(page, lambda: page.get_by_label("Sort").select_option("-taken")).post_data_json
        assert body["sort"] == "-taken" and body["cutoff"] == "auto" and "query" not in body
        assert body["terms"][0]["weight"] == 1 and "crop" not in body["terms"][0]
        cutoff = page.get_by_label("Cutoff")
        assert cutoff.input_value() == "auto"  # sorted: auto until the user picks none (every image)
        page.locator("#summary .matches").filter(has_text="match").wait_for()
        wait_for_results(page, "image twin_a.jpg")
        assert twins(card_names(page)) == ["twin_c.jpg", "twin_b.jpg", "twin_d.jpg"]
        assert "sort=-taken" in page.url
        first_page(page, lambda: page.get_by_label("Sort").select_option("taken"))
        page.wait_for_function("() => document.querySelector('#summary .matches') !== null")
        page.locator("#grid .card").first.wait_for()
        assert twins(card_names(page)) == ["twin_b.jpg", "twin_c.jpg", "twin_d.jpg"]
        first_page(page, lambda: page.get_by_label("Sort").select_option("path"))
        page.locator("#summary .matches").wait_for()
        page.locator("#grid .card").first.wait_for()
        names = card_names(page)
        assert names == sorted(names) and len(names) >= 3

        # Best match again: no cutoff by default; auto counts the matches.
        page.get_by_label("Sort").select_option("relevance")
        wait_for_results(page, "like photos/dated/twin_a.jpg")
        assert cutoff.is_enabled() and cutoff.input_value() == "none"
        body = first_page(page, lambda: cutoff.select_option("auto")).post_data_json
        assert body["cutoff"] == "auto" and body["sort"] == "relevance"
        page.locator("#summary .matches").wait_for()

        # A region: drag a box on the viewer's image, search by it; the crop is in fractions of
        # the shown image, whatever its displayed size.
        page.locator("#grid .card").filter(has_text="twin_b.jpg").locator(".thumb").click()
        page.wait_for_function("() => document.querySelector('#viewer-img').naturalWidth > 0")
        box = page.locator("#viewer-img").bounding_box()
        assert box is not None
        page.mouse.move(box["x"] + 0.6 * box["width"], box["y"] + 0.9 * box["height"])
        page.mouse.down()
        page.mouse.move(box["x"] + 0.3 * box["width"], box["y"] + 0.5 * box["height"], steps=4)
        page.mouse.move(box["x"] + 0.1 * box["width"], box["y"] + 0.2 * box["height"], steps=4)
        page.mouse.up()
        assert page.locator("#viewer-box").is_visible()
        assert page.locator("#viewer").is_visible(), "a drag is no click on the backdrop"
        search_region = page.get_by_role("button", name="Search this region")
        body = first_page(page, lambda: search_region.click()).post_data_json
        (term,) = body["terms"]
        crop = term["crop"]
        assert crop["unit"] == "fraction" and term["weight"] == 1, term
        expected = {"x": 0.1, "y": 0.2, "width": 0.5, "height": 0.7}
        assert all(abs(crop[key] - value) < 0.02 for key, value in expected.items()), crop
        wait_for_results(page, "for region of twin_b.jpg")
        assert page.locator("#chips .chip").filter(has_text="region of twin_b.jpg").count() == 1
        assert page.locator("#message").is_hidden()

        # An API error (only a "not" term: no positive one) is shown with the API's reason.
        page.locator("#chips .chip").first.get_by_role("button", name="Remove").click()
        assert page.locator("#chips .chip").count() == 0 and page.locator("#grid .card").count() == 0
        not_box.fill("red")
        page.get_by_role("button", name="Exclude", exact=True).click()
        page.get_by_role("alert").filter(has_text="a term needs a positive weight").wait_for()

        # An image file added to the query goes with the text and the other terms (POST /search/image).
        twin_file = photos / "dated" / "twin_c.jpg"
        search_box.fill("a cat")
        with page.expect_response(lambda r: r.url.endswith("/search/image")) as response:
            page.set_input_files("#add-file", str(twin_file))
        searched = response.value.json()["query"]  # the terms as the server searched them
        assert "uploaded image" in searched and "+a cat" in searched and "-red" in searched, searched
        wait_for_results(page, "“a cat” + the image twin_c.jpg not “red”")
        upload_chip = page.locator("#chips .chip").filter(has_text="the image twin_c.jpg")
        assert upload_chip.locator("button.sign").count() == 0, "the upload is always + 1"
        # ...dropped on "add it to the query" too (in place of the earlier upload); dropped anywhere
        # else, or chosen with "Image…", an image replaces the query.
        drop = """async ([target, url]) => {
            const blob = await (await fetch(url)).blob();
            const data = new DataTransfer();
            data.items.add(new File([blob], "dropped.png", {type: "image/png"}));
            const node = target ? document.querySelector(target) : document;
            node.dispatchEvent(new DragEvent("drop", {bubbles: true, cancelable: true, dataTransfer: data}));
        }"""
        thumb = page.locator("#grid img").first.get_attribute("src")
        page.evaluate(drop, ["#drop-add", thumb])
        wait_for_results(page, "“a cat” + the image dropped.png not “red”")
        assert page.locator("#chips .chip").count() == 2
        page.set_input_files("#file", str(twin_file))
        wait_for_results(page, "images for the image twin_c.jpg")
        assert page.locator("#chips .chip").count() == 1 and search_box.input_value() == ""


# A sign whose one word is known: its box in pixels of the upright image (the API's coordinates),
# stored sideways with an EXIF orientation, so the page must box the word as the picture is shown.
SIGN_SIZE = (1000, 1600)  # upright width, height: taller than the viewer at 1280 x 900
SIGN_WORD = TextWord("harbour", (180.0, 1240.0, 700.0, 1400.0), 0.93)


def _write_sign(path: Path) -> None:
    upright = Image.new("RGB", SIGN_SIZE, (40, 90, 140))
    draw = ImageDraw.Draw(upright)
    draw.rectangle(SIGN_WORD.box, fill=(250, 250, 240))
    draw.text((SIGN_WORD.box[0] + 20, SIGN_WORD.box[1] + 20), SIGN_WORD.text, fill=(0, 0, 0), font_size=110)
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6  # "rotate 90 degrees clockwise to show it"
    upright.transpose(Image.Transpose.ROTATE_90).save(path, "JPEG", quality=90, exif=exif)


def mark_fractions(page) -> dict[str, float]:
    """The word box's place on the shown image, in fractions of the image's displayed size."""
    return page.evaluate(
        """() => {
            const img = document.querySelector("#viewer-img").getBoundingClientRect();
            const mark = document.querySelector("#viewer-marks .word-mark").getBoundingClientRect();
            return {left: (mark.left - img.left) / img.width, top: (mark.top - img.top) / img.height,
                    right: (mark.right - img.left) / img.width, bottom: (mark.bottom - img.top) / img.height,
                    aspect: img.width / img.height};
        }"""
    )


def assert_on_the_word(page) -> None:
    shown = mark_fractions(page)
    width, height = SIGN_SIZE
    left, top, right, bottom = SIGN_WORD.box
    expected = {"left": left / width, "top": top / height, "right": right / width, "bottom": bottom / height}
    assert abs(shown["aspect"] - width / height) < 0.01, shown  # the image is shown upright
    assert all(abs(shown[key] - value) < 0.01 for key, value in expected.items()), (shown, expected)


@pytest.mark.slow
def test_viewer_highlights_matched_ocr_words(
    browser, server: str, tmp_path: Path, clip_dir: Path, photos: Path
) -> None:
    (photos / "signs").mkdir()
    _write_sign(photos / "signs" / "sign.jpg")
    job = httpx.post(f"{server}/index", json={"path": "photos/signs"}, timeout=10)
    assert job.status_code == 202, job.text
    deadline = time.monotonic() + 60
    while (state := httpx.get(f"{server}/jobs/{job.json()['id']}", timeout=10).json())["state"] != "done":
        assert state["state"] in ("queued", "running") and time.monotonic() < deadline, state
        time.sleep(0.1)
    assert state["embedded"] == 1, state
    # The page is under test, not the OCR engine: the word goes into the store as OCR would put it.
    with Library(_server_settings(tmp_path, clip_dir, photos)) as library:
        sign = library.store.image_by_path(library.collection().id, str(photos / "signs" / "sign.jpg"))
        assert sign is not None and (sign.width, sign.height) == SIGN_SIZE
        library.store.set_ocr_texts(sign.id, [SIGN_WORD])

    with open_page(browser, server, 1280, 900) as page:
        page.goto("/")
        page.locator("#status").filter(has_text="images").wait_for()
        page.get_by_label("Match on").select_option("text")
        search_box = page.get_by_label("Search images")
        search_box.fill("harbour")
        search_box.press("Enter")
        wait_for_results(page, "“harbour”")
        assert card_names(page) == ["photos/signs/sign.jpg"]
        assert page.locator("#grid .matched").inner_text() == "matched “harbour” (ocr)"

        # The viewer boxes the word where it is on the picture, once the original has replaced the
        # preview, with its text and confidence as its label and tooltip, and in the word list.
        page.locator("#grid .thumb").click()
        page.wait_for_function(
            """() => { const img = document.querySelector("#viewer-img");
                       return img.src.endsWith("/file") && img.complete && img.naturalWidth > 0; }"""
        )
        mark = page.locator("#viewer-marks .word-mark")
        mark.wait_for()
        assert mark.count() == 1
        label = "Matched word “harbour”, 93% confidence"
        assert mark.get_attribute("aria-label") == label and mark.get_attribute("title") == label
        assert page.get_by_role("img", name=label).count() == 1
        assert page.locator("#viewer-words-list").inner_text() == "“harbour” 93% confidence"
        assert_on_the_word(page)

        # ...and stays on it when the window (so the shown image) changes size.
        before = page.locator("#viewer-img").bounding_box()
        page.set_viewport_size({"width": 900, "height": 600})
        assert before is not None
        page.wait_for_function(
            "height => document.querySelector('#viewer-img').getBoundingClientRect().height < height",
            arg=before["height"] - 50,
        )
        assert_on_the_word(page)
        page.set_viewport_size({"width": 1280, "height": 900})

        # The keyboard reaches the box (its label then shows) and the checkbox that hides the boxes.
        page.locator("#viewer-close").focus()
        page.keyboard.press("Tab")
        shown_label = "() => getComputedStyle(document.activeElement, '::after').content"
        assert page.evaluate("() => document.activeElement.className") == "word-mark"
        assert page.evaluate(shown_label) == json.dumps(label, ensure_ascii=False)
        toggle = page.get_by_label("Highlight the matched words")
        toggle.focus()
        page.keyboard.press("Space")
        assert not toggle.is_checked() and page.locator("#viewer-marks").is_hidden()
        page.keyboard.press("Space")
        assert toggle.is_checked()
        mark.wait_for()
        assert_on_the_word(page)

        # A region can still be dragged, from on the box, in fractions of the shown image.
        box = page.locator("#viewer-img").bounding_box()
        assert box is not None
        page.mouse.move(box["x"] + 0.3 * box["width"], box["y"] + 0.8 * box["height"])
        assert page.evaluate("() => document.querySelector(':hover.word-mark') !== null")
        page.mouse.down()
        page.mouse.move(box["x"] + 0.9 * box["width"], box["y"] + 0.95 * box["height"], steps=4)
        page.mouse.up()
        assert page.locator("#viewer-box").is_visible()
        assert page.locator("#viewer-region-text").inner_text() == f"Region: 60% {TIMES} 15% of the image."
        page.keyboard.press("Escape")
        page.locator("#viewer").wait_for(state="hidden")

        # A match on a file name has no place on the image: no box, no word list.
        search_box.fill("twin")
        search_box.press("Enter")
        wait_for_results(page, "“twin”")
        page.locator("#grid .card").filter(has_text="twin_a.jpg").locator(".thumb").click()
        page.locator("#viewer dl").wait_for()
        page.wait_for_function("() => document.querySelector('#viewer-img').naturalWidth > 0")
        assert page.locator("#viewer-marks .word-mark").count() == 0
        assert page.locator("#viewer-marks").is_hidden() and page.locator("#viewer-words").is_hidden()


@pytest.mark.slow
def test_collections_view_builds_activates_and_deletes(browser, server: str, dual_dir: Path) -> None:
    """The Collections view: a build beside the active collection through its form (its progress
    while it runs, a refusal inline), activation (the header and the search follow), deletion."""
    indexed = httpx.get(f"{server}/status", timeout=10).json()["collection"]["indexed"]
    fake_progress = {"next_list": False}

    def collections_route(route) -> None:
        # The build of 28 tiny images may end between two polls: the first list after it started
        # shows it running at 3/28, so that the progress is on the page for a poll whatever the speed.
        response = route.fetch()
        if route.request.method == "POST":
            fake_progress["next_list"] = response.status == 202
            route.fulfill(response=response)
            return
        items = response.json()
        if fake_progress["next_list"]:
            fake_progress["next_list"] = False
            running = {"state": "running", "done": 3, "total": 28, "error": None}
            items = [
                {**c, "state": "building", "build": running} if c["name"] == "dual" else c for c in items
            ]
        route.fulfill(response=response, json=items)

    keys_sent: list[str | None] = []

    def activate_route(route) -> None:
        # This server has no key: the first activation answers as one with a key would without it.
        keys_sent.append(route.request.headers.get("x-api-key"))
        if len(keys_sent) == 1:
            route.fulfill(status=401, json={"detail": "missing or wrong API key"})
        else:
            route.continue_()

    with open_page(browser, server, 1280, 900) as page:
        page.route("**/collections", collections_route)
        page.route("**/collections/dual/activate", activate_route)
        page.goto("/")
        page.locator("#status").filter(has_text="images in “default”").wait_for()
        page.get_by_label("Search images").fill("a cat")
        page.get_by_label("Search images").press("Enter")
        wait_for_results(page, "“a cat”")

        opener = page.get_by_role("button", name="Collections")
        opener.click()
        assert opener.get_attribute("aria-expanded") == "true"
        view = page.locator("#collections")
        rows = view.locator("#collection-rows tr")
        default_row = rows.filter(has=page.locator("th", has_text="default"))
        default_row.locator(".badge", has_text="Active").wait_for()
        assert rows.count() == 1
        assert default_row.locator(".coll-state").inner_text() == "Ready"
        assert default_row.locator(".coll-images").inner_text().startswith(f"{indexed} ")  # and "(1 failed)"
        assert default_row.get_by_role("button").count() == 0  # the active one: no activate, no delete

        # A name the browser refuses before sending; a taken name, refused by the server, inline.
        name, model = view.get_by_label("Name"), view.get_by_label("Model")
        name.fill("bad name")
        assert page.evaluate("() => document.querySelector('#coll-name').validity.patternMismatch")
        name.fill("default")
        model.fill(str(dual_dir))
        view.get_by_role("button", name="Build").click()
        error = page.locator("#collections-error")
        error.filter(has_text="already exists").wait_for()
        assert error.get_attribute("role") == "alert" and "Cannot build “default”" in error.inner_text()
        assert rows.count() == 1

        # The build through the form: its progress while it runs, then ready beside the active one.
        name.fill("dual")
        view.get_by_role("button", name="Build").click()
        dual_row = rows.filter(has=page.locator("th", has_text="dual"))
        dual_row.locator(".coll-state", has_text="Building: 3/28").wait_for()
        assert dual_row.locator("progress").get_attribute("value") == "3"
        assert dual_row.get_by_role("button", name="Delete dual").count() == 0  # not while it builds
        assert error.is_hidden()
        dual_row.locator(".coll-state", has_text="Ready").wait_for(timeout=120_000)
        page.locator("#collections-note").filter(has_text="“dual” is built").wait_for()
        assert page.locator("#collections-note").get_attribute("aria-live") == "polite"
        assert dual_row.locator(".coll-model").inner_text().startswith(str(dual_dir))
        images = default_row.locator(".coll-images").inner_text()
        assert dual_row.locator(".coll-images").inner_text() == images
        assert dual_row.locator(".badge").count() == 0
        assert name.input_value() == "" and model.input_value() == str(dual_dir)

        # Activation: a server with a key refuses without it, and the view asks for the key.
        dual_row.get_by_role("button", name="Activate dual").click()
        error.filter(has_text="missing or wrong API key").wait_for()
        key = view.get_by_label("API key")
        assert key.is_visible() and page.evaluate("() => document.activeElement.id") == "collections-key"
        key.fill("s3cret")
        # The results on show come again, from the collection now active.
        with page.expect_request(lambda r: r.url.endswith("/search") and r.method == "POST"):
            dual_row.get_by_role("button", name="Activate dual").click()
        dual_row.locator(".badge", has_text="Active").wait_for()
        assert keys_sent == [None, "s3cret"]
        assert error.is_hidden()
        default_row.get_by_role("button", name="Activate default").wait_for()
        assert default_row.locator(".badge").count() == 0
        status = httpx.get(f"{server}/status", timeout=10).json()["collection"]
        assert (status["name"], status["model"]) == ("dual", str(dual_dir))
        page.locator("#status").filter(has_text=f"images in “dual” · {dual_dir.name}").wait_for()
        wait_for_results(page, "images for “a cat”")

        # Deleting asks first: dismissed, nothing goes; accepted, the old collection goes.
        dialogs: list[str] = []

        def answer(dialog, accept: bool) -> None:
            dialogs.append(dialog.message)
            dialog.accept() if accept else dialog.dismiss()

        page.once("dialog", lambda dialog: answer(dialog, False))
        default_row.get_by_role("button", name="Delete default").click()
        assert dialogs and "“default”" in dialogs[0]
        assert rows.count() == 2
        page.once("dialog", lambda dialog: answer(dialog, True))
        default_row.get_by_role("button", name="Delete default").click()
        default_row.wait_for(state="detached")
        assert rows.count() == 1
        page.locator("#collections-note").filter(has_text="Deleted “default”").wait_for()
        listed = httpx.get(f"{server}/collections", timeout=10).json()
        assert [(c["name"], c["active"]) for c in listed] == [("dual", True)]

        page.set_viewport_size({"width": 380, "height": 800})
        assert no_horizontal_scroll(page)  # the table scrolls inside its box
        opener.click()
        assert view.is_hidden() and opener.get_attribute("aria-expanded") == "false"
