"""Quality of several collections' models on one caption set, so that a user switching models
(``pixseek collections create`` then ``activate``) decides with numbers from one command."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from pixseek.config import Settings
from pixseek.errors import PixseekError

if TYPE_CHECKING:
    from pixseek.evaluation.dataset import CaptionSet
    from pixseek.evaluation.runner import EvalReport


def compare_collections(settings: Settings, names: Sequence[str], data: CaptionSet) -> dict[str, EvalReport]:
    """Each named collection's own model evaluated on ``data``, keyed "NAME (MODEL)", in order."""
    from pixseek.evaluation.runner import evaluate
    from pixseek.library import Library

    if len(names) < 2 or len(set(names)) != len(names):
        raise PixseekError("--compare takes two or more different collection names, comma-separated")
    reports = {}
    for name in names:
        with Library(settings.model_copy(update={"collection": name, "model": None})) as library:
            encoder = library.encoder_for(library.collection())
            reports[f"{name} ({encoder.model_id})"] = evaluate(
                encoder, data, batch_size=library.settings.batch_size
            )
    return reports
