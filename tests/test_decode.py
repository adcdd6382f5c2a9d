"""decode_image on hostile files: every outcome is an upright RGB image or a DecodeError with a reason."""

from __future__ import annotations

import importlib.util
import io
import pickle
import random
import time
from pathlib import Path

import numpy as np
import pytest
import skimage
import skimage.data
from PIL import Image, ImageOps

import hostile_files as hf
from pixseek.media.decode import HEIF_HINT, DecodedImage, decode_image
from pixseek.media.errors import DecodeError
from pixseek.media.prechecks import (
    MAX_JPEG_HEADER_STEPS,
    check_jpeg_markers,
    sniff_format,
    strip_png_metadata,
)


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("hostile")
    return root, hf.make_hostile_tree(root)


def _read(tree: tuple[Path, dict[str, str]], rel: str) -> bytes:
    return (tree[0] / rel).read_bytes()


def _decode_file(tree: tuple[Path, dict[str, str]], rel: str, **kwargs: object) -> DecodedImage:
    return decode_image(_read(tree, rel), **kwargs)  # type: ignore[arg-type]


def _fail_reason(data: bytes, **kwargs: object) -> str:
    with pytest.raises(DecodeError) as caught:
        decode_image(data, **kwargs)  # type: ignore[arg-type]
    assert caught.value.reason
    assert str(caught.value) == caught.value.reason
    return caught.value.reason


def test_every_hostile_file_has_its_expected_outcome(tree: tuple[Path, dict[str, str]]) -> None:
    root, expected = tree
    assert expected.values() and set(expected.values()) == {hf.OK, hf.FAIL}
    for rel, outcome in expected.items():
        data = (root / rel).read_bytes()
        if outcome == hf.OK:
            decoded = decode_image(data)
            assert decoded.image.mode == "RGB", rel
            assert decoded.image.size == (decoded.metadata.width, decoded.metadata.height), rel
        else:
            _fail_reason(data)


# --- failures -------------------------------------------------------------------------------------


def test_empty_file(tree: tuple[Path, dict[str, str]]) -> None:
    assert _fail_reason(_read(tree, "empty.jpg")) == "empty file"


def test_truncated_jpeg(tree: tuple[Path, dict[str, str]]) -> None:
    assert _fail_reason(_read(tree, "truncated.jpg")) == "truncated image"


def test_text_named_jpg(tree: tuple[Path, dict[str, str]]) -> None:
    assert _fail_reason(_read(tree, "text.jpg")) == "not an image (text)"


