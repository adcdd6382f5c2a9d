"""RapidOCR: PaddleOCR's PP-OCRv4 detector and recogniser as ONNX models, shipped inside the
``rapidocr-onnxruntime`` wheel (no download), run by onnxruntime on the CPU, or on CUDA where
``onnxruntime-gpu`` provides the CUDA execution provider.

The detector runs first on the whole image; when it finds no text region the call returns at
once without running the recogniser, which is what makes photos without text cheap.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from PIL import Image

from pixseek.errors import PixseekError
from pixseek.ocr.types import OcrWord, Quad
from pixseek.ocr.words import split_line

EXTRA_HINT = "pip install 'pixseek[ocr]'"

# The detector's input: its longer side is capped here (RapidOCR's default instead raises the
# *shorter* side to 736 px, which turns a 640x200 label into a 2,355x736 detector input, 1.3 s on
# two cores for two lines of text).
DETECT_MAX_SIDE = 960
# Lines the recogniser is less sure of than this are dropped (RapidOCR's own default).
MIN_LINE_SCORE = 0.5


def cuda_available() -> bool:
    """Whether onnxruntime here can run on CUDA (``onnxruntime-gpu`` on a machine with a GPU)."""
    try:
        import onnxruntime
    except ImportError:
        return False
    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


class RapidOcrEngine:
    """One RapidOCR pipeline (three onnxruntime sessions) shared by every caller.

    onnxruntime's ``InferenceSession.run`` is thread-safe, so one instance serves all decoding
    threads (one model copy, and onnxruntime already spreads one call over the cores). RapidOCR
    keeps two kinds of per-call state on itself: the thresholds its per-call options rewrite (this
    class always passes the same values, so concurrent writes agree) and the detector's resize
    step (pinned to one object here, so it is the same for every call)."""

    name = "rapidocr"
    thread_safe = True

    def __init__(
        self, languages: tuple[str, ...], *, threads: int | None = None, use_cuda: bool | None = None
    ):
        try:
            from rapidocr_onnxruntime import RapidOCR
        except ModuleNotFoundError as error:
            raise PixseekError(
                f"OCR with rapidocr needs the ocr extra: {EXTRA_HINT} ({error.name or error} is missing)"
            ) from error
        except ImportError as error:  # installed, but a shared library of OpenCV's is missing
            raise PixseekError(
                f"rapidocr could not load ({error}); on Debian: apt-get install libgl1 libglib2.0-0"
            ) from error
        self.languages = languages
        cuda = cuda_available() if use_cuda is None else use_cuda
        options: dict[str, Any] = {
            "det_limit_type": "max",
            "det_limit_side_len": DETECT_MAX_SIDE,
            "det_use_cuda": cuda,
            "cls_use_cuda": cuda,
            "rec_use_cuda": cuda,
            "text_score": MIN_LINE_SCORE,
        }
        if threads:
            options["intra_op_num_threads"] = threads
        # RapidOCR logs a warning per session when CUDA is asked for and missing; we decide above.
        logging.getLogger("OrtInferSession").setLevel(logging.ERROR)
        self.device = "cuda" if cuda else "cpu"
        self._ocr = RapidOCR(**options)
        # RapidOCR's "max" rule picks a cap per image (960, 1500 or 2000 px) and stores it on the
        # shared detector: pin one cap instead, so the cost per image is bounded and no thread
        # swaps the resize step under another.
        detector = self._ocr.text_det
        detector.get_preprocess = _fixed_preprocess(detector, DETECT_MAX_SIDE)

    def recognise(self, image: Image.Image) -> list[OcrWord]:
        """The words of ``image`` (RGB), in RapidOCR's reading order (top to bottom, left to right).

        The bundled recogniser often drops the space between Latin words ("cheese 12.50" comes
        back "cheese12.50"), which no keyword index can match; the spaces are put back where the
        line's own pixels show a gap between two recognised characters (:func:`respace`)."""
        pixels = np.ascontiguousarray(np.asarray(image)[:, :, ::-1])  # RapidOCR expects BGR
        # Per-call options are the defaults set at construction: every thread writes the same
        # values into RapidOCR's shared thresholds, so sharing one instance stays safe.
        result, _timings = self._ocr(
            pixels, return_word_box=True, box_thresh=0.5, unclip_ratio=1.6, text_score=MIN_LINE_SCORE
        )
        gray = np.asarray(image.convert("L"))
        words: list[OcrWord] = []
        for line, entry in enumerate(result or ()):
            points, text, score = entry[0], str(entry[1]), float(entry[2])
            quad: Quad = tuple((float(x), float(y)) for x, y in points)  # type: ignore[assignment]
            if len(entry) >= 5 and entry[3] and len(entry[3]) == len(entry[4]):
                text = respace(gray, quad, list(entry[4]), entry[3]) or text
            words.extend(split_line(text.strip(), quad, score, line))
        return words


