"""The conditions the store's queries are built from, within what both SQL backends accept.

Paths under a folder are matched by an exact prefix compare, long lists of ids or folders are cut
into chunks under SQLite's parameter and expression-depth limits, and search filters become column
conditions. Kept apart from the queries so that those limits are handled in one place.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence

from sqlalchemy import ColumnElement, func, or_

from pixseek.store.models import STATUS_INDEXED, ImageRecord
from pixseek.store.records import SearchFilters

ID_CHUNK = 900  # below SQLite's default bound-parameter limit
FOLDER_CHUNK = 100  # folder prefixes per query: 2 OR terms and 4 parameters each (see folder_chunks)


def path_under(path_column, folder: str) -> ColumnElement[bool]:
    """Rows at ``folder`` itself or anywhere below it (not siblings sharing a name prefix).

    An exact prefix compare with substr, not LIKE: SQLite's LIKE ignores ASCII case (``/photos``
    matched ``/Photos/...``) and refuses patterns over 50,000 bytes, and ``_`` and ``%`` needed
    escaping. substr counts characters on both backends, as ``len`` does."""
    folder = folder.rstrip(os.sep) or os.sep
    prefix = folder if folder.endswith(os.sep) else folder + os.sep
    return or_(path_column == folder, func.substr(path_column, 1, len(prefix)) == prefix)


def folder_chunks(folders: Iterable[str]) -> Iterator[list[str]]:
    """Folders in groups small enough for one query: SQLite nests ``a OR b OR ...`` one level per
    term and refuses expressions deeper than 1000 (499 folders did it)."""
    unique = list(dict.fromkeys(folders))
    for start in range(0, len(unique), FOLDER_CHUNK):
        yield unique[start : start + FOLDER_CHUNK]


def id_chunks(values: Sequence[int]) -> Iterator[list[int]]:
    values = list(values)
    for start in range(0, len(values), ID_CHUNK):
        yield values[start : start + ID_CHUNK]


def filter_conditions(collection_id: int, filters: SearchFilters) -> list[ColumnElement[bool]]:
    """The conditions on indexed images of the collection for every filter but the folders (which
    take one query per chunk of :func:`folder_chunks`)."""
    conditions = [ImageRecord.collection_id == collection_id, ImageRecord.status == STATUS_INDEXED]
    if filters.taken_after:
        conditions.append(ImageRecord.taken_at >= filters.taken_after)
    if filters.taken_before:
        conditions.append(ImageRecord.taken_at <= filters.taken_before)
    if filters.min_width:
        conditions.append(ImageRecord.width >= filters.min_width)
    if filters.min_height:
        conditions.append(ImageRecord.height >= filters.min_height)
    if filters.formats:
        conditions.append(func.upper(ImageRecord.format).in_([f.upper() for f in filters.formats]))
    return conditions
