"""Build random-weight CLIP-family and re-ranker (BridgeTower, BLIP-2) checkpoints offline.

Tests, CI and the offline demo can never download a checkpoint, yet pixseek must exercise the real
loading path (``from_pretrained`` of the explicit model and processor classes). These builders create
tiny models from small configs, train their tokenizers deterministically on a built-in multilingual
caption corpus, and save model and processor into one directory, exactly as a hub checkpoint is laid
out. The weights are random, so embeddings carry no meaning; shapes, dtypes and plumbing are real.

CLI: ``python -m pixseek.testing.tiny_models {clip,dual,altclip,bridgetower,blip2} OUT_DIR [--full-size]``.
"""

from __future__ import annotations

import argparse
import json
import math
import string
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import (
    AltCLIPConfig,
    AltCLIPModel,
    AltCLIPProcessor,
    BertConfig,
    BertTokenizer,
    Blip2Config,
    Blip2ForImageTextRetrieval,
    Blip2Processor,
    BlipImageProcessorPil,
    BridgeTowerConfig,
    BridgeTowerForImageAndTextRetrieval,
    BridgeTowerImageProcessorPil,
    BridgeTowerProcessor,
    CLIPConfig,
    CLIPImageProcessorPil,
    CLIPModel,
    CLIPProcessor,
    CLIPTokenizer,
    PreTrainedConfig,
    PreTrainedModel,
    ProcessorMixin,
    RobertaTokenizer,
    TokenizersBackend,
    VisionTextDualEncoderConfig,
    VisionTextDualEncoderModel,
    VisionTextDualEncoderProcessor,
    ViTConfig,
    ViTImageProcessorPil,
    XLMRobertaTokenizer,
)

# Short captions in the languages the multilingual models are tested with; every word the tests and
# the demo query with should appear here so tokenization yields real ids rather than unk.
CORPUS: tuple[str, ...] = (
    "a red circle", "a blue square", "a green triangle", "a yellow star", "a black cat",
    "a white dog", "a cat on the beach", "a dog in the mountains", "a red car on the road",
    "a photo of a mountain lake", "sunset over the beach", "a small orange cat sleeping",
    "ein roter Kreis", "ein blaues Quadrat", "ein grünes Dreieck", "eine schwarze Katze",
    "ein weißer Hund", "ein Hund am Strand", "ein rotes Auto", "ein Berg im Schnee",
    "un cercle rouge", "un carré bleu", "un triangle vert", "un chat noir", "un chien blanc",
    "un chat sur la plage", "une voiture rouge", "une montagne enneigée",
    "un círculo rojo", "un cuadrado azul", "un triángulo verde", "un gato negro", "un perro blanco",
    "un perro en la playa", "un coche rojo", "una montaña alta",
    "一只猫", "一只狗", "红色的圆", "蓝色的正方形", "海滩上的狗", "山上的雪", "一辆红色的汽车",
    "赤い丸", "青い四角", "黒い猫", "白い犬", "海辺の犬", "山の写真", "赤い車",
)  # fmt: skip

# Latin letters and digits are always in the WordPiece/Unigram alphabets, so unseen words still get ids.
EXTRA_CHARS = string.ascii_letters + string.digits
EOW = "</w>"  # CLIP's end-of-word suffix
SEED = 0
IMAGE_SIZE = 32
PROJECTION_DIM = 16
# Field names shared by CLIPVisionConfig, ViTConfig and AltCLIPVisionConfig ...
TINY_VISION: dict[str, Any] = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "image_size": IMAGE_SIZE,
    "patch_size": 8,
}
# ... and by CLIPTextConfig, BertConfig and AltCLIPTextConfig.
TINY_TEXT: dict[str, Any] = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
}


def _words(template: TokenizersBackend) -> list[str]:
    """CORPUS split into words by ``template``'s own normalizer and pre-tokenizer."""
    backend = template.backend_tokenizer
    normalize = backend.normalizer.normalize_str if backend.normalizer else str
    return [word for text in CORPUS for word, _ in backend.pre_tokenizer.pre_tokenize_str(normalize(text))]


def _train(template: TokenizersBackend, model: models.Model, trainer: trainers.Trainer) -> dict[str, Any]:
    """Train ``model`` on CORPUS with ``template``'s normalizer and pre-tokenizer.

    Reusing the target tokenizer class's own pipeline guarantees the learned pieces are the ones it
    will look up at encode time. Returns the trained model's JSON (vocab, merges, ...).
    """
    backend = template.backend_tokenizer
    tokenizer = Tokenizer(model)
    if backend.normalizer is not None:
        tokenizer.normalizer = backend.normalizer
    tokenizer.pre_tokenizer = backend.pre_tokenizer
    tokenizer.train_from_iterator(CORPUS, trainer)
    return json.loads(tokenizer.to_str())["model"]


