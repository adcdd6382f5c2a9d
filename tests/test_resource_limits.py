"""Small or sparse hostile files must cost bounded memory: measured in a child process's peak RSS.

A subprocess, because peak RSS only ever grows: measured in the test process, it would be whatever
the biggest earlier test left. Each child loads the tiny CLIP checkpoint, notes its peak RSS, does
the one hostile thing, and reports how much the peak grew.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from PIL import Image

import hostile_files as hf
import pixseek
from pixseek.config import Settings
from pixseek.embedding import load_encoder
from pixseek.library import Library
from pixseek.media.preprocess import MAX_ASPECT_RATIO, crop_to_aspect_ratio, keeps_only_centre

resource = pytest.importorskip("resource", reason="peak RSS needs the resource module (POSIX)")

# Growth of the child's peak RSS allowed for one hostile file. Before the fixes: 1.0 GB for the
# 1 x 100000 PNG (tiny CLIP's 32 px processor; 5 GB at CLIP's 224 px), 2 GB for the sparse file.
GROWTH_LIMIT_MB = 150

_PEAK = "resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1 << 20 if sys.platform == 'darwin' else 1024)"

EMBED_CHILD = f"""
import json, resource, sys
from pathlib import Path
from pixseek.embedding import load_encoder
from pixseek.media.decode import decode_image
from PIL import Image

encoder = load_encoder(sys.argv[1], device="cpu", precision="fp32")
encoder.embed_images([Image.new("RGB", (64, 48))])  # the first forward's allocations, before the base
base = {_PEAK}
vectors = [encoder.embed_images([decode_image(Path(p).read_bytes()).image])[0].tolist() for p in sys.argv[2:]]
print(json.dumps({{"growth_mb": {_PEAK} - base, "vectors": vectors}}))
"""

INDEX_CHILD = f"""
import json, resource, sys
from pathlib import Path
from pixseek.config import Settings
from pixseek.library import Library

settings = Settings(data_dir=sys.argv[2], model=sys.argv[1], precision="fp32", device="cpu", decode_workers=2)
library = Library(settings)
indexer = library.indexer(library.load_encoder())
base = {_PEAK}
report = indexer.run([Path(sys.argv[3])])
print(json.dumps({{"growth_mb": {_PEAK} - base, "failed": report.failed, "embedded": report.embedded}}))
"""


def run_child(script: str, *args: str | Path, timeout: float = 90) -> dict:
    """Run ``script`` in a fresh interpreter on the pixseek this test imported; its JSON line."""
    env = {**os.environ, "PYTHONPATH": str(Path(pixseek.__file__).parent.parent), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", script, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.timeout(120)
def test_a_tall_thin_png_is_embedded_in_bounded_memory(tmp_path: Path, clip_dir: Path) -> None:
    """35 kB and 350 kB files, far under the pixel cap, that CLIP's processor would scale to
    224 x 2,240,000 and 224 x 22,400,000 pixels."""
    paths = []
    for height in (10_000, 100_000):
        paths.append(tmp_path / f"tall-{height}.png")
        paths[-1].write_bytes(hf.tall_png(height))
    result = run_child(EMBED_CHILD, clip_dir, *paths)
    assert result["growth_mb"] < GROWTH_LIMIT_MB, result["growth_mb"]
    vectors = np.asarray(result["vectors"])
    assert vectors.shape[0] == 2 and np.isfinite(vectors).all()
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


@pytest.mark.timeout(120)
def test_a_sparse_multi_gb_jpeg_is_refused_without_being_read(tmp_path: Path, clip_dir: Path) -> None:
    """A JPEG header and a 2 GB hole: no disk, but read whole it took 2.5 GB of RAM (and Pillow
    then stepped through the zeros for minutes)."""
    root = tmp_path / "photos"
    root.mkdir()
    hf.write_sparse_jpeg(root / "sparse.jpg", 2 * 2**30)
    Image.fromarray(skimage.data.chelsea()).save(root / "chelsea.png")
    result = run_child(INDEX_CHILD, clip_dir, tmp_path / "data", root, timeout=60)
    assert result["failed"] == [[str(root / "sparse.jpg"), "file larger than the 256 MB limit"]]
    assert result["embedded"] == 1
    assert result["growth_mb"] < GROWTH_LIMIT_MB, result["growth_mb"]


def test_the_file_size_limit_is_a_setting(tmp_path: Path, settings: Settings) -> None:
    root = tmp_path / "photos"
    root.mkdir()
    hf.write_sparse_jpeg(root / "padded.jpg", 3 * 2**20)
    library = Library(settings.model_copy(update={"max_file_size": "2M"}))
    report = library.indexer(library.load_encoder()).run([root])
    library.close()
    assert report.failed == [(str(root / "padded.jpg"), "file larger than the 2 MB limit")]


# --- what the model sees is unchanged ------------------------------------------------------------------


@pytest.fixture(scope="module")
def encoder(clip_dir: Path):
    return load_encoder(str(clip_dir), device="cpu", precision="fp32")


def _reference_pixels(encoder, image: Image.Image) -> np.ndarray:
    """The checkpoint's processor run on the whole image, as transformers documents it."""
    return encoder.processor.image_processor(images=[image], return_tensors="np")["pixel_values"][0]