def _fixed_preprocess(detector: Any, side: int) -> Any:
    """A replacement for RapidOCR's detector ``get_preprocess`` that always caps at ``side``."""
    from rapidocr_onnxruntime.ch_ppocr_det.utils import DetPreProcess

    fixed = DetPreProcess(side, "max", detector.mean, detector.std)

    def get_preprocess(_max_wh: int) -> Any:
        return fixed

    return get_preprocess


# A run of ink-free columns at least this share of the line's height between two characters is a
# word space (DejaVu's space is about 0.32 em, letter gaps under 0.1 em).
SPACE_GAP = 0.22
SPACE_OVER_TYPICAL = 2.5


def respace(gray: np.ndarray, quad: Quad, chars: list[str], boxes: list[Any]) -> str:
    """``chars`` joined, with a space inserted between two Latin letters or digits wherever the
    straightened line crop has an ink-free gap wider than ``SPACE_GAP`` of its height between them.

    The recogniser places each character at its CTC column (``boxes``); the gap test uses the
    pixels, which are sharper than the columns (8 px apart at 32 px text)."""
    import cv2

    tl, tr, _br, bl = (np.asarray(p, dtype=np.float32) for p in quad)
    along = tr - tl
    length = float(np.linalg.norm(along))
    height = float(np.linalg.norm(bl - tl))
    if length < 4 or height < 4:
        return "".join(chars)
    width_px, height_px = round(length), round(height)
    source = np.asarray([quad[0], quad[1], quad[2], quad[3]], dtype=np.float32)
    target = np.asarray([[0, 0], [width_px, 0], [width_px, height_px], [0, height_px]], dtype=np.float32)
    strip = cv2.warpPerspective(
        gray,
        cv2.getPerspectiveTransform(source, target),
        (width_px, height_px),
        borderMode=cv2.BORDER_REPLICATE,
    )
    _threshold, binary = cv2.threshold(strip, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    ink = binary > 0
    if ink.mean() > 0.5:  # light text on a dark ground: ink is the minority side
        ink = ~ink
    columns: np.ndarray = np.asarray(ink.any(axis=0))
    unit = along / length

    def position(box: Any) -> tuple[float, float]:
        xs = [float(np.dot(np.asarray(p, dtype=np.float32) - tl, unit)) for p in box]
        return min(xs), max(xs)

    spans = [position(box) for box in boxes]
    gaps: list[int] = [0] * len(chars)  # gaps[i]: ink-free run between chars i-1 and i (Latin only)
    for index in range(1, len(chars)):
        before, after = chars[index - 1], chars[index]
        if before.isalnum() and after.isalnum() and not _is_cjk(before) and not _is_cjk(after):
            left = int(max(0, (spans[index - 1][0] + spans[index - 1][1]) / 2))
            right = int(min(width_px, (spans[index][0] + spans[index][1]) / 2))
            gaps[index] = _longest_gap(columns[left:right]) if right > left else 0
    measured = sorted(gap for gap in gaps[1:])
    typical = measured[len(measured) // 2] if measured else 0
    # A space is wide against the line (SPACE_GAP of its height) and against its own letter gaps:
    # monospaced fonts leave wide gaps around "i" and "l", but a space there is wider still.
    threshold = max(SPACE_GAP * height_px, SPACE_OVER_TYPICAL * typical)
    out = [chars[0]]
    for index in range(1, len(chars)):
        if gaps[index] and gaps[index] >= threshold:
            out.append(" ")
        out.append(chars[index])
    return "".join(out)


def _longest_gap(columns: np.ndarray) -> int:
    """The longest run of ink-free columns."""
    best = run = 0
    for has_ink in columns:
        run = 0 if has_ink else run + 1
        best = max(best, run)
    return best


def _is_cjk(char: str) -> bool:
    return "\u3400" <= char <= "\u9fff" or "\uf900" <= char <= "\ufaff"
