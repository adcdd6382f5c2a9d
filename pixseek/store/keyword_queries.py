"""The SQL of the keyword index: writing an image's texts, and BM25 / ts_rank_cd keyword search.

A part of :class:`pixseek.store.repository.Store` (a mixin it inherits), kept in its own module so
that the queries of one feature sit together and the repository stays readable. The index itself is
created by revision 0004 (SQLite FTS5, PostgreSQL tsvector + GIN); both index the ``terms`` that
:mod:`pixseek.store.keyword_terms` writes, so the two backends find the same images.

Query semantics (docs/search.md, "Keyword index"): the query's words are ANDed at the level of the
image (one word may be in its OCR text, the next in its file name), a ``"quoted phrase"`` must
appear as written within one text, and each word group is sent to the database as a bound value
through a construct that has no syntax of its own (an FTS5 string of plain words, PostgreSQL's
``phraseto_tsquery``), so no input can change the query's meaning or make it fail.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Float,
    Select,
    bindparam,
    cast,
    column,
    delete,
    exists,
    func,
    insert,
    literal_column,
    or_,
    select,
    table,
    union_all,
)
from sqlalchemy.orm import Session

from pixseek.store.keyword_terms import clean_text, path_texts, query_groups, terms, terms_text
from pixseek.store.models import STATUS_INDEXED, ImageRecord, ImageText
from pixseek.store.query_parts import filter_conditions, folder_chunks, id_chunks, path_under
from pixseek.store.records import (
    PATH_SOURCES,
    TEXT_OCR,
    TEXT_SOURCES,
    KeywordHit,
    KeywordMatch,
    KeywordText,
    SearchFilters,
    TextWord,
)
from pixseek.store.sessions import Sessions

MAX_KEYWORD_RESULTS = 10_000  # a page of a paginated search; the fusion step asks for its candidates
# The common-word guard (keyword_search): a word group matching more texts than this is "common".
# Ranking costs about 2.5-5 us per matching text (1M rows: a word in 72% of the texts took
# 1.4-1.8 s), while counting the first COMMON_WORD_TEXTS + 1 matches costs 1-2 ms on SQLite and
# 0.5-20 ms on PostgreSQL (docs/benchmarks.md, "Keyword index at scale").
COMMON_WORD_TEXTS = 5_000
# How many of a common group's first matching texts (by id) an all-common query looks at, or the
# ``limit`` if larger. PostgreSQL reads them in primary-key order, about 1/share rows per match (a
# word in 2% of the texts: 5,000 of them took 250 ms at 1M rows, 1,000 a fifth of that).
COMMON_WORD_SAMPLE = 1_000
# What a common group adds to an image's score: FTS5's own IDF floor, which is what BM25 gives a
# word in more than half of the texts anyway (log((N - n + 0.5) / (n + 0.5)) <= 0 is clamped).
COMMON_WORD_SCORE = 1e-6


def text_rows(image_id: int, collection_id: int, texts: Iterable[KeywordText]) -> list[dict[str, object]]:
    """Insert values for ``texts`` of one image; a text without a searchable word is not stored."""
    rows: list[dict[str, object]] = []
    for text in texts:
        words = terms(text.text) if not text.words else [t for word in text.words for t in terms(word.text)]
        if not words:
            continue
        boxes = (
            json.dumps(
                [
                    {
                        "text": clean_text(w.text),
                        "box": [float(v) for v in w.box],
                        "confidence": float(w.confidence),
                    }
                    for w in text.words
                ],
                ensure_ascii=False,
            )
            if text.words
            else None
        )
        rows.append(
            {
                "image_id": image_id,
                "collection_id": collection_id,
                "source": text.source,
                "text": clean_text(text.text),
                "terms": terms_text(words),
                "boxes": boxes,
                "confidence": text.confidence,
            }
        )
    return rows


def path_rows(image_id: int, collection_id: int, path: str) -> list[dict[str, object]]:
    return [
        {
            "image_id": image_id,
            "collection_id": collection_id,
            "source": source,
            "text": text,
            "terms": words,
            "boxes": None,
            "confidence": None,
        }
        for source, text, words in path_texts(path)
    ]


def write_texts(session: Session, rows: list[dict[str, object]]) -> None:
    """One executemany for a batch's rows (the FTS5 triggers or the generated column follow)."""
    if rows:
        session.execute(insert(ImageText), rows)