@pytest.mark.parametrize("size", [(600, 400), (451, 300), (40, 400), (400, 40), (32, 32), (1, 10)])
def test_images_up_to_the_ratio_reach_the_model_bit_for_bit(encoder, size: tuple[int, int]) -> None:
    image = Image.fromarray(skimage.data.astronaut()).resize(size)
    assert np.array_equal(encoder.preprocess_image(image), _reference_pixels(encoder, image))
    assert np.array_equal(
        encoder.embed_images([image]), encoder.embed_pixels(_reference_pixels(encoder, image)[None])
    )


def test_beyond_the_ratio_the_model_sees_the_same_centre(encoder) -> None:
    """A 20:1 strip of a photo: the crop keeps the centre the processor looks at, so the embedding
    matches the uncropped one (up to a sub-pixel shift of the resize grid)."""
    strip = Image.fromarray(skimage.data.astronaut()).crop((0, 236, 512, 276)).resize((800, 40))
    cropped = crop_to_aspect_ratio(strip, MAX_ASPECT_RATIO)
    assert cropped.size == (400, 40)
    reference = encoder.embed_pixels(_reference_pixels(encoder, strip)[None])[0]
    assert float(reference @ encoder.embed_images([strip])[0]) > 0.999


def test_only_centre_cropping_processors_are_cropped() -> None:
    """Checked against the processors' defaults in the installed transformers."""
    import transformers

    assert keeps_only_centre(transformers.CLIPImageProcessorPil())  # shortest edge 224, crop 224 x 224
    assert not keeps_only_centre(transformers.BridgeTowerImageProcessorPil())  # caps the longer side
    assert not keeps_only_centre(transformers.ViTImageProcessorPil())  # squashes all of it to 224 x 224
    assert not keeps_only_centre(transformers.BlipImageProcessorPil())  # 384 x 384, BLIP-2's too
    assert not keeps_only_centre(transformers.CLIPImageProcessorPil(do_center_crop=False))


def test_crop_keeps_the_exact_centre() -> None:
    column = Image.fromarray((np.arange(1001) % 251).astype(np.uint8).reshape(1001, 1))
    cropped = crop_to_aspect_ratio(column, 10)
    assert cropped.size == (1, 11)  # 10, plus one to keep the parity of 1001: centre row 500 stays central
    assert np.array_equal(np.asarray(cropped)[:, 0], np.arange(495, 506) % 251)
    assert crop_to_aspect_ratio(cropped, 11) is cropped  # within the ratio: untouched
