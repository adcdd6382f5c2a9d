"""The re-rankers pixseek offers and their public checkpoints, without importing any model code
(the CLI's help text and the settings need the names, not torch)."""

from __future__ import annotations

from pixseek.vocabulary import RerankChoice

RERANKER_PRESETS: dict[str, str] = {
    "bridgetower": "BridgeTower/bridgetower-base-itm-mlm",
    "blip2": "Salesforce/blip2-itm-vit-g",
    "blip2-coco": "Salesforce/blip2-itm-vit-g-coco",
}
# The re-rankers one can load, in the order results list their scores; RerankChoice.BOTH is both.
RERANKER_KINDS = (RerankChoice.BRIDGETOWER, RerankChoice.BLIP2)