def test_truncated_files_of_every_format(tree: tuple[Path, dict[str, str]]) -> None:
    for rel in ["photo", "grey16.png", "nested/coffee.webp", "multipage.tif", "nested/deeper/chelsea.bmp"]:
        data = _read(tree, rel)
        assert _fail_reason(data[: len(data) // 2]) == "truncated image", rel


def test_random_bytes() -> None:
    data = random.Random(7).randbytes(4096)
    assert _fail_reason(data) == "not an image (unrecognised format)"


def test_decompression_bomb_is_refused_from_the_header(tree: tuple[Path, dict[str, str]]) -> None:
    data = _read(tree, "bomb.png")
    assert len(data) < 1_000_000
    started = time.perf_counter()
    reason = _fail_reason(data)
    assert time.perf_counter() - started < 0.5  # refused before decoding ~900 MB of pixels
    assert reason.startswith("too many pixels") and str(hf.BOMB_SIDE**2) in reason


def test_max_pixels_is_per_call(tree: tuple[Path, dict[str, str]]) -> None:
    data = _read(tree, "photo")  # 60x40
    assert "too many pixels" in _fail_reason(data, max_pixels=60 * 40 - 1)
    assert decode_image(data, max_pixels=60 * 40).image.size == (60, 40)


@pytest.mark.parametrize(
    "data",
    [
        b"\xff\xd8\xff\xe0" + b"\x00" * 100,  # JPEG magic, garbage after
        b"\x89PNG\r\n\x1a\n" + b"\x00" * 40,
        b"GIF89a\xff\xff",
        b"RIFF\x10\x00\x00\x00WEBPVP8 ",
        b"II*\x00\x08\x00\x00\x00\xff\xff",
        b"BM" + b"\x00" * 12 + b"\x28\x00\x00\x00" + b"\x00" * 10,
    ],
    ids=["jpeg", "png", "gif", "webp", "tiff", "bmp"],
)
@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
def test_corrupt_headers(data: bytes) -> None:
    assert _fail_reason(data)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_fuzzed_files_only_ever_raise_decode_error(tree: tuple[Path, dict[str, str]]) -> None:
    """Truncate and corrupt valid files of every format: the only exception allowed is DecodeError."""
    rng = random.Random(1234)
    sources = ["grey.jpg", "photo", "animated.gif", "multipage.tif", "nested/coffee.webp", "rgba.png"]
    sources += ["exif_rotated.jpg", "palette_transparent.png"]
    failures = 0
    for rel in sources:
        original = _read(tree, rel)
        for _ in range(60):
            data = bytearray(original[: rng.randrange(1, len(original) + 1)])
            for _ in range(rng.randrange(0, 8)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            try:
                decoded = decode_image(bytes(data), min_side=rng.choice([None, 16]), max_pixels=4_000_000)
            except DecodeError as error:
                assert error.reason
                failures += 1
            else:
                assert decoded.image.mode == "RGB"
    assert failures > 0


def test_decode_error_pickles_for_worker_processes() -> None:
    error = pickle.loads(pickle.dumps(DecodeError("truncated image")))
    assert isinstance(error, DecodeError) and error.reason == "truncated image"


def test_heif_without_pillow_heif_names_the_extra() -> None:
    if importlib.util.find_spec("pillow_heif") is not None:
        pytest.skip("pillow-heif is installed")
    heic = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64
    assert _fail_reason(heic) == HEIF_HINT


def test_invalid_arguments_are_caller_bugs(tree: tuple[Path, dict[str, str]]) -> None:
    with pytest.raises(ValueError):
        _decode_file(tree, "photo", min_side=0)
    with pytest.raises(ValueError):
        _decode_file(tree, "photo", max_pixels=0)


# --- pixel modes ----------------------------------------------------------------------------------


def test_cmyk_jpeg_keeps_its_colours(tree: tuple[Path, dict[str, str]]) -> None:
    decoded = _decode_file(tree, "cmyk.jpg")
    assert decoded.image.size == (600, 400)
    diff = np.abs(np.asarray(decoded.image, dtype=np.int16) - skimage.data.coffee().astype(np.int16))
    assert diff.mean() < 8


def test_16bit_grey_png_is_scaled_not_clipped(tree: tuple[Path, dict[str, str]]) -> None:
    arr = np.asarray(_decode_file(tree, "grey16.png").image)
    camera = skimage.data.camera()
    assert arr.min() < 20 and arr.max() > 235  # a real range: neither all white nor all black
    assert np.abs(arr[..., 0].astype(int) - camera).max() <= 1
    assert (arr[..., 0] == arr[..., 1]).all() and (arr[..., 1] == arr[..., 2]).all()


def test_greyscale_and_bilevel(tree: tuple[Path, dict[str, str]]) -> None:
    grey = np.asarray(_decode_file(tree, "grey.jpg").image)
    assert grey.shape == (512, 512, 3) and grey.std() > 20
    bilevel = np.asarray(_decode_file(tree, "bilevel.png").image)
    assert set(np.unique(bilevel)) <= {0, 255} and len(np.unique(bilevel)) == 2


def test_palette_transparency_composites_over_white(tree: tuple[Path, dict[str, str]]) -> None:
    image = _decode_file(tree, "palette_transparent.png").image
    assert image.getpixel((5, 5)) == (255, 255, 255)
    assert image.getpixel((60, 5)) == (255, 0, 0)


def test_rgba_composites_over_white(tree: tuple[Path, dict[str, str]]) -> None:
    image = _decode_file(tree, "rgba.png").image
    assert image.getpixel((5, 5)) == (255, 255, 255)  # transparent black shows as white, not black
    red, green, blue = image.getpixel((60, 5))  # type: ignore[misc]
    assert red == 255 and 120 <= green <= 135 and green == blue  # half red over white: pink


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I;16", "I", "F", "YCbCr"])
def test_every_pillow_mode_becomes_rgb(mode: str) -> None:
    gradient = Image.linear_gradient("L").resize((32, 24))
    if mode in ("I", "I;16"):
        source = Image.fromarray(np.asarray(gradient).astype(np.uint16 if mode == "I;16" else np.int32) * 257)
    elif mode == "F":
        source = Image.fromarray(np.asarray(gradient).astype(np.float32) / 255)
    else:
        source = gradient.convert(mode)
    assert source.mode == mode
    buf = io.BytesIO()
    source.save(buf, "PNG" if mode in ("LA", "I;16") else "TIFF")
    decoded = decode_image(buf.getvalue())
    arr = np.asarray(decoded.image)
    assert decoded.image.mode == "RGB" and decoded.image.size == (32, 24)
    assert arr.min() < 40 and arr.max() > 215, f"{mode} lost its tonal range"


def test_multi_frame_files_give_the_first_frame(tree: tuple[Path, dict[str, str]]) -> None:
    gif = _decode_file(tree, "animated.gif")
    assert gif.metadata.format == "GIF"
    assert gif.image.getpixel((0, 0)) == hf.GIF_FRAME_COLOURS[0]
    tiff = _decode_file(tree, "multipage.tif")
    assert tiff.metadata.format == "TIFF"
    assert tiff.image.size == hf.TIFF_PAGE_SIZES[0]


@pytest.mark.parametrize(
    ("rel", "fmt", "size"),
    [
        ("nested/coffee.webp", "WEBP", (600, 400)),
        ("nested/deeper/chelsea.bmp", "BMP", (451, 300)),
        ("photo", "PNG", (60, 40)),
        (hf.UNICODE_NAME, "PNG", (90, 60)),
        ("large.jpg", "JPEG", hf.LARGE_SIZE),
    ],
)
def test_formats_and_names(
    tree: tuple[Path, dict[str, str]], rel: str, fmt: str, size: tuple[int, int]
) -> None:
    decoded = _decode_file(tree, rel)
    assert decoded.metadata.format == fmt
    assert decoded.image.size == size == (decoded.metadata.width, decoded.metadata.height)


# --- orientation, draft, metadata -------------------------------------------------------------------


def test_exif_orientation_is_applied(tree: tuple[Path, dict[str, str]]) -> None:
    data = _read(tree, "exif_rotated.jpg")
    decoded = decode_image(data)
    stored_w, stored_h = hf.ROTATED_STORED_SIZE
    assert decoded.metadata.orientation == 6
    assert (decoded.metadata.width, decoded.metadata.height) == (stored_h, stored_w)
    assert decoded.image.size == (stored_h, stored_w)
    reference = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
    assert np.array_equal(np.asarray(decoded.image), np.asarray(reference))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "TIFF", "WEBP"])
def test_orientation_in_every_format_that_carries_exif(fmt: str) -> None:
    """Pillow's TIFF reader rotates by itself; the others leave it to us. Either way: once, upright."""
    stored = Image.linear_gradient("L").resize((60, 20)).convert("RGB")  # dark top, light bottom
    exif = Image.Exif()
    exif[0x0112] = 8  # shown rotated 90 degrees counter-clockwise
    buf = io.BytesIO()
    stored.save(buf, fmt, exif=exif, **({"quality": 95} if fmt in ("JPEG", "WEBP") else {}))
    decoded = decode_image(buf.getvalue())
    assert decoded.metadata.orientation == 8
    assert decoded.image.size == (20, 60) == (decoded.metadata.width, decoded.metadata.height)
    expected = np.asarray(stored.transpose(Image.Transpose.ROTATE_90), dtype=np.int16)
    assert np.abs(np.asarray(decoded.image, dtype=np.int16) - expected).mean() < 4


def test_exif_metadata(tree: tuple[Path, dict[str, str]]) -> None:
    meta = _decode_file(tree, "exif_rotated.jpg").metadata
    assert meta.taken_at == hf.EXIF_TAKEN_AT  # DateTimeOriginal wins over DateTime
    assert meta.camera == hf.EXIF_MODEL  # "Canon" + "Canon EOS R5", without the repeated make
    assert meta.gps_lat == pytest.approx(hf.EXIF_LAT, abs=1e-6)
    assert meta.gps_lon == pytest.approx(hf.EXIF_LON, abs=1e-6)


def test_exif_fallbacks_and_junk() -> None:
    exif = Image.Exif()
    exif[0x010F] = "NIKON CORPORATION\x00 "
    exif[0x0110] = "NIKON D750"
    exif[0x0132] = "2019:05:06 07:08:09"  # only DateTime: the fallback
    exif[0x0112] = 42  # not an orientation
    exif.get_ifd(0x8825).update({1: "S", 2: (10.0, 30.0, 0.0)})  # latitude without longitude
    buf = io.BytesIO()
    Image.new("RGB", (8, 6)).save(buf, "JPEG", exif=exif)
    meta = decode_image(buf.getvalue()).metadata
    assert meta.camera == "NIKON CORPORATION NIKON D750"
    assert meta.taken_at is not None and meta.taken_at.isoformat() == "2019-05-06T07:08:09"
    assert meta.orientation is None and (meta.width, meta.height) == (8, 6)
    assert meta.gps_lat is None and meta.gps_lon is None


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
def test_malformed_exif_costs_fields_not_the_image() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (8, 6), (1, 2, 3)).save(
        buf, "JPEG", exif=b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\xff\xff\xde\xad"
    )
    decoded = decode_image(buf.getvalue())
    assert decoded.image.size == (8, 6)
    meta = decoded.metadata
    assert (meta.taken_at, meta.camera, meta.orientation, meta.gps_lat) == (None, None, None, None)


