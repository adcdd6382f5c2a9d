"""Reading the words in images (OCR): engines behind one protocol, a reader that bounds input and
never raises for a bad image, and ``load_ocr`` to get one by name.

Engines import their heavy packages (onnxruntime, OpenCV, libtesseract) only when loaded, so
importing this package costs nothing for collections without OCR.
"""

from pixseek.ocr.engine import TextEngine
from pixseek.ocr.languages import parse_languages
from pixseek.ocr.loader import load_ocr, resolve_engine
from pixseek.ocr.reader import OcrReader
from pixseek.ocr.types import OcrResult, OcrWord

__all__ = ["OcrReader", "OcrResult", "OcrWord", "TextEngine", "load_ocr", "parse_languages", "resolve_engine"]