class KeywordQueries:
    _session: Sessions

    # ---- writing -----------------------------------------------------------------------------
    def set_ocr_texts(self, image_id: int, words: Sequence[TextWord]) -> None:
        """Replace the OCR text of one image by ``words`` (none: it has no OCR text). For an OCR
        step that runs after its image is stored; one that runs before puts a
        ``KeywordText.from_words(words)`` into the image's ``FileFacts.texts`` instead."""
        self.replace_texts({image_id: [KeywordText.from_words(words)] if words else []}, (TEXT_OCR,))

    def replace_texts(self, texts: Mapping[int, Sequence[KeywordText]], sources: Iterable[str]) -> None:
        """Replace the texts of ``sources`` of each image by ``texts[image_id]``, in one
        transaction; images deleted (or failed) meanwhile are skipped, never an error."""
        sources = tuple(sources)
        unknown = set(sources) - set(TEXT_SOURCES)
        if unknown:
            raise ValueError(f"unknown keyword text sources: {sorted(unknown)}")
        with self._session.begin() as session:
            for chunk in id_chunks(list(texts)):
                session.execute(
                    delete(ImageText).where(ImageText.image_id.in_(chunk), ImageText.source.in_(sources))
                )
                present: dict[int, int] = {
                    image_id: collection_id
                    for image_id, collection_id in session.execute(
                        select(ImageRecord.id, ImageRecord.collection_id).where(
                            ImageRecord.id.in_(chunk), ImageRecord.status == STATUS_INDEXED
                        )
                    )
                }
                rows = [
                    row
                    for image_id in chunk
                    if image_id in present
                    for row in text_rows(
                        image_id, present[image_id], [t for t in texts[image_id] if t.source in sources]
                    )
                ]
                write_texts(session, rows)

    # ---- reading -----------------------------------------------------------------------------
    def keyword_texts(self, ids: Sequence[int], *, with_paths: bool = True) -> dict[int, list[KeywordText]]:
        """The stored texts of ``ids`` (a copy takes its original's, without the path words)."""
        found: dict[int, list[KeywordText]] = {}
        with self._session() as session:
            for chunk in id_chunks(ids):
                query = select(
                    ImageText.image_id,
                    ImageText.source,
                    ImageText.text,
                    ImageText.boxes,
                    ImageText.confidence,
                ).where(ImageText.image_id.in_(chunk))
                if not with_paths:
                    query = query.where(ImageText.source.not_in(PATH_SOURCES))
                for image_id, source, text, boxes, confidence in session.execute(
                    query.order_by(ImageText.id)
                ):
                    found.setdefault(image_id, []).append(
                        KeywordText(source, text, _words(boxes), confidence)
                    )
        return found

    def has_keyword_text(self, collection_id: int, *, include_paths: bool = False) -> bool:
        """Whether any indexed image of the collection has OCR or EXIF/XMP text. Path words do not
        count unless asked for: every image has them, so they would make the answer "not empty"."""
        sources = TEXT_SOURCES if include_paths else tuple(s for s in TEXT_SOURCES if s not in PATH_SOURCES)
        query = select(
            exists().where(ImageText.collection_id == collection_id, ImageText.source.in_(sources))
        )
        with self._session() as session:
            return bool(session.scalar(query))

    def keyword_search(
        self,
        collection_id: int,
        text: str,
        limit: int = 100,
        filters: SearchFilters | None = None,
        *,
        with_matches: bool = True,
        match_all: bool = True,
    ) -> list[KeywordHit]:
        """The indexed images whose texts contain every word (and every quoted phrase) of ``text``,
        best first: BM25 on SQLite, ts_rank_cd on PostgreSQL, of each word group's best text summed,
        as ``s / (1 + s)`` in (0, 1). Ties go to the lower id, so pages are stable. ``limit`` is at
        most MAX_KEYWORD_RESULTS; ``with_matches`` adds the matched words (and OCR boxes).
        ``match_all=False`` asks for images with any of the groups instead (those with more rank
        higher): a fallback for a caller whose AND query found nothing.

        **Common words are bounded.** Ranking costs a few microseconds per matching text, every
        match ranked before the top ``limit`` are cut: at 1M rows a word in 72% of the images took
        1.4-1.8 s (a rare word 3-8 ms), and a hybrid search pays that on every query holding such
        a word. So each word group's matching texts are first counted up to COMMON_WORD_TEXTS + 1
        in the whole index (a LIMIT-bounded count: 1-2 ms on SQLite, 0.5-20 ms on PostgreSQL).
        When no group matches more than COMMON_WORD_TEXTS texts, the query is exactly the unguarded
        one (same SQL, same results). Otherwise the common groups neither drive nor rank it:

        - with a rare group: the rarest one gives the candidates, each common group only checks
          which of those images hold it (the same words: FTS5's ``terms`` as a space-separated
          string on SQLite, the ``tsv`` of the candidates' rows on PostgreSQL), and adds
          COMMON_WORD_SCORE. The result set is today's; the order is the rare groups' score
          (a word in more than half of the texts scores that IDF floor in BM25 anyway);
        - only common groups: the candidates are the first COMMON_WORD_SAMPLE (or ``limit``, if
          more) texts of the collection (filters applied, by text id) holding the first group, the
          other groups checked among them, all at COMMON_WORD_SCORE: at most ``limit`` images that
          hold every group, lowest ids first. Deterministic, but a sample: an AND of common words
          may find fewer than exist;
        - ``match_all=False``: rare groups as always, each common group its first
          COMMON_WORD_SAMPLE (or ``limit``) texts at COMMON_WORD_SCORE (images with a rare group
          first).

        Measured at 1M rows on 2 shared cores (docs/benchmarks.md, "Keyword index at scale"):
        the 72% word alone 12 ms on SQLite, 18 ms on PostgreSQL (1.8 s and 1.4 s unguarded); a
        rare word 2.4 / 4.1 ms (2.8 / 8.0 unguarded), its hits identical hit for hit.
        :meth:`common_keyword_words` says whether a query was bounded."""
        groups = query_groups(text)
        limit = min(limit, MAX_KEYWORD_RESULTS)
        if not groups or limit <= 0:
            return []
        filters = filters or SearchFilters()
        scores: dict[int, float] = {}
        with self._session() as session:
            dialect = session.get_bind().dialect.name
            counts = _match_counts(session, dialect, groups)
            for chunk in folder_chunks(filters.folders) if filters.folders else [None]:
                where = filter_conditions(collection_id, filters) if filters else []
                if chunk is not None:
                    where.append(or_(*(path_under(ImageRecord.path, folder) for folder in chunk)))
                if max(counts) > COMMON_WORD_TEXTS:
                    statement = _guarded(dialect, collection_id, groups, counts, where, limit, match_all)
                else:
                    statement = _ranked(dialect, collection_id, groups, where, limit, match_all)
                scores.update((row[0], float(row[1])) for row in session.execute(statement))
        ranked = sorted(scores.items(), key=lambda item: (-item[1], item[0]))[:limit]
        matches = self._matches([image_id for image_id, _ in ranked], groups) if with_matches else {}
        return [
            KeywordHit(image_id, score / (1.0 + score), tuple(matches.get(image_id, ())))
            for image_id, score in ranked
        ]

    def common_keyword_words(self, text: str) -> list[str]:
        """The word groups of ``text`` (phrases space-joined) that match more than
        COMMON_WORD_TEXTS texts of the index: where :meth:`keyword_search` bounds its work (empty:
        its results are exact). One LIMIT-bounded count per group."""
        groups = query_groups(text)
        if not groups:
            return []
        with self._session() as session:
            counts = _match_counts(session, session.get_bind().dialect.name, groups)
        return [" ".join(g) for g, n in zip(groups, counts, strict=True) if n > COMMON_WORD_TEXTS]

    def _matches(self, ids: Sequence[int], groups: list[list[str]]) -> dict[int, list[KeywordMatch]]:
        """What matched in each image: OCR words with their boxes, else the query words found."""
        wanted = {word for group in groups for word in group}
        found: dict[int, list[KeywordMatch]] = {}
        for image_id, texts in self.keyword_texts(ids).items():
            out = found.setdefault(image_id, [])
            for text in texts:
                if text.words:
                    out.extend(
                        KeywordMatch(text.source, word.text, word.box, word.confidence)
                        for word in text.words
                        if wanted.intersection(terms(word.text))
                    )
                else:
                    out.extend(
                        KeywordMatch(text.source, word)
                        for word in dict.fromkeys(terms(text.text))
                        if word in wanted
                    )
        return found


