"""Load a re-ranker by preset name, hub id or local directory, with its explicit classes.

``AutoModel`` would build the wrong thing for both families (a BLIP-2 folder gives ``Blip2Model``
with a random OPT language model; a BridgeTower folder gives ``BridgeTowerModel`` without the ITM
head), so each ``model_type`` maps to its retrieval class and processor.
"""

from __future__ import annotations

from dataclasses import dataclass

from pixseek.embedding.checkpoint import ModelLoadError, load_config, load_for_inference, resolve_source
from pixseek.search.rerank.base import Reranker
from pixseek.search.rerank.blip2 import Blip2Reranker
from pixseek.search.rerank.bridgetower import BridgeTowerReranker
from pixseek.vocabulary import RERANKER_KINDS, RERANKER_PRESETS


@dataclass(frozen=True)
class _Family:
    model_class: str
    processor_class: str
    reranker: type[Reranker]


_FAMILIES: dict[str, _Family] = {
    "bridgetower": _Family(
        "BridgeTowerForImageAndTextRetrieval", "BridgeTowerProcessor", BridgeTowerReranker
    ),
    "blip-2": _Family("Blip2ForImageTextRetrieval", "Blip2Processor", Blip2Reranker),
}


def load_reranker(kind: str, name: str, *, device: str = "auto", precision: str = "auto") -> Reranker:
    """Load checkpoint ``name`` (preset, hub id or local dir) as a re-ranker of ``kind``.

    ``kind`` is the slot it fills (``bridgetower`` or ``blip2``): a checkpoint of the other family
    there is refused, so ``--blip2-model`` cannot silently load a BridgeTower.
    """
    if kind not in RERANKER_KINDS:
        raise ValueError(f"unknown re-ranker {kind!r}; choose one of {', '.join(RERANKER_KINDS)}")
    source = resolve_source(name, RERANKER_PRESETS)
    hint = f"pass --{kind}-model <local dir> holding a saved {kind} ITM checkpoint"
    config = load_config(name, source, hint)
    family = _FAMILIES.get(config.model_type)
    if family is None or family.reranker.name != kind:
        raise ModelLoadError(f"model {name!r} is a {config.model_type!r}, not a {kind} ITM model; {hint}")
    if config.model_type == "blip-2" and not config.qformer_config.use_qformer_text_input:
        raise ModelLoadError(
            f"model {name!r} is a BLIP-2 without a text Q-Former (use_qformer_text_input is off), "
            f"so it has no ITM head; use an ITM checkpoint such as {RERANKER_PRESETS['blip2']}"
        )
    loaded = load_for_inference(
        name, source, family.model_class, family.processor_class, hint, device, precision
    )
    return family.reranker(loaded.model, loaded.processor, source, loaded.device, loaded.precision)