def test_draft_decodes_large_jpeg_smaller_and_faster(tree: tuple[Path, dict[str, str]]) -> None:
    data = _read(tree, "large.jpg")
    draft = decode_image(data, min_side=224)
    assert 224 <= min(draft.image.size) < 3000 // 4
    assert (draft.metadata.width, draft.metadata.height) == hf.LARGE_SIZE  # the full size, not the draft's

    def best_of(runs: int, **kwargs: object) -> float:
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            decode_image(data, **kwargs)  # type: ignore[arg-type]
            times.append(time.perf_counter() - started)
        return min(times)

    assert best_of(3, min_side=224) < best_of(3) / 2


def test_draft_respects_rotation(tree: tuple[Path, dict[str, str]]) -> None:
    decoded = _decode_file(tree, "exif_rotated.jpg", min_side=100)  # stored 320x240 -> shown 240x320
    assert min(decoded.image.size) >= 100
    assert decoded.image.size[0] < decoded.image.size[1]  # still portrait
    assert (decoded.metadata.width, decoded.metadata.height) == (240, 320)


def test_min_side_larger_than_image_decodes_full_size(tree: tuple[Path, dict[str, str]]) -> None:
    assert _decode_file(tree, "grey.jpg", min_side=4096).image.size == (512, 512)


