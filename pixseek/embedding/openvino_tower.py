"""The image tower compiled with OpenVINO, cached per checkpoint: pixseek's CPU runtime for images.

Measured on the 2-core AVX512-BF16 EPYC (docs/benchmarks.md "Image tower runtimes"), the CLIP
ViT-B/32 image tower at batch 32 runs 82 images/s in OpenVINO bf16 against 49 in PyTorch bf16
autocast (68 with ``torch.compile``, after a 30 s first call), and 45 against 18 in fp32 (ONNX
Runtime: 40). Its outputs match transformers' ``get_image_features`` to fp32 rounding
(tests/test_openvino_tower.py).

Converting needs torch and the loaded model (a few seconds), so it happens once per checkpoint:
the IR goes to ``<cache>/image-towers/<key>/`` with what a later start needs to skip loading the
model at all (fingerprint, dimension, input size), the key being the checkpoint's identity
(pixseek.embedding.checkpoint_identity). Compiling the IR takes 0.54 s the first time and 0.12 s once
OpenVINO has cached the compiled blob beside it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import locale
import shutil
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pixseek.vocabulary import Precision

# Bumped when what is exported changes (wrapper, inputs, outputs), so old caches are not read.
EXPORT_FORMAT = 1
MODEL_FILE = "image_tower.xml"
_META_FILE = "meta.json"
_OV_PRECISION = {Precision.FP32: "f32", Precision.BF16: "bf16"}


def openvino_installed() -> bool:
    return importlib.util.find_spec("openvino") is not None


def supports(precision: str) -> bool:
    """Precisions the CPU plugin runs as pixseek means them (fp16 on a CPU stays with PyTorch)."""
    return precision in _OV_PRECISION


@dataclass(frozen=True)
class TowerInfo:
    """What a cached tower records so that a start can skip loading the checkpoint."""

    model_id: str
    fingerprint: str
    dim: int
    input_size: tuple[int, int]  # (height, width)
    format: int = EXPORT_FORMAT

    @classmethod
    def read(cls, folder: Path) -> TowerInfo | None:
        try:
            data = json.loads((folder / _META_FILE).read_text(encoding="utf-8"))
            info = cls(
                model_id=str(data["model_id"]),
                fingerprint=str(data["fingerprint"]),
                dim=int(data["dim"]),
                input_size=(int(data["input_size"][0]), int(data["input_size"][1])),
                format=int(data["format"]),
            )
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            return None
        return info if info.format == EXPORT_FORMAT and (folder / MODEL_FILE).is_file() else None


class TowerCache:
    """``<root>/image-towers/<key>/``: one exported tower per checkpoint identity and OpenVINO
    version (an IR from another version is re-exported rather than trusted)."""

    def __init__(self, root: Path):
        self.root = root / "image-towers"

    def folder(self, identity: str) -> Path:
        import openvino

        version = openvino.__version__.split("-")[0]
        return self.root / f"{identity}-ov{version}-f{EXPORT_FORMAT}"

    def find(self, identity: str) -> tuple[Path, TowerInfo] | None:
        folder = self.folder(identity)
        info = TowerInfo.read(folder)
        return (folder, info) if info is not None else None

    def export(self, model: Any, identity: str, info: TowerInfo) -> Path:
        """Convert ``model``'s image tower and store it under ``identity``; written in a temp
        folder and renamed, so a crash or a second process exporting the same one leaves no half."""
        import openvino
        import torch

        target = self.folder(identity)
        self.root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".export-", dir=self.root))
        try:
            height, width = info.input_size
            example = torch.zeros(1, 3, height, width)
            with torch.inference_mode(), warnings.catch_warnings(), locale_kept():
                warnings.simplefilter("ignore")  # the tracer's notes on shape checks it folds away
                converted = openvino.convert_model(
                    _image_features(model),
                    example_input=example,
                    input=[("pixel_values", [-1, 3, height, width], openvino.Type.f32)],
                )
            with locale_kept():
                openvino.save_model(converted, staging / MODEL_FILE, compress_to_fp16=False)
            (staging / _META_FILE).write_text(json.dumps(asdict(info)), encoding="utf-8")
            try:
                staging.rename(target)
            except OSError:  # another process stored the same tower first: keep that one
                if TowerInfo.read(target) is None:
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return target


def _image_features(model: Any) -> Any:
    """``model.get_image_features(...).pooler_output`` as a module OpenVINO can trace (defined
    here, so that importing this module costs no torch import)."""
    import torch

    class ImageFeatures(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
            return self.model.get_image_features(pixel_values=pixel_values).pooler_output

    return ImageFeatures().eval()


@contextlib.contextmanager
def locale_kept() -> Iterator[None]:
    """Put the C locale back as it was around an OpenVINO call. Its compile can leave the process
    in the "C" locale (a race between its own setlocale calls, seen with a cached blob while other
    threads ran); Python's default text encoding then turns ASCII and every later open() without
    an explicit encoding fails on the first non-ASCII byte."""
    saved = locale.setlocale(locale.LC_ALL)
    try:
        yield
    finally:
        if locale.setlocale(locale.LC_ALL) != saved:
            locale.setlocale(locale.LC_ALL, saved)


def _compile(folder: Path, options: dict[str, Any]) -> Any:
    import openvino

    with locale_kept():
        core = openvino.Core()
        # OpenVINO's own cache of the compiled blob: 0.12 s to load against 0.54 s to compile.
        core.set_property({"CACHE_DIR": str(folder / "compiled")})
        return core.compile_model(str(folder / MODEL_FILE), "CPU", options).create_infer_request()


def _in_own_thread(work: Callable[[], Any]) -> Any:
    """``work()`` in a short-lived thread, waited for. OpenVINO's CPU compile installs an 11 KB
    alternate signal stack on the thread that calls it and frees it with the compiled model,
    possibly from another thread, leaving the caller's stack dangling; Python runs its signal
    handlers on it (SA_ONSTACK), so compiled on the main thread, the next SIGTERM to ``pixseek
    watch`` or ``serve`` crashed the process with SIGSEGV (tests/test_watch.py found it). A thread
    that ends takes that stack with it."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = work()
        except BaseException as error:  # re-raised in the caller, with its traceback
            outcome["error"] = error

    thread = threading.Thread(target=run, name="pixseek-openvino-compile")
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


class CompiledTower:
    """The exported tower compiled for this CPU.

    Calls are serialised: one inference already uses every core, and an infer request is not
    safe to share between threads.
    """

    def __init__(self, folder: Path, precision: str):
        self.precision = precision
        self._lock = threading.Lock()
        options: dict[str, Any] = {
            "INFERENCE_PRECISION_HINT": _OV_PRECISION[Precision(precision)],
            # One request using every core: measured faster in the pipeline than two 1-core streams
            # (3.36 s against 3.55 s for 200 small JPEGs), though streams suffer less from a busy core.
            "PERFORMANCE_HINT": "LATENCY",
            # No int8 activations: the outputs must match the reference (the parity tests).
            "DYNAMIC_QUANTIZATION_GROUP_SIZE": 0,
        }
        self._request = _in_own_thread(lambda: _compile(folder, options))

    def __call__(self, pixel_values: np.ndarray) -> np.ndarray:
        """Projected (not normalised) image features, float32 (N, dim)."""
        pixels = np.ascontiguousarray(pixel_values, dtype=np.float32)
        with self._lock, locale_kept():
            return np.array(self._request.infer({0: pixels})[0], dtype=np.float32)