def _words(boxes: str | None) -> tuple[TextWord, ...]:
    if not boxes:
        return ()
    return tuple(TextWord(item["text"], tuple(item["box"]), item["confidence"]) for item in json.loads(boxes))


_FTS = table("image_texts_fts", column("rowid"))
_FTS_TABLE: ColumnElement[Any] = literal_column(
    "image_texts_fts"
)  # FTS5 names the table itself in MATCH and bm25()
_TSV: ColumnElement[Any] = literal_column("image_texts.tsv")


def _group_scores(
    dialect: str, collection_id: int, index: int, group: list[str], conditions: list[ColumnElement[bool]]
) -> Select[int, Any]:
    """(image_id, score) of the collection's images having the phrase ``group`` in one of their
    texts, the best text's score; ``conditions`` on the image (filters) join the images table here,
    per matched text, where the planner knows how many there are (joined after the aggregation,
    PostgreSQL hashed the whole images table for every query). FTS5: a double-quoted string of
    plain words (the tokeniser's output holds no quote) is a phrase and nothing else; bm25() is
    lower-better, so negated. PostgreSQL: phraseto_tsquery parses no operators at all."""
    if dialect == "sqlite":
        phrase: ColumnElement[str] = bindparam(f"q{index}", '"' + " ".join(group) + '"')
        # bm25() only works in the query that scans the FTS table: LIMIT -1 keeps SQLite from
        # flattening this subquery into the join and aggregate around it.
        matched = (
            select(_FTS.c.rowid.label("text_id"), (-func.bm25(_FTS_TABLE)).label("score"))
            .where(_FTS_TABLE.op("MATCH")(phrase))
            .limit(-1)
            .subquery(f"m{index}")
        )
        statement = (
            select(ImageText.image_id.label("image_id"), func.max(matched.c.score).label("score"))
            .join(matched, ImageText.id == matched.c.text_id)
            .where(ImageText.collection_id == collection_id)
        )
    else:
        query = func.phraseto_tsquery("simple", bindparam(f"q{index}", " ".join(group)))
        statement = select(
            ImageText.image_id.label("image_id"), func.max(func.ts_rank_cd(_TSV, query)).label("score")
        ).where(_TSV.op("@@")(query), ImageText.collection_id == collection_id)
    if conditions:
        statement = statement.join(ImageRecord, ImageRecord.id == ImageText.image_id).where(*conditions)
    return statement.group_by(ImageText.image_id)