# --- container checks: JPEG garbage, PNG metadata ----------------------------------------------------


def test_zeros_after_a_jpeg_header_are_refused_at_once() -> None:
    """Pillow steps through garbage between JPEG markers one byte at a time in Python, holding the
    GIL: 2 s for this 19 MB upload on a 2-core EPYC (1.5 s in the report), 200 s for 2 GB."""
    data = hf.jpeg_then_zeros(19 * 2**20)
    started = time.perf_counter()
    reason = _fail_reason(data)
    assert time.perf_counter() - started < 0.25  # microseconds: bytes.find, not a byte loop
    assert reason == "corrupt JPEG (garbage between markers)"


def test_garbage_between_jpeg_markers_is_bounded_not_banned() -> None:
    """A little junk between segments is common in real files, and Pillow and libjpeg skip it."""
    header, rest = hf.jpeg_header(), hf._encode(Image.fromarray(skimage.data.chelsea()), "JPEG")
    after_app0 = rest[len(header) :]
    tolerated = header + bytes(MAX_JPEG_HEADER_STEPS - 100) + after_app0
    expected = np.asarray(Image.open(io.BytesIO(rest)).convert("RGB"))
    assert np.array_equal(np.asarray(decode_image(tolerated).image), expected)
    too_much = header + bytes(MAX_JPEG_HEADER_STEPS + 1) + after_app0
    assert _fail_reason(too_much) == "corrupt JPEG (garbage between markers)"


