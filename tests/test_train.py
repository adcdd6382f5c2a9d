"""pixseek train: that training works (held-out recall), and the machinery around it (resume, locked
towers, gradient accumulation, checkpoints that index, one-line errors).

The recall test trains a small random-init ViT against the real pretrained MiniLM text tower on the
generated shapes set; the others use the tiny random-weight towers so that they take seconds.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoImageProcessor, AutoTokenizer, VisionTextDualEncoderModel
from typer.testing import CliRunner

from pixseek.cli import app
from pixseek.embedding import load_encoder
from pixseek.errors import PixseekError
from pixseek.evaluation.dataset import load_caption_set
from pixseek.testing import shapes
from pixseek.testing.towers import build_vit_tower, minilm_dir
from pixseek.training.data import BatchPlan, ImageLoader, collate, scan
from pixseek.training.loop import TrainingInterrupted, train
from pixseek.training.loss import clip_loss
from pixseek.training.options import TrainOptions
from pixseek.training.schedule import warmup_cosine
from pixseek.training.step import contrastive_backward

runner = CliRunner(env={"COLUMNS": "300"})


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny matmuls gain nothing from a second thread, and on a busy 2-core machine OpenMP's
    spinning threads make training several times slower; restored for the rest of the suite."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def shapes_small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """48 images, English + German captions: enough for a few batches of 8."""
    root = tmp_path_factory.mktemp("shapes_small")
    return shapes.generate(root, 48, seed=5, size=32, languages=("en", "de")), root


@pytest.fixture(scope="module")
def text_tower(tmp_path_factory: pytest.TempPathFactory, dual_dir: Path) -> Path:
    """The tiny BERT tower (and its offline-trained tokenizer) of the tiny dual encoder, alone."""
    out = tmp_path_factory.mktemp("text_tower")
    VisionTextDualEncoderModel.from_pretrained(dual_dir).text_model.save_pretrained(out)
    AutoTokenizer.from_pretrained(dual_dir).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def vit_tower(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_vit_tower(tmp_path_factory.mktemp("vit"), image_size=32)


def _options(output: Path, **changes) -> TrainOptions:
    base = {"device": "cpu", "precision": "fp32", "batch_size": 8, "lr": 1e-3, "warmup": 2}
    return TrainOptions(output=output, **{**base, **changes})


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "model.safetensors")


@pytest.mark.slow
def test_training_raises_heldout_recall(tmp_path: Path, vit_tower: Path) -> None:
    train_file = shapes.generate(tmp_path / "train", 240, seed=1, languages=("en", "de"))
    held_file = shapes.generate(tmp_path / "held", 40, seed=2, languages=("en", "de"), distinct=True)
    data = load_caption_set(train_file, tmp_path / "train")
    held = load_caption_set(held_file, tmp_path / "held")
    assert not {p.read_bytes() for p in held.images} & {p.read_bytes() for p in data.images}
    options = _options(
        tmp_path / "out",
        vision=str(vit_tower),
        text=str(minilm_dir()),
        projection_dim=64,
        steps=150,
        batch_size=32,
        warmup=15,
        lock_text=True,
        checkpoint_every=1000,
    )
    report = train(options, data, eval_data=held)
    before, after = report.evaluations[0], report.evaluations[-1]
    chance = 5 / len(held.images)  # recall@5 of a random ranking
    print(
        f"\nheld-out text->image R@5: chance {chance:.3f}, before {before.text_to_image.recall[5]:.3f}, "
        f"after {after.text_to_image.recall[5]:.3f} (R@1 {after.text_to_image.recall[1]:.3f}) "
        f"in {report.steps} steps, {report.seconds:.1f}s"
    )
    assert (before.step, after.step) == (0, 150)
    assert before.text_to_image.recall[5] < chance + 0.15  # untrained: random projections
    assert after.text_to_image.recall[5] >= 0.7  # ~0.95 measured; chance is 0.125
    assert after.text_to_image.recall[5] >= before.text_to_image.recall[5] + 0.5
    assert after.image_to_text.recall[5] >= 0.5
    for language in ("en", "de"):  # both languages learned, not just one
        assert after.per_language[language]["text_to_image"].recall[5] >= 0.6
    assert report.final_loss < report.first_loss - 1.0

    # The saved folder is a checkpoint pixseek loads as it is, and it embeds as it was evaluated.
    encoder = load_encoder(str(tmp_path / "out"), device="cpu", precision="fp32")
    texts = encoder.embed_texts(held.captions[:2])
    assert texts.shape == (2, 64)


def test_resume_after_interruption_ends_where_an_uninterrupted_run_does(
    tmp_path: Path, dual_dir: Path, shapes_small: tuple[Path, Path]
) -> None:
    data = load_caption_set(*shapes_small)
    common = {"from_model": str(dual_dir), "steps": 12, "checkpoint_every": 4}
    straight = train(_options(tmp_path / "straight", **common), data)

    def interrupt_at_7(step: int, total: int, loss: float, lr: float) -> None:
        if step == 7:
            raise KeyboardInterrupt

    # This run decodes every batch again (no cache, two prefetching decode threads): same batches.
    uncached = {**common, "cache_mb": 0, "workers": 2}
    with pytest.raises(TrainingInterrupted) as stopped:
        train(_options(tmp_path / "resumed", **uncached), data, on_step=interrupt_at_7)
    assert stopped.value.step == 7 and stopped.value.checkpoint.name == "checkpoint-7"
    assert not (tmp_path / "resumed" / "model.safetensors").exists()
    resumed = train(_options(tmp_path / "resumed", **uncached, resume=True), data)
    assert (resumed.start_step, resumed.steps) == (7, 12)
    assert resumed.final_loss == pytest.approx(straight.final_loss, abs=1e-6)
    expected, got = _weights(tmp_path / "straight"), _weights(tmp_path / "resumed")
    assert expected.keys() == got.keys()
    assert all(torch.equal(expected[name], got[name]) for name in expected)  # bit-identical
    # ... and not because nothing trained: the weights moved from the start.
    start = _weights(dual_dir)
    assert not torch.equal(start["text_projection.weight"], got["text_projection.weight"])

    with pytest.raises(PixseekError, match="already finished"):
        train(_options(tmp_path / "resumed", **common, resume=True), data)
    with pytest.raises(TrainingInterrupted):
        train(_options(tmp_path / "other", **common), data, on_step=interrupt_at_7)
    with pytest.raises(PixseekError, match=r"options differ.*batch_size 8 -> 4"):
        train(_options(tmp_path / "other", **common, batch_size=4, resume=True), data)


def test_lock_image_keeps_the_vision_tower_bit_identical(
    tmp_path: Path, dual_dir: Path, shapes_small: tuple[Path, Path]
) -> None:
    data = load_caption_set(*shapes_small)
    train(_options(tmp_path / "out", from_model=str(dual_dir), steps=4, lock_image=True), data)
    start, end = _weights(dual_dir), _weights(tmp_path / "out")
    vision = [name for name in start if name.startswith("vision_model.")]
    assert vision and all(torch.equal(start[name], end[name]) for name in vision)
    moved = [name for name in start if not torch.equal(start[name], end[name])]
    assert "visual_projection.weight" in moved and any(name.startswith("text_model.") for name in moved)

    train(_options(tmp_path / "text", from_model=str(dual_dir), steps=4, lock_text=True), data)
    end = _weights(tmp_path / "text")
    text = [name for name in start if name.startswith("text_model.")]
    assert text and all(torch.equal(start[name], end[name]) for name in text)
    assert not torch.equal(start["vision_model.pooler.dense.weight"], end["vision_model.pooler.dense.weight"])


def _gradients(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return grads


def test_accumulated_micro_batches_give_the_gradient_of_one_big_batch(
    dual_dir: Path, shapes_small: tuple[Path, Path]
) -> None:
    model = VisionTextDualEncoderModel.from_pretrained(dual_dir).eval()  # eval: no dropout to differ
    tokenizer = AutoTokenizer.from_pretrained(dual_dir)
    loader = ImageLoader(AutoImageProcessor.from_pretrained(dual_dir), 32, 1 << 30)
    training = scan(load_caption_set(*shapes_small), loader)
    images, captions = BatchPlan(len(training.usable), 16, seed=0).pairs(0, training)
    batch = collate(training, images, captions, loader, tokenizer, 32)

    big_loss = contrastive_backward(model, batch.chunks(1))
    big = _gradients(model)
    accumulated_loss = contrastive_backward(model, batch.chunks(2))
    accumulated = _gradients(model)
    assert accumulated_loss == pytest.approx(big_loss, rel=1e-6)
    assert big.keys() == accumulated.keys() and "logit_scale" in big
    for name in big:
        torch.testing.assert_close(accumulated[name], big[name], rtol=1e-4, atol=1e-6, msg=name)

    # Naive accumulation (each micro-batch contrasted only with itself) is measurably different.
    for pixels, tokens in batch.chunks(2):
        image = model.get_image_features(pixel_values=pixels).pooler_output
        text = model.get_text_features(**tokens).pooler_output
        (clip_loss(image, text, model.logit_scale) / 2).backward()
    naive = _gradients(model)
    differences = [
        (naive[name] - big[name]).norm() / big[name].norm() for name in big if big[name].norm() > 0
    ]
    assert max(differences) > 0.05


def test_schedule_warms_up_linearly_then_decays_by_cosine() -> None:
    factors = [warmup_cosine(step, warmup=4, total=20, min_ratio=0.1) for step in range(21)]
    assert factors[:4] == [0.25, 0.5, 0.75, 1.0]
    assert factors[4] == pytest.approx(1.0) and factors[12] == pytest.approx(0.55)
    assert factors[20] == pytest.approx(0.1) and all(a >= b for a, b in itertools.pairwise(factors[3:]))


def test_shapes_captions_name_every_attribute_in_each_language(tmp_path: Path) -> None:
    captions = shapes.generate(tmp_path, 6, seed=0, distinct=True)
    rows = [json.loads(line) for line in captions.read_text().splitlines()]
    assert len(rows) == 18 and {row["language"] for row in rows} == {"en", "de", "fr"}
    scene = shapes.Scene("star", "green", "small", "bottom left")
    assert shapes.caption(scene, "en") == "a small green star at the bottom left"
    assert shapes.caption(scene, "de") == "ein kleiner grüner Stern unten links"
    assert shapes.caption(scene, "fr") == "une petite étoile verte en bas à gauche"
    with pytest.raises(ValueError):
        shapes.generate(tmp_path / "more", len(shapes.ALL_SCENES) + 1, distinct=True)
    partial = shapes.generate(tmp_path / "partial", 2, seed=0, languages=("en",), partial=True)
    texts = [json.loads(line)["caption"] for line in partial.read_text().splitlines()]
    assert len(texts) == 2 * 7  # the full caption and six that leave attributes out
    assert "a star" in shapes.partial_captions(scene) and "something green" in shapes.partial_captions(scene)


def _cli(*args: str, code: int = 0):
    result = runner.invoke(app, [str(arg) for arg in args])
    assert result.exit_code == code, result.output
    return result


def test_cli_trains_skips_a_corrupt_image_and_the_checkpoint_indexes_and_searches(
    tmp_path: Path, dual_dir: Path, shapes_small: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    captions, images = shapes_small
    folder = tmp_path / "images"
    folder.mkdir()
    rows = [json.loads(line) for line in captions.read_text().splitlines()]
    for row in rows:
        (folder / Path(row["image"]).name).write_bytes((images / row["image"]).read_bytes())
        row["image"] = Path(row["image"]).name
    broken = rows[0]["image"]
    (folder / broken).write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)  # a truncated PNG
    train_file = tmp_path / "captions.jsonl"
    train_file.write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / "model"
    args = ["train", train_file, "--images", folder, "-o", out, "--from", dual_dir, "--steps", 4]
    args += ["--batch-size", 8, "--precision", "fp32", "--device", "cpu", "--checkpoint-every", 2]
    held_out = tmp_path / "held_out.jsonl"
    held_out.write_text("".join(json.dumps(row) + "\n" for row in rows if row["image"] != broken))
    bad_held_out = _cli(*args, "-o", tmp_path / "unused", "--eval-captions", train_file, code=2)
    assert f"held-out image {folder / broken}: corrupt PNG" in bad_held_out.output
    args += ["--eval-captions", held_out]
    report = json.loads(_cli(*args, "--json").stdout)
    assert report["steps"] == 4 and report["images"] == 47
    assert [Path(path).name for path, _ in report["skipped"]] == [broken]
    assert [point["step"] for point in report["evaluations"]] == [0, 4]

    encoder = load_encoder(str(out), device="cpu", precision="fp32")
    assert encoder.fingerprint != load_encoder(str(dual_dir), device="cpu").fingerprint
    monkeypatch.setenv("PIXSEEK_DATA_DIR", str(tmp_path / "data"))
    indexed = json.loads(_cli("index", folder, "--model", out, "--precision", "fp32", "--json").stdout)
    assert indexed["embedded"] == 47 and len(indexed["failed"]) == 1
    hits = json.loads(_cli("search", "ein roter Kreis", "-k", 5, "--json").stdout)
    assert len(hits) == 5

    # The human summary names the skipped file and how to use the result.
    again = _cli(*args[:5], tmp_path / "model-2", *args[6:])
    assert f"skipped: {folder / broken}" in again.output and "pixseek index --model" in again.output


def test_cli_ctrl_c_saves_a_checkpoint_and_resume_finishes(
    tmp_path: Path, dual_dir: Path, shapes_small: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import pixseek.training.loop as loop

    captions, images = shapes_small
    args = ["train", captions, "--images", images, "-o", tmp_path / "out", "--from", dual_dir]
    args += ["--steps", 6, "--batch-size", 8, "--precision", "fp32", "--device", "cpu"]
    args += ["--eval-captions", captions]
    real = loop.contrastive_backward
    calls = []

    def interrupted_at_the_fourth_step(*a, **k):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(loop, "contrastive_backward", interrupted_at_the_fourth_step)
    stopped = _cli(*args, code=130)
    assert "interrupted at step 3" in stopped.output and "--resume" in stopped.output
    monkeypatch.setattr(loop, "contrastive_backward", real)
    report = json.loads(_cli(*args, "--resume", "--json").stdout)
    assert (report["start_step"], report["steps"]) == (3, 6)
    # the evaluation before training came back from the checkpoint; the final one is new
    assert [point["step"] for point in report["evaluations"]] == [0, 6]
    assert all(0 <= point["text_to_image"]["recall"]["5"] <= 1 for point in report["evaluations"])


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "give --vision and --text"),
        (["--vision", "VIT"], "give --vision and --text"),
        (["--vision", "VIT", "--text", "/no/such/tower"], "no model folder at /no/such/tower"),
        (["--from", "DUAL", "--vision", "VIT"], "either --from DIR or --vision and --text"),
        (["--from", "VIT"], "not a vision-text-dual-encoder"),
        (["--from", "DUAL", "--batch-size", "100"], "fewer than one batch of 100 pairs"),
        (["--from", "DUAL", "--precision", "fp16"], "fp16 training needs CUDA"),
        (["--from", "DUAL", "--precision", "fp8"], "'fp8' is not one of 'auto', 'fp32'"),
        (["--from", "DUAL", "--resume"], "no checkpoint to resume"),
        (["--from", "DUAL", "--batch-size", "0"], "Invalid value"),
    ],
)
def test_cli_bad_input_is_one_line(
    tmp_path: Path, dual_dir: Path, vit_tower: Path, shapes_small, extra: list[str], message: str
) -> None:
    captions, images = shapes_small
    extra = [{"VIT": str(vit_tower), "DUAL": str(dual_dir)}.get(arg, arg) for arg in extra]
    result = runner.invoke(
        app, ["train", str(captions), "--images", str(images), "-o", str(tmp_path), *extra]
    )
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    if message != "Invalid value":  # typer's own usage errors are a box; ours are one line
        assert len(result.output.strip().splitlines()) == 1, result.output


def test_cli_refuses_empty_data_and_a_used_output(tmp_path: Path, dual_dir: Path, shapes_small) -> None:
    captions, images = shapes_small
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    result = runner.invoke(
        app,
        ["train", str(empty), "--images", str(images), "-o", str(tmp_path / "o"), "--from", str(dual_dir)],
    )
    assert result.exit_code == 2 and "holds no captions" in result.output
    broken = tmp_path / "broken"
    broken.mkdir()
    rows = [json.loads(line) for line in captions.read_text().splitlines()][:6]
    for row in rows:
        (broken / Path(row["image"]).name).write_bytes(b"not an image")
        row["image"] = Path(row["image"]).name
    broken_file = tmp_path / "broken.jsonl"
    broken_file.write_text("".join(json.dumps(row) + "\n" for row in rows))
    args = [
        "train",
        str(broken_file),
        "--images",
        str(broken),
        "-o",
        str(tmp_path / "o"),
        "--from",
        str(dual_dir),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "0 usable training images (3 skipped)" in result.output
    used = tmp_path / "used"
    used.mkdir()
    (used / "config.json").write_text("{}")
    result = runner.invoke(
        app, ["train", str(captions), "--images", str(images), "-o", str(used), "--from", str(dual_dir)]
    )
    assert result.exit_code == 2 and "already holds a training run" in result.output
    assert np.all([line.startswith("error:") for line in result.output.strip().splitlines()])


def test_bf16_autocast_with_accumulation_trains(tmp_path: Path, dual_dir: Path, shapes_small) -> None:
    """The mixed-precision path (bf16 autocast, features and loss in fp32) on a CPU, which runs it
    even without native bf16; fp16 and its grad scaler need CUDA."""
    data = load_caption_set(*shapes_small)
    options = _options(tmp_path / "out", from_model=str(dual_dir), steps=3, precision="bf16", accumulate=2)
    report = train(options, data)
    assert report.precision == "bf16" and report.batch_size == 16 and np.isfinite(report.final_loss)
    assert not torch.equal(
        _weights(dual_dir)["text_projection.weight"], _weights(tmp_path / "out")["text_projection.weight"]
    )


def test_train_help_explains_every_option() -> None:
    import typer.main

    command = typer.main.get_command(app).commands["train"]
    undocumented = [param.name for param in command.params if not getattr(param, "help", None)]
    assert not undocumented
    text = _cli("train", "--help").output
    for option in ("--lock-image", "--accumulate", "--resume", "--eval-captions", "--from", "--precision"):
        assert option in text