def _ranked(
    dialect: str,
    collection_id: int,
    groups: list[list[str]],
    conditions: list[ColumnElement[bool]],
    limit: int,
    match_all: bool,
) -> Select[int, Any]:
    """The images matching every group (one row per group each; with ``match_all`` False, any
    group), filtered, by summed score. Only indexed images have texts: no status check needed."""
    parts = [_group_scores(dialect, collection_id, i, group, conditions) for i, group in enumerate(groups)]
    return _summed(parts, len(groups), match_all, limit)


def _matching(dialect: str, index: int, group: list[str], prefix: str = "p") -> ColumnElement[bool]:
    """The condition "this text holds the phrase ``group``", through the full-text index."""
    if dialect == "sqlite":
        return _FTS_TABLE.op("MATCH")(bindparam(f"{prefix}{index}", '"' + " ".join(group) + '"'))
    return _TSV.op("@@")(func.phraseto_tsquery("simple", bindparam(f"{prefix}{index}", " ".join(group))))


def _match_counts(session: Session, dialect: str, groups: list[list[str]]) -> list[int]:
    """How many texts of the whole index match each group, counted up to COMMON_WORD_TEXTS + 1:
    the guard's probe. The index, not the collection: FTS5 holds no collection (joining the
    texts to learn it cost 13-90 ms per 5,000 at 1M rows against 1-2 ms), and BM25's statistics
    are the whole index's too."""
    probes = []
    for i, group in enumerate(groups):
        source = _FTS if dialect == "sqlite" else ImageText.__table__
        first = (
            select(literal_column("1"))
            .select_from(source)
            .where(_matching(dialect, i, group))
            .limit(COMMON_WORD_TEXTS + 1)
            .subquery(f"c{i}")
        )
        probes.append(select(func.count()).select_from(first).scalar_subquery())
    return [int(n) for n in session.execute(select(*probes)).one()]


def _common_score() -> ColumnElement[float]:
    return cast(literal_column(repr(COMMON_WORD_SCORE)), Float)