def _real_jpegs() -> dict[str, bytes]:
    chelsea = Image.fromarray(skimage.data.chelsea())
    plain = hf._encode(chelsea, "JPEG", quality=90)
    header = hf.jpeg_header()
    folder = Path(skimage.__file__).parent / "data"
    return {
        **{path.name: path.read_bytes() for path in sorted(folder.glob("*.jpg"))},
        "progressive": hf._encode(chelsea, "JPEG", progressive=True),
        "mpo": hf._encode(chelsea, "MPO", save_all=True, append_images=[chelsea.rotate(90)]),
        "restart markers": hf._encode(chelsea, "JPEG", restart_marker_blocks=1),
        "comment": hf._encode(chelsea, "JPEG", comment=b"a cat"),
        "exif rotated": hf.exif_jpeg(),
        "cmyk": hf._encode(chelsea.convert("CMYK"), "JPEG"),
        "fill bytes": header + b"\xff" * 50 + plain[len(header) :],  # allowed before any marker
        "junk after app0": header + bytes(1000) + plain[len(header) :],
    }


@pytest.mark.parametrize("name", list(_real_jpegs()))
def test_real_jpegs_pass_the_marker_check(name: str) -> None:
    data = _real_jpegs()[name]
    check_jpeg_markers(data)
    decoded = decode_image(data)
    expected = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
    assert decoded.metadata.format == "JPEG"
    assert np.array_equal(np.asarray(decoded.image), np.asarray(expected)), name


@pytest.mark.parametrize(
    ("icc_bytes", "text_bytes"), [(60 * 2**20, 0), (0, 2 * 2**20)], ids=["iccp-60MB", "ztxt-2MB"]
)
def test_oversized_png_metadata_costs_the_metadata_not_the_image(icc_bytes: int, text_bytes: int) -> None:
    """Pillow refuses a compressed ICC profile or text chunk over 1 MB, and with it the image."""
    data = hf.png_with_huge_metadata(icc_bytes, text_bytes)
    assert len(data) < 100_000
    decoded = decode_image(data)
    plain = Image.fromarray(skimage.data.chelsea()).resize((64, 48))
    assert decoded.metadata.format == "PNG"
    assert np.array_equal(np.asarray(decoded.image), np.asarray(plain))


def test_stripping_png_metadata_keeps_every_other_chunk() -> None:
    data = hf.png_with_huge_metadata(4096, 100)
    stripped = strip_png_metadata(data)
    assert b"iCCP" in data and b"zTXt" in data
    assert b"iCCP" not in stripped and b"zTXt" not in stripped
    pixels = [np.asarray(Image.open(io.BytesIO(png))) for png in (stripped, data)]
    assert np.array_equal(*pixels)
    assert strip_png_metadata(data[:40]) == data[:40]  # a damaged chunk stream is left to Pillow


# --- sniffing -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"\xff\xd8\xff\xe1\x00\x10Exif", "JPEG"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "PNG"),
        (b"GIF87a\x01\x00", "GIF"),
        (b"GIF89a\x01\x00", "GIF"),
        (b"RIFF\x24\x00\x00\x00WEBPVP8 ", "WEBP"),
        (b"II*\x00\x08\x00\x00\x00", "TIFF"),
        (b"MM\x00*\x00\x00\x00\x08", "TIFF"),
        (b"II+\x00\x08\x00\x00\x00", "TIFF"),
        (b"BM\x36\x00\x0c\x00\x00\x00\x00\x00\x36\x00\x00\x00\x28\x00\x00\x00", "BMP"),
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic", "HEIF"),
        (b"\x00\x00\x00\x1cftypmif1\x00\x00\x00\x00mif1heicmiaf", "HEIF"),
        (b"\x00\x00\x00\x20ftypavif\x00\x00\x00\x00avifmif1miafMA1B", "AVIF"),
        (b"\x00\x00\x00\x1cftypmif1\x00\x00\x00\x00mif1avifmiaf", "AVIF"),
        (b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2", None),  # MP4 video
        (b"BMW service notes: change the oil", None),
        (b"%PDF-1.7\n", None),
        (b"", None),
        (b"\xff\xd8", None),
    ],
)
def test_sniff_format(head: bytes, expected: str | None) -> None:
    assert sniff_format(head) == expected
