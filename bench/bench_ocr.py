"""OCR engines compared on the generated corpus (pixseek.testing.text_images): word accuracy per
engine and per condition (kind, font, size, rotation, blur, JPEG, background, language), images/s,
and on scikit-image's text-less photos the time per photo (the detector's fast skip) and the words
read where there are none.

The truth is the rendered text. A word counts as found when it appears among the engine's words
after NFKC, case folding and edge punctuation removal ("exact"); "folded" also drops accents and
maps ß to ss, which is what a keyword index that folds diacritics would still match. Chinese has no
spaces: a word counts when it appears in the engine's text with spaces removed.

Each engine is loaded once for the languages a collection would configure: Latin images are read
with ``en,de,fr``; Chinese images with ``zh,en`` (Tesseract needs the language's data; RapidOCR's
one model reads both). Engines run one image at a time on the calling thread (onnxruntime and
Tesseract use the cores inside one call; the machine and its load are printed with the results).

    python bench/bench_ocr.py                    # 160 mixed + 186 controlled images, 14 photos: minutes
    python bench/bench_ocr.py --quick            # 40 + 62 images, under a minute
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import time
import unicodedata
from collections import defaultdict
from pathlib import Path
from typing import Any

from common import DEFAULT_WORK_DIR, log, uptime
from pixseek.ocr import load_ocr
from pixseek.ocr.words import tokens
from pixseek.testing.text_images import TextImage, controlled, generate, textless_photos

LATIN = "en,de,fr"


def cpu_facts() -> dict[str, Any]:
    """The CPU model and whether it has native bf16 (the project's other benchmarks print it too)."""
    import os

    model, flags = "unknown", ""
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        model = next((ln.split(":", 1)[1].strip() for ln in lscpu.splitlines() if "Model name" in ln), model)
        flags = next((ln.split(":", 1)[1] for ln in lscpu.splitlines() if ln.startswith("Flags")), "")
    except (OSError, subprocess.SubprocessError):
        pass
    return {"cpu": model, "cores": os.cpu_count(), "avx512_bf16": "avx512_bf16" in flags.split()}


def fold(word: str) -> str:
    """Accents off and ß as ss: how a diacritic-folding keyword index compares words."""
    decomposed = unicodedata.normalize("NFKD", word.replace("ß", "ss").replace("ẞ", "ss"))
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()


def score(sample: TextImage, text: str) -> tuple[int, int, int, int]:
    """(words, found exactly, found folded, false words) for one image."""
    truth = tokens(" ".join(sample.words))
    if sample.language == "zh":
        joined = "".join(text.split())
        found = sum(1 for word in truth if word in joined)
        return len(truth), found, found, 0
    read = tokens(text)
    read_set, read_folded = set(read), {fold(word) for word in read}
    exact = sum(1 for word in truth if word in read_set)
    folded = sum(1 for word in truth if fold(word) in read_folded)
    truth_folded = {fold(word) for word in truth}
    false = sum(1 for word in read if fold(word) not in truth_folded)
    return len(truth), exact, folded, false


def load_readers(engine: str) -> dict[str, Any]:
    return {"latin": load_ocr(engine, LATIN), "zh": load_ocr(engine, "zh,en")}


def read(readers: dict[str, Any], sample: TextImage, image: Any) -> Any:
    return readers["zh" if sample.language == "zh" else "latin"].read(image)


def run_engine(engine: str, mixed: list[Any], controlled_set: list[Any], photos: list[Any]) -> dict[str, Any]:
    started = time.perf_counter()
    readers = load_readers(engine)
    load_seconds = time.perf_counter() - started
    totals = [0, 0, 0, 0]
    by_language: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    seconds: list[float] = []
    for sample, image in mixed:
        result = read(readers, sample, image)
        seconds.append(result.seconds)
        if result.note:
            log(f"{engine} {sample.name}: {result.note}")
        counts = score(sample, result.text)
        totals = [a + b for a, b in zip(totals, counts, strict=True)]
        by_language[sample.language] = [
            a + b for a, b in zip(by_language[sample.language], counts, strict=True)
        ]
    groups: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0, 0, 0]))
    for condition, value, sample, image in controlled_set:
        cell = groups[condition][value]
        for i, count in enumerate(score(sample, read(readers, sample, image).text)):
            cell[i] += count
    photo_seconds, photo_words = [], 0
    for _name, image in photos:
        result = readers["latin"].read(image)
        photo_seconds.append(result.seconds)
        photo_words += len(result.words)
    for reader in readers.values():
        reader.close()

    def share(part: int, whole: int) -> float:
        return round(part / max(1, whole), 3)

    return {
        "engine": engine,
        "load_s": round(load_seconds, 2),
        "words": totals[0],
        "exact": share(totals[1], totals[0]),
        "folded": share(totals[2], totals[0]),
        "false_words_per_image": round(totals[3] / max(1, len(mixed)), 2),
        "images_per_s": round(len(mixed) / sum(seconds), 2),
        "median_s": round(statistics.median(seconds), 3),
        "photo_median_s": round(statistics.median(photo_seconds), 3),
        "photo_max_s": round(max(photo_seconds), 3),
        "photo_false_words": photo_words,
        "photos": len(photos),
        "mixed_by_language": {
            language: [c[0], share(c[1], c[0]), share(c[2], c[0])]
            for language, c in sorted(by_language.items())
        },
        "by_condition": {
            key: {value: [c[0], share(c[1], c[0]), share(c[2], c[0])] for value, c in cells.items()}
            for key, cells in groups.items()
        },
    }