def _sample(
    dialect: str,
    collection_id: int,
    index: int,
    group: list[str],
    conditions: list[ColumnElement[bool]],
    size: int,
) -> Select[int, Any]:
    """(image_id, COMMON_WORD_SCORE) of the images among the collection's first ``size`` texts
    (by id, filters applied) holding the common phrase ``group``: read in the full-text
    index's own order (FTS5 rowid, PostgreSQL's primary key), so the LIMIT stops the scan."""
    if dialect == "sqlite":
        first = (
            select(ImageText.image_id.label("image_id"))
            .select_from(_FTS)
            .join(ImageText, ImageText.id == _FTS.c.rowid)
            .where(_matching(dialect, index, group, "q"), ImageText.collection_id == collection_id)
        )
        order: Any = _FTS.c.rowid
    else:
        first = select(ImageText.image_id.label("image_id")).where(
            _matching(dialect, index, group, "q"), ImageText.collection_id == collection_id
        )
        order = ImageText.id
    if conditions:
        first = first.join(ImageRecord, ImageRecord.id == ImageText.image_id).where(*conditions)
    texts = first.order_by(order).limit(size).subquery(f"s{index}")
    return select(texts.c.image_id, _common_score().label("score")).group_by(texts.c.image_id)


def _holding(
    dialect: str, collection_id: int, index: int, group: list[str], candidates: Any
) -> Select[int, Any]:
    """(image_id, COMMON_WORD_SCORE) of the ``candidates`` images holding the common phrase
    ``group`` in one of their texts, checked on their own rows: the full-text index would walk
    the phrase's whole posting list. SQLite: the phrase in ``terms``, the space-separated words
    FTS5 indexes; PostgreSQL: the rows' ``tsv``."""
    if dialect == "sqlite":
        padded = literal_column("' '").concat(ImageText.terms).concat(" ")
        held = func.instr(padded, bindparam(f"q{index}", " " + " ".join(group) + " ")) > 0
    else:
        held = _matching(dialect, index, group, "q")
    return (
        select(ImageText.image_id.label("image_id"), _common_score().label("score"))
        .where(
            ImageText.collection_id == collection_id,
            ImageText.image_id.in_(select(candidates.c.image_id)),
            held,
        )
        .group_by(ImageText.image_id)
    )


def _guarded(
    dialect: str,
    collection_id: int,
    groups: list[list[str]],
    counts: list[int],
    conditions: list[ColumnElement[bool]],
    limit: int,
    match_all: bool,
) -> Select[int, Any]:
    """:func:`_ranked` when some group is common (see keyword_search): rare groups ranked as
    always, common ones checked among the rarest group's images (or a first-texts sample)."""
    common = {i for i, n in enumerate(counts) if n > COMMON_WORD_TEXTS}
    size = max(COMMON_WORD_SAMPLE, limit)
    parts: list[Select[int, Any]] = []
    if not match_all:
        for i, group in enumerate(groups):
            parts.append(
                _sample(dialect, collection_id, i, group, conditions, size)
                if i in common
                else _group_scores(dialect, collection_id, i, group, conditions)
            )
    else:
        anchor = min(range(len(groups)), key=lambda i: (counts[i], i))
        first = (
            _sample(dialect, collection_id, anchor, groups[anchor], conditions, size)
            if anchor in common
            else _group_scores(dialect, collection_id, anchor, groups[anchor], conditions)
        ).cte("anchor")
        parts.append(select(first.c.image_id, first.c.score))
        for i, group in enumerate(groups):
            if i == anchor:
                continue
            parts.append(
                _holding(dialect, collection_id, i, group, first)
                if i in common
                else _group_scores(dialect, collection_id, i, group, conditions)
            )
    return _summed(parts, len(groups), match_all, limit)


def _summed(parts: Sequence[Select[Any, Any]], groups: int, match_all: bool, limit: int) -> Select[int, Any]:
    """The images of the per-group score rows ``parts`` holding every group (or, without
    ``match_all``, any), by summed score, ties by id."""
    per_group = union_all(*parts).subquery("g")
    score = func.sum(per_group.c.score).label("score")
    return (
        select(per_group.c.image_id, score)
        .group_by(per_group.c.image_id)
        .having(func.count() == groups if match_all else func.count() >= 1)
        .order_by(score.desc(), per_group.c.image_id)
        .limit(limit)
    )
