"""The OpenVINO image tower: parity with transformers, the per-checkpoint cache, and a start
that loads neither torch nor transformers."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pixseek.embedding import CachedTowerEncoder, DualEncoder, ModelLoadError, load_encoder
from pixseek.embedding.openvino_tower import TowerCache

FAMILIES = ["clip_dir", "dual_dir", "altclip_dir"]


def _pixels(encoder: DualEncoder, count: int = 6) -> np.ndarray:
    assert encoder.transform is not None
    size = encoder.transform.output_size
    return np.random.default_rng(1).standard_normal((count, 3, *size)).astype(np.float32)


@pytest.mark.parametrize("checkpoint", FAMILIES)
def test_openvino_matches_transformers(
    checkpoint: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    folder = str(request.getfixturevalue(checkpoint))
    reference = load_encoder(folder, device="cpu", precision="fp32", runtime="torch")
    assert isinstance(reference, DualEncoder) and reference.image_tower is None
    pixels = _pixels(reference)
    expected = reference.embed_pixels(pixels)

    exported = load_encoder(folder, device="cpu", precision="fp32", runtime="openvino", cache_dir=tmp_path)
    assert isinstance(exported, DualEncoder) and exported.image_tower is not None  # exported now
    np.testing.assert_allclose(exported.embed_pixels(pixels), expected, atol=2e-6)

    cached = load_encoder(folder, device="cpu", precision="fp32", runtime="openvino", cache_dir=tmp_path)
    assert isinstance(cached, CachedTowerEncoder)
    assert (cached.fingerprint, cached.dim, cached.model_id) == (
        reference.fingerprint,
        reference.dim,
        reference.model_id,
    )
    assert cached.image_min_side == reference.image_min_side
    np.testing.assert_allclose(cached.embed_pixels(pixels), expected, atol=2e-6)

    bf16 = load_encoder(folder, device="cpu", precision="bf16", runtime="openvino", cache_dir=tmp_path)
    assert isinstance(bf16, CachedTowerEncoder) and bf16.precision == "bf16"
    cosines = (bf16.embed_pixels(pixels) * expected).sum(axis=1)
    assert cosines.min() > 0.999  # torch bf16 autocast measures the same order (tests/test_encoder.py)


def test_cached_encoder_loads_the_model_for_texts_only(clip_dir: Path, tmp_path: Path) -> None:
    load_encoder(str(clip_dir), device="cpu", precision="fp32", runtime="openvino", cache_dir=tmp_path)
    cached = load_encoder(
        str(clip_dir), device="cpu", precision="fp32", runtime="openvino", cache_dir=tmp_path
    )
    assert isinstance(cached, CachedTowerEncoder) and cached._model is None
    reference = load_encoder(str(clip_dir), device="cpu", precision="fp32", runtime="torch")
    texts = ["a red circle", "ein blaues Quadrat"]
    np.testing.assert_array_equal(cached.embed_texts(texts), reference.embed_texts(texts))
    assert cached._model is not None
    from PIL import Image

    image = Image.new("RGB", (50, 40), (200, 30, 30))
    np.testing.assert_allclose(cached.embed_images([image]), reference.embed_images([image]), atol=2e-6)


def test_a_changed_checkpoint_is_exported_again(clip_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "model"
    shutil.copytree(clip_dir, copy)
    cache_dir = tmp_path / "cache"
    first = load_encoder(str(copy), device="cpu", precision="fp32", runtime="openvino", cache_dir=cache_dir)
    towers = list((cache_dir / "image-towers").iterdir())
    assert len(towers) == 1

    # Fine-tune stand-in: other weights saved over the same folder.
    import torch
    from transformers import CLIPModel

    model = CLIPModel.from_pretrained(copy)
    with torch.no_grad():
        model.visual_projection.weight.mul_(-1)
    model.save_pretrained(copy)
    second = load_encoder(str(copy), device="cpu", precision="fp32", runtime="openvino", cache_dir=cache_dir)
    assert isinstance(second, DualEncoder)  # not served from the stale tower
    assert second.fingerprint != first.fingerprint
    assert len(list((cache_dir / "image-towers").iterdir())) == 2
    pixels = _pixels(second)
    np.testing.assert_allclose(second.embed_pixels(pixels), -first.embed_pixels(pixels), atol=2e-6)


def test_a_stale_cache_the_key_missed_is_an_error_not_mixed_vectors(clip_dir: Path, tmp_path: Path) -> None:
    load_encoder(str(clip_dir), device="cpu", precision="fp32", runtime="openvino", cache_dir=tmp_path)
    (tower,) = (tmp_path / "image-towers").iterdir()
    meta = json.loads((tower / "meta.json").read_text())
    (tower / "meta.json").write_text(json.dumps({**meta, "fingerprint": "0" * 16}))
    cached = load_encoder(
        str(clip_dir), device="cpu", precision="fp32", runtime="openvino", cache_dir=tmp_path
    )
    with pytest.raises(ModelLoadError, match="image-towers"):
        cached.embed_texts(["a red circle"])


def test_a_model_that_does_not_convert_stays_on_pytorch(
    clip_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def fail(*_args: object) -> Path:
        raise RuntimeError("unsupported operation Foo")

    monkeypatch.setattr(TowerCache, "export", fail)
    with caplog.at_level(logging.WARNING):
        encoder = load_encoder(str(clip_dir), device="cpu", precision="fp32", cache_dir=tmp_path)
    assert isinstance(encoder, DualEncoder) and encoder.image_tower is None
    assert "unsupported operation Foo" in caplog.text and "PyTorch" in encoder.runtime
    assert encoder.embed_pixels(_pixels(encoder)).shape == (6, encoder.dim)


def test_impossible_explicit_choices_fail_before_loading(clip_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="runs on the CPU"):
        load_encoder(str(clip_dir), device="cuda", precision="fp16", runtime="openvino", cache_dir=tmp_path)
    with pytest.raises(ModelLoadError, match="fp32 or bf16"):
        load_encoder(str(clip_dir), device="cpu", precision="fp16", runtime="openvino", cache_dir=tmp_path)
    # auto quietly keeps fp16 on a CPU with PyTorch
    encoder = load_encoder(str(clip_dir), device="cpu", precision="fp16", cache_dir=tmp_path)
    assert isinstance(encoder, DualEncoder) and encoder.image_tower is None


def test_indexing_with_a_cached_tower_imports_no_torch(clip_dir: Path, photos: Path, tmp_path: Path) -> None:
    """The start-up the tower buys: a second `pixseek index` embeds without torch or transformers."""
    env = {**os.environ, "PIXSEEK_CACHE_DIR": str(tmp_path / "cache"), "PIXSEEK_MODEL": str(clip_dir)}
    pixseek = str(Path(sys.executable).with_name("pixseek"))
    first = subprocess.run(
        [pixseek, "index", str(photos), "--json"],
        env={**env, "PIXSEEK_DATA_DIR": str(tmp_path / "first")},
        capture_output=True,
        text=True,
        check=True,
    )
    count = json.loads(first.stdout)["embedded"]
    assert count > 0
    probe = (
        "import json, sys\n"
        "from pixseek.cli import app\n"
        "try:\n"
        "    app(['index', sys.argv[1], '--json'])\n"
        "except SystemExit as exit:\n"
        "    assert not exit.code, exit.code\n"
        "print(json.dumps(sorted(m for m in ('torch', 'transformers') if m in sys.modules)))\n"
    )
    second = subprocess.run(
        [sys.executable, "-c", probe, str(photos)],
        env={**env, "PIXSEEK_DATA_DIR": str(tmp_path / "second")},  # a new library: every file embeds
        capture_output=True,
        text=True,
        check=True,
    )
    *report, modules = second.stdout.strip().splitlines()
    assert json.loads("\n".join(report))["embedded"] == count
    assert json.loads(modules) == []


def test_compiling_from_the_cached_blob_leaves_the_locale_alone(
    clip_dir: Path, tmp_path: Path, sample_photo_paths: list[Path]
) -> None:
    """OpenVINO's compile left the process in the C locale when it ran in a thread beside the
    indexer (Python's default text encoding turned ASCII and later tests failed); it now runs at
    load, guarded by locale_kept. The same flow as that failure: export, cached blob, again."""
    import locale

    from hostile_files import make_hostile_tree
    from pixseek.config import Settings
    from pixseek.library import Library

    root = tmp_path / "hostile"
    make_hostile_tree(root)
    before = locale.getencoding()
    settings = Settings(
        data_dir=tmp_path / "data", model=str(clip_dir), device="cpu", cache_dir=tmp_path / "c"
    )
    with Library(settings) as library:
        for retry in (False, False, True):  # export; cached blob; cached blob again
            library.indexer(library.load_encoder()).run([root], retry_failed=retry)
            assert locale.getencoding() == before


def test_a_signal_after_compiling_is_handled_not_a_crash(clip_dir: Path, tmp_path: Path) -> None:
    """OpenVINO's compile installs a tiny alternate signal stack on its thread and frees it with the
    model; compiled on the main thread and freed elsewhere, the next SIGTERM (docker stop of
    `pixseek serve`) crashed the process with SIGSEGV."""
    import gc
    import signal
    import threading
    import time

    encoders = []
    for _ in range(2):  # exported, then from the cache
        encoders.append(load_encoder(str(clip_dir), device="cpu", precision="fp32", cache_dir=tmp_path))
        encoders[-1].embed_pixels(np.zeros((2, 3, 32, 32), dtype=np.float32))
    # Freed on another thread (a server's request thread, the garbage collector): OpenVINO frees the
    # stack it installed but can only disable it on the thread that frees it.
    collector = threading.Thread(target=lambda: (encoders.clear(), gc.collect()))
    collector.start()
    collector.join()
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
    finally:
        signal.signal(signal.SIGTERM, previous)