def _clip_tokenizer() -> CLIPTokenizer:
    """Byte-level BPE with CLIP's ``</w>`` suffix; every byte is in the vocab, so nothing maps to unk.

    The BPE and WordPiece trainers number a word-final (``x</w>``) or word-internal (``##x``) symbol
    when they first meet it while iterating a hash map, i.e. in a different order in every process,
    and break merge ties by those numbers. Listing every such symbol as a special token numbers them
    up front, which makes training reproducible.
    """
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    trainer = trainers.BpeTrainer(
        vocab_size=1000,
        special_tokens=["<|startoftext|>", "<|endoftext|>", *(char + EOW for char in alphabet)],
        initial_alphabet=alphabet,
        end_of_word_suffix=EOW,
        show_progress=False,
    )
    trained = _train(CLIPTokenizer(), models.BPE(unk_token="<|endoftext|>", end_of_word_suffix=EOW), trainer)
    merges: list[Any] = [tuple(pair) for pair in trained["merges"]]  # pairs, whatever the stub says
    return CLIPTokenizer(vocab=trained["vocab"], merges=merges, model_max_length=77)


def _roberta_tokenizer() -> RobertaTokenizer:
    """Byte-level BPE in RoBERTa's layout: ``<s> <pad> </s> <unk>`` first (pad id 1), ``<mask>`` last.

    Every byte is in the initial alphabet, so no text maps to unk; without an end-of-word suffix the
    alphabet is numbered in sorted order, so training is reproducible without CLIP's pre-listing.
    """
    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    trainer = trainers.BpeTrainer(
        vocab_size=1000,
        special_tokens=specials,
        initial_alphabet=sorted(pre_tokenizers.ByteLevel.alphabet()),
        show_progress=False,
    )
    trained = _train(RobertaTokenizer(), models.BPE(unk_token="<unk>"), trainer)
    vocab = dict(trained["vocab"])
    vocab["<mask>"] = len(vocab)
    merges: list[Any] = [tuple(pair) for pair in trained["merges"]]
    return RobertaTokenizer(vocab=vocab, merges=merges, model_max_length=512)


def _bert_tokenizer() -> BertTokenizer:
    """WordPiece with BERT's special tokens first ([PAD] = 0); ``##x`` pre-listed as for CLIP."""
    template = BertTokenizer()
    chars = sorted(set("".join(_words(template))) | set(EXTRA_CHARS))
    trainer = trainers.WordPieceTrainer(
        vocab_size=1000,
        special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *("##" + char for char in chars)],
        initial_alphabet=chars,
        show_progress=False,
    )
    trained = _train(template, models.WordPiece(unk_token="[UNK]"), trainer)
    return BertTokenizer(vocab=trained["vocab"], model_max_length=512)


def _xlm_roberta_tokenizer() -> XLMRobertaTokenizer:
    """Unigram in XLM-R's layout: ``<s> <pad> </s> <unk>`` first (unk id 3), ``<mask>`` last.

    The trainer's piece set is stable but its EM scores (hence their order) drift slightly between
    processes, so pieces are rescored by their add-one-smoothed corpus frequency.
    """
    template = XLMRobertaTokenizer()
    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    trainer = trainers.UnigramTrainer(
        vocab_size=500,
        special_tokens=specials,
        unk_token="<unk>",
        initial_alphabet=list(EXTRA_CHARS),
        show_progress=False,
    )
    trained = _train(template, models.Unigram(), trainer)
    words = _words(template)
    counts = {piece: 1 + sum(word.count(piece) for word in words) for piece, _ in trained["vocab"]}
    total = sum(counts.values())
    scored = sorted(
        ((piece, math.log(count / total)) for piece, count in counts.items() if piece not in specials),
        key=lambda item: (-item[1], item[0]),
    )
    vocab = [(token, 0.0) for token in specials] + scored + [("<mask>", 0.0)]
    return XLMRobertaTokenizer(vocab=vocab, model_max_length=512)


def _clip_image_processor(size: int) -> CLIPImageProcessorPil:
    """CLIP preprocessing (resize shortest edge, center crop) at ``size``.

    The PIL backend is named explicitly because torchvision may be absent; the saved config still
    says ``CLIPImageProcessor``, so loading picks whichever backend the environment has.
    """
    return CLIPImageProcessorPil(size={"shortest_edge": size}, crop_size={"height": size, "width": size})


def _special_ids(tokenizer: TokenizersBackend) -> dict[str, int]:
    """Text-config token ids taken from the tokenizer, so the model pools and pads where it encodes."""
    return {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }


def _save(
    model_cls: type[PreTrainedModel],
    config: PreTrainedConfig,
    processor: ProcessorMixin,
    out_dir: Path,
    init: Callable[[PreTrainedModel], None] | None = None,
) -> Path:
    """Instantiate ``model_cls`` with seeded random weights; save it and ``processor`` into ``out_dir``.

    ``init`` adjusts weights that the model's own initialisation leaves degenerate (zeros, ~0 std).
    """
    torch.manual_seed(SEED)
    model = model_cls(config)
    if init is not None:
        with torch.no_grad():
            init(model)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir


def build_clip(out_dir: Path, *, full_size: bool = False) -> Path:
    """Build a ``CLIPModel`` + ``CLIPProcessor`` checkpoint in ``out_dir`` and return it.

    Tiny by default (projection 16, 32px images). ``full_size`` keeps the default ``CLIPConfig``
    (ViT-B/32, 224px, projection 512, ~151M parameters) for speed benchmarks: same compute as the
    real checkpoint, random weights.
    """
    tokenizer = _clip_tokenizer()
    text = {**_special_ids(tokenizer), "max_position_embeddings": tokenizer.model_max_length}
    if full_size:
        config, size = CLIPConfig(text_config=text), 224
    else:
        text.update(TINY_TEXT, vocab_size=len(tokenizer))
        config = CLIPConfig(text_config=text, vision_config=TINY_VISION, projection_dim=PROJECTION_DIM)
        size = IMAGE_SIZE
    processor = CLIPProcessor(image_processor=_clip_image_processor(size), tokenizer=tokenizer)
    return _save(CLIPModel, config, processor, out_dir)


