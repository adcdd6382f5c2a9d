"""``pixseek duplicates``: exact copies and near-duplicates of the collection, grouped, with a keeper."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from pixseek.cli.common import (
    err,
    global_options,
    human_bytes,
    out,
    plural,
    progress_bar,
    settings,
    user_errors,
)
from pixseek.cli.options import JsonOption, QuietOption
from pixseek.config import DUPLICATE_MAX_DISTANCE, DUPLICATE_THRESHOLD

if TYPE_CHECKING:
    from pixseek.library import DuplicateGroup, DuplicateReport, IndexedImage

app = typer.Typer()


@app.command()
@global_options
def duplicates(
    ctx: typer.Context,
    threshold: Annotated[
        float | None,
        typer.Option(
            metavar="COSINE",
            help="Lowest embedding cosine of a candidate pair, in (0, 1] [env PIXSEEK_DUPLICATE_THRESHOLD; "
            f"default {DUPLICATE_THRESHOLD}]. Depends on the model: see docs/search.md",
        ),
    ] = None,
    max_distance: Annotated[
        int | None,
        typer.Option(
            metavar="BITS",
            help="Most bits of 64 in which a candidate pair's perceptual hashes may differ "
            f"[env PIXSEEK_DUPLICATE_MAX_DISTANCE; default {DUPLICATE_MAX_DISTANCE}]; 64 turns the check off",
        ),
    ] = None,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Group the collection's exact copies and near-duplicates, and suggest which image of each group
    to keep. Exact copies have the same bytes (content hash). Near-duplicates (resized, recompressed,
    slightly cropped, re-exposed or EXIF-rotated copies) need both signals: their embeddings are
    neighbours at cosine >= --threshold, and their perceptual hashes (pHash of the pixels) differ in
    at most --max-distance bits. The embedding finds them without comparing all pairs; the hash tells
    a copy from another photo of the same scene, which the model sees as equally close. Groups join
    through shared members. Keeper: the most pixels, then the largest file, then the oldest date
    taken. Images indexed before pixseek stored the hash get it computed now (candidates only).
    Nothing is deleted."""
    from pixseek.library import Library

    with user_errors(), Library(settings(ctx)) as library:
        progress, on_progress = progress_bar(show=not (quiet or as_json), label="comparing")

        def started(done: int, total: int) -> None:  # the bar appears once the scan runs, not before
            if not progress.live.is_started:
                progress.start()
            on_progress(done, total)

        try:
            report = library.duplicates(threshold, max_distance, progress=started)
        finally:
            if progress.live.is_started:
                progress.stop()
    if as_json:
        out.print_json(json.dumps(_as_json(report), default=str))
        return
    for path, reason in report.unreadable[:20]:
        err.print(f"warning: not compared, its perceptual hash cannot be computed: {path}: {reason}")
    if report.groups:
        out.print(_table(report.groups))
    if not quiet:
        _summary(report)


def _summary(report: DuplicateReport) -> None:
    options = report.options
    copies = sum(len(group.members) - 1 for group in report.groups)
    err.print(
        f"{plural(len(report.groups), 'group')} of duplicates, {plural(copies, 'image')} beyond the keepers "
        f"({human_bytes(sum(m.size for g in report.groups for m in g.members[1:]))}); "
        f"{plural(report.images, 'image')} compared at cosine >= {options.threshold} and hash distance "
        f"<= {options.max_distance} in {report.seconds:.1f} s",
        soft_wrap=True,
    )
    if report.hashed:
        err.print(f"{plural(report.hashed, 'perceptual hash', 'perceptual hashes')} computed and stored")


def _why(group: DuplicateGroup) -> str:
    if group.kind == "exact":
        return "the same content"
    return f"near-duplicates: cosine >= {group.similarity:.3f}, hash distance <= {group.distance}"


def _table(groups: list[DuplicateGroup]) -> Table:
    """One section per group: a line saying why it formed, then its members, the keeper first."""
    table = Table("group", "", "id", box=None)
    table.add_column("path", overflow="fold")  # the path is the answer: fold it, never cut it
    table.add_column("size", justify="right")
    table.add_column("pixels")
    table.add_column("taken")
    for number, group in enumerate(groups, 1):
        if number > 1:
            table.add_section()
        table.add_row(
            str(number), "", "", f"{plural(len(group.members), 'image')}, {_why(group)}", style="bold"
        )
        for place, member in enumerate(group.members):
            table.add_row(
                "",
                "keep" if place == 0 else "",
                str(member.id),
                member.path,
                human_bytes(member.size),
                f"{member.width}x{member.height}" if member.width else "",
                member.taken_at.strftime("%Y-%m-%d %H:%M") if member.taken_at else "",
            )
    return table


def _member(image: IndexedImage) -> dict:
    return {
        "id": image.id,
        "path": image.path,
        "size": image.size,
        "width": image.width,
        "height": image.height,
        "taken_at": image.taken_at.isoformat() if image.taken_at else None,
        "format": image.format,
    }


def _as_json(report: DuplicateReport) -> dict:
    return {
        "threshold": report.options.threshold,
        "max_distance": report.options.max_distance,
        "images": report.images,
        "candidate_pairs": report.candidates,
        "hashed": report.hashed,
        "unreadable": [{"path": path, "reason": reason} for path, reason in report.unreadable],
        "seconds": round(report.seconds, 3),
        "groups": [
            {
                "kind": group.kind,
                "similarity": group.similarity,
                "distance": group.distance,
                "keeper": group.keeper.id,
                "members": [_member(member) for member in group.members],
            }
            for group in report.groups
        ],
    }
