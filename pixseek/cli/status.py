"""``pixseek status``: collections, their model, counts, failures, index, roots and exclusions."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import TYPE_CHECKING

import typer

from pixseek.cli.common import global_options, human_bytes, out, plural, settings, user_errors
from pixseek.cli.indexing import index_line
from pixseek.cli.options import JsonOption

if TYPE_CHECKING:
    from pixseek.library import CollectionSummary

app = typer.Typer()


@app.command()
@global_options
def status(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Collections, their model, counts, failures, vector index (type, tuned parameters, measured
    recall, size), the folders they were indexed from and what `pixseek rm` keeps out."""
    from pixseek.library import Library

    with user_errors(), Library(settings(ctx)) as library:
        database = library.settings.resolved_database_url
        summaries = library.status()
    if as_json:
        out.print_json(json.dumps({"database": database, "collections": [_as_json(s) for s in summaries]}))
        return
    out.print(f"database: {database}", soft_wrap=True)
    if not summaries:
        out.print("no collections yet: run `pixseek index PATH`", soft_wrap=True)
    for summary in summaries:
        _print_summary(summary)


def _print_summary(summary: CollectionSummary) -> None:
    index = summary.index
    out.print(
        f"{summary.name}: {plural(summary.indexed, 'image')}, {summary.failed} failed; model {summary.model} "
        f"({summary.dim}-d, {summary.precision}, fingerprint {summary.fingerprint})",
        soft_wrap=True,
    )
    out.print(
        f"  index: {index_line(index)}, {human_bytes(index.bytes)} in {summary.index_dir}", soft_wrap=True
    )
    if summary.ocr is not None:
        languages = ",".join(summary.ocr.languages)
        out.print(
            f"  OCR: {summary.ocr.engine}, languages {languages} (index --no-ocr to stop)", soft_wrap=True
        )
    for root in summary.roots:
        out.print(f"  indexed from: {root}", soft_wrap=True)
    for path in summary.excluded:
        out.print(f"  kept out (pixseek rm --undo to let back in): {path}", soft_wrap=True)
    for path, reason in summary.failures:
        out.print(f"  failed: {path}: {reason}", soft_wrap=True)


def _as_json(summary: CollectionSummary) -> dict:
    return {
        "collection": summary.name,
        "model": summary.model,
        "fingerprint": summary.fingerprint,
        "dim": summary.dim,
        "precision": summary.precision,
        "indexed": summary.indexed,
        "failed": summary.failed,
        "last_indexed": summary.last_indexed.isoformat() if summary.last_indexed else None,
        "index_dir": summary.index_dir,
        "index_bytes": summary.index.bytes,
        "index_type": summary.index.type,
        "index_factory": summary.index.factory,
        "index_params": summary.index.params,
        "index_recall": summary.index.measured_recall,
        "roots": summary.roots,
        "excluded": summary.excluded,
        "failures": [{"path": path, "reason": reason} for path, reason in summary.failures],
        "ocr": asdict(summary.ocr) if summary.ocr is not None else None,
    }