def build_dual_encoder(out_dir: Path) -> Path:
    """Build a tiny ``VisionTextDualEncoderModel`` (ViT + BERT, projection 16, 32px) in ``out_dir``."""
    tokenizer = _bert_tokenizer()
    config = VisionTextDualEncoderConfig.from_vision_text_configs(
        ViTConfig(**TINY_VISION),
        BertConfig(**TINY_TEXT, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id),
        projection_dim=PROJECTION_DIM,
    )
    image_processor = ViTImageProcessorPil(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    processor = VisionTextDualEncoderProcessor(image_processor=image_processor, tokenizer=tokenizer)
    return _save(VisionTextDualEncoderModel, config, processor, out_dir)


def build_altclip(out_dir: Path) -> Path:
    """Build a tiny ``AltCLIPModel`` (XLM-R text tower + CLIP vision, projection 16, 32px) in ``out_dir``."""
    tokenizer = _xlm_roberta_tokenizer()
    text = {
        **TINY_TEXT,
        **_special_ids(tokenizer),
        "vocab_size": len(tokenizer),
        "max_position_embeddings": tokenizer.model_max_length + 2,  # RoBERTa positions start at pad + 1
        "project_dim": TINY_TEXT["hidden_size"],
    }
    config = AltCLIPConfig(text_config=text, vision_config=TINY_VISION, projection_dim=PROJECTION_DIM)
    processor = AltCLIPProcessor(image_processor=_clip_image_processor(IMAGE_SIZE), tokenizer=tokenizer)
    return _save(AltCLIPModel, config, processor, out_dir)


# Re-ranker checkpoints: vision hidden 64 because BridgeTower's vision tower uses hidden // 64 heads.
RERANK_IMAGE_SIZE = 32
BLIP2_QUERY_TOKENS = 4
# With the default init, tiny re-rankers give every pair nearly the same probability (BLIP-2 within
# 0.001), which would make ordering and parity checks vacuous. These scales spread the match
# probabilities of different images over ~0.2-0.3 and make them depend on the text.
TINY_BRIDGETOWER_INIT_FACTOR = 2.0
TINY_BLIP2_INIT_RANGE = 0.2


def build_bridgetower(out_dir: Path, *, full_size: bool = False) -> Path:
    """Build a ``BridgeTowerForImageAndTextRetrieval`` + ``BridgeTowerProcessor`` checkpoint.

    Tiny by default: RoBERTa text tower (hidden 32, 2 layers), vision tower (hidden 64, 2 layers,
    32 px, patch 8), 2 cross-modal layers. BridgeTower requires a cross-modal hidden size equal to the
    text hidden size and at least as many vision as text layers. ``full_size`` keeps the default
    config (bridgetower-base: 288 px, 6 cross-modal layers, ~326M parameters) for benchmarks.
    """
    tokenizer = _roberta_tokenizer()
    text = {
        **_special_ids(tokenizer),
        "vocab_size": len(tokenizer),
        "max_position_embeddings": tokenizer.model_max_length + 2,  # RoBERTa positions start at pad + 1
    }
    if full_size:
        config, size = BridgeTowerConfig(text_config=text), 288
    else:
        size, factor = RERANK_IMAGE_SIZE, TINY_BRIDGETOWER_INIT_FACTOR
        text.update(TINY_TEXT, initializer_factor=factor)
        vision = {
            "hidden_size": 64,
            "num_hidden_layers": 2,
            "image_size": size,
            "patch_size": 8,
            "initializer_factor": factor,
        }
        config = BridgeTowerConfig(
            text_config=text,
            vision_config=vision,
            hidden_size=TINY_TEXT["hidden_size"],
            num_hidden_layers=2,
            num_attention_heads=TINY_TEXT["num_attention_heads"],
            initializer_factor=factor,
        )
    image_processor = BridgeTowerImageProcessorPil(
        size={"shortest_edge": size}, crop_size={"shortest_edge": size}, size_divisor=32
    )
    processor = BridgeTowerProcessor(image_processor=image_processor, tokenizer=tokenizer)
    return _save(BridgeTowerForImageAndTextRetrieval, config, processor, out_dir)


def _token_id(tokenizer: Any, token: str) -> int:
    token_id = tokenizer.convert_tokens_to_ids(token)
    assert isinstance(token_id, int), token_id
    return token_id


def _randomise_query_tokens(model: Any) -> None:
    """BLIP-2's init zeroes ``query_tokens``: all queries would then start alike. (Its other trap, the
    ViT drawn with std 1e-10, is avoided by the explicit vision ``initializer_range``.)"""
    model.query_tokens.normal_(std=model.config.initializer_range)


def build_blip2(out_dir: Path, *, full_size: bool = False) -> Path:
    """Build a ``Blip2ForImageTextRetrieval`` + ``Blip2Processor`` checkpoint (no language model).

    The Q-Former tokenizer is BERT WordPiece; ``Blip2Processor`` adds its ``<image>`` token and
    prepends ``num_query_tokens`` of them to texts given with images, which the model strips again
    (``image_token_index``), as in the current hub checkpoints. Tiny by default (ViT hidden 32,
    32 px, Q-Former hidden 32 with 4 query tokens); ``full_size`` keeps ViT-g and the BERT-base
    Q-Former with 32 queries (blip2-itm-vit-g: 224 px, ~1.17B parameters) for benchmarks.
    """
    num_query_tokens = 32 if full_size else BLIP2_QUERY_TOKENS
    size = 224 if full_size else RERANK_IMAGE_SIZE
    tokenizer = _bert_tokenizer()
    image_processor = BlipImageProcessorPil(size={"height": size, "width": size})
    processor = Blip2Processor(image_processor, tokenizer, num_query_tokens=num_query_tokens)
    qformer = {
        "vocab_size": len(tokenizer),  # with <image>, which the processor has just added
        "pad_token_id": tokenizer.pad_token_id,
        "use_qformer_text_input": True,
    }
    init_range = 0.02 if full_size else TINY_BLIP2_INIT_RANGE
    vision: dict[str, Any] = {"image_size": size, "initializer_range": init_range}
    if not full_size:
        qformer.update(TINY_TEXT, initializer_range=init_range)
        vision.update(TINY_VISION, image_size=size)
    config = Blip2Config(
        vision_config=vision,
        qformer_config=qformer,
        initializer_range=init_range,
        num_query_tokens=num_query_tokens,
        image_text_hidden_size=256 if full_size else PROJECTION_DIM,
        image_token_index=_token_id(tokenizer, "<image>"),
    )
    return _save(Blip2ForImageTextRetrieval, config, processor, out_dir, init=_randomise_query_tokens)


BUILDERS = {
    "clip": build_clip,
    "dual": build_dual_encoder,
    "altclip": build_altclip,
    "bridgetower": build_bridgetower,
    "blip2": build_blip2,
}
FULL_SIZE = ("clip", "bridgetower", "blip2")


def main(argv: list[str] | None = None) -> None:
    """Build one checkpoint and print its directory."""
    parser = argparse.ArgumentParser(description="Build a random-weight checkpoint offline.")
    parser.add_argument("kind", choices=sorted(BUILDERS))
    parser.add_argument("out_dir", type=Path)
    parser.add_argument(
        "--full-size", action="store_true", help=f"{', '.join(FULL_SIZE)}: the real size, for benchmarks"
    )
    args = parser.parse_args(argv)
    if args.full_size and args.kind not in FULL_SIZE:
        parser.error(f"--full-size applies to {', '.join(FULL_SIZE)} only")
    kwargs = {"full_size": True} if args.full_size else {}
    print(BUILDERS[args.kind](args.out_dir, **kwargs))


if __name__ == "__main__":
    main()
