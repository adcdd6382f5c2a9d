"""pixseek eval: caption files, the evaluation wiring (with encoders whose answers are known), and
the command on a tiny checkpoint."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from pixseek.cli import app
from pixseek.errors import PixseekError
from pixseek.evaluation.dataset import load_caption_set
from pixseek.evaluation.runner import evaluate, rerank_ranks
from pixseek.search.rerank.scorer import ImageRef

COLOURS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255)}
GERMAN = {"red": "rot", "green": "grün", "blue": "blau"}


class ColourEncoder:
    """Images embed as their mean colour, captions as the colour they name: retrieval is perfect."""

    image_min_side = 8

    def preprocess_image(self, image: Image.Image) -> np.ndarray:
        return np.asarray(image, dtype=np.float32).mean(axis=(0, 1))

    def embed_pixels(self, pixels: np.ndarray) -> np.ndarray:
        return pixels / np.linalg.norm(pixels, axis=1, keepdims=True)

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        names = {**{k: k for k in COLOURS}, **{v: k for k, v in GERMAN.items()}}
        vectors = np.array([COLOURS[names[text.split()[-1]]] for text in texts], dtype=np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@pytest.fixture
def colour_set(tmp_path: Path) -> tuple[Path, Path]:
    images = tmp_path / "images"
    images.mkdir()
    rows = []
    for name, rgb in COLOURS.items():
        Image.new("RGB", (16, 16), rgb).save(images / f"{name}.png")
        rows.append({"image": f"{name}.png", "captions": [f"a {name}", f"all {name}"], "language": "en"})
        rows.append({"image": f"{name}.png", "caption": f"ganz {GERMAN[name]}", "language": "de"})
    captions = tmp_path / "captions.jsonl"
    captions.write_text("\n".join(json.dumps(row, ensure_ascii=False) for row in rows))
    return captions, images


def test_loads_jsonl_and_csv(colour_set, tmp_path: Path) -> None:
    captions, images = colour_set
    data = load_caption_set(captions, images)
    assert len(data.images) == 3 and len(data.captions) == 9
    assert data.caption_image.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert data.languages.count("de") == 3
    csv_file = tmp_path / "captions.csv"
    csv_file.write_text("image,caption\nred.png,a red\nblue.png,a blue\n")
    assert load_caption_set(csv_file, images).captions == ["a red", "a blue"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"image": "missing.png", "caption": "x"}', "no image"),
        ('{"image": "red.png", "caption": ""}', "non-empty 'caption'"),
        ("not json", "not JSON"),
        ("", "holds no captions"),
    ],
)
def test_bad_caption_files_are_refused(colour_set, tmp_path: Path, content: str, message: str) -> None:
    _, images = colour_set
    bad = tmp_path / "bad.jsonl"
    bad.write_text(content)
    with pytest.raises(PixseekError, match=message):
        load_caption_set(bad, images)


def test_evaluation_of_a_perfect_encoder(colour_set) -> None:
    report = evaluate(ColourEncoder(), load_caption_set(*colour_set), batch_size=2)
    assert report.text_to_image["first"].recall == {1: 1.0, 5: 1.0, 10: 1.0}
    assert report.text_to_image["first"].mean_rank == 1.0 and report.image_to_text.mean_rank == 1.0
    assert set(report.per_language) == {"de", "en"}
    assert report.per_language["de"]["text_to_image"].queries == 3
    assert report.per_language["de"]["image_to_text"].recall[1] == 1.0


def test_reranking_reorders_the_candidates() -> None:
    similarity = np.array([[0.9, 0.8, 0.1], [0.1, 0.2, 0.9]])  # caption 0's image 1 ranks second
    owners = np.array([1, 0])  # caption 1's image 0 ranks third: outside rerank_k=2

    class PrefersImageOne:
        def score(self, text, refs):
            return SimpleNamespace(probabilities=[0.9 if ref.path == "1" else 0.2 for ref in refs])

    refs = [ImageRef(str(i)) for i in range(3)]
    ranks = rerank_ranks(["a", "b"], owners, similarity, refs, [PrefersImageOne()], rerank_k=2)
    assert ranks.tolist() == [1, 3]


def test_eval_command_on_a_tiny_checkpoint(colour_set, clip_dir: Path) -> None:
    captions, images = colour_set
    result = CliRunner().invoke(
        app, ["eval", str(captions), "--images", str(images), "--model", str(clip_dir), "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    first = report["text_to_image"]["first"]
    assert first["queries"] == 9 and 1.0 <= first["mean_rank"] <= 3.0
    assert all(0.0 <= value <= 1.0 for value in first["recall"].values())
    assert set(report["per_language"]) == {"de", "en"} and report["ms_per_query"]["first"] > 0
    table = CliRunner(env={"COLUMNS": "200"}).invoke(
        app, ["eval", str(captions), "--images", str(images), "--model", str(clip_dir)]
    )
    assert table.exit_code == 0 and "image->text [de]" in table.output
    missing = CliRunner().invoke(
        app, ["eval", "nope.jsonl", "--images", str(images), "--model", str(clip_dir)]
    )
    assert missing.exit_code == 2 and "no captions file" in missing.output