def markdown(
    results: list[dict[str, Any]], facts: dict[str, Any], sizes: tuple[int, int], load: tuple[str, str]
) -> str:
    lines = [
        f"CPU: {facts['cpu']} ({facts['cores']} cores), avx512_bf16: {facts['avx512_bf16']}",
        f"load before: {load[0]}",
        f"load after: {load[1]}",
        f"{sizes[0]} mixed-condition text images, {sizes[1]} controlled ones, "
        f"{results[0]['photos']} text-less photos",
        "",
        "| engine | words found (exact) | folded | false words/img | images/s | median s/img "
        "| photo median s | photo max s | words on photos |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['engine']} | {r['exact']:.1%} | {r['folded']:.1%} | {r['false_words_per_image']} "
            f"| {r['images_per_s']} | {r['median_s']} | {r['photo_median_s']} | {r['photo_max_s']} "
            f"| {r['photo_false_words']} |"
        )
    lines += ["", "Mixed conditions by language, words found (exact / folded):", ""]
    lines += [
        "| language | " + " | ".join(r["engine"] for r in results) + " |",
        "|---|" + "---|" * len(results),
    ]
    for language in results[0]["mixed_by_language"]:
        cells = [
            "{1:.0%} / {2:.0%}".format(*r["mixed_by_language"].get(language, [0, 0.0, 0.0])) for r in results
        ]
        n = results[0]["mixed_by_language"][language][0]
        lines.append(f"| {language} ({n}) | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Words found (exact / folded), one condition varied from the base (English receipt, DejaVu Sans"
        " 32 px, upright, sharp, PNG, light); words in brackets:",
        "",
    ]
    header = "| condition | value | " + " | ".join(r["engine"] for r in results) + " |"
    lines += [header, "|---|---|" + "---|" * len(results)]
    for key in results[0]["by_condition"]:
        for value in results[0]["by_condition"][key]:
            cells = []
            for r in results:
                _n, exact, folded = r["by_condition"][key].get(value, [0, 0.0, 0.0])
                cells.append(f"{exact:.0%} / {folded:.0%}")
            n = results[0]["by_condition"][key][value][0]
            lines.append(f"| {key} | {value} ({n}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=160, help="text images (default 160)")
    parser.add_argument("--per-value", type=int, default=6, help="controlled images per condition value")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--engines", default="rapidocr,tesseract")
    parser.add_argument("--out", type=Path, default=DEFAULT_WORK_DIR / "ocr.json")
    parser.add_argument("--quick", action="store_true", help="40 random images, 2 per controlled value")
    args = parser.parse_args()
    if args.quick:
        args.count, args.per_value = min(args.count, 40), min(args.per_value, 2)
    facts = cpu_facts()
    before = uptime()
    log(f"rendering {args.count} text images (seed {args.seed})")
    corpus = list(generate(args.count, args.seed))
    controlled_set = list(controlled(args.per_value, args.seed + 1))
    photos = list(textless_photos())
    results = []
    for engine in args.engines.split(","):
        log(f"running {engine}")
        results.append(run_engine(engine.strip(), corpus, controlled_set, photos))
    after = uptime()
    report = markdown(results, facts, (len(corpus), len(controlled_set)), (before, after))
    print(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": facts, "load": [before, after], "results": results}, indent=1))
    args.out.with_suffix(".md").write_text(report + "\n")


if __name__ == "__main__":
    main()
