"""The keyword index in the store (revision 0004) on SQLite FTS5 and PostgreSQL full-text search:
the migration and its backfill, query semantics, hostile input, filters, cleanup, and the EXIF/XMP
text the indexer reads."""

from __future__ import annotations

import io
import shutil
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from alembic import command
from PIL import Image
from sqlalchemy import func, insert, select, text

from pixseek.config import Settings
from pixseek.library import Library
from pixseek.media.decode import decode_image
from pixseek.store import keyword_queries
from pixseek.store.database import _alembic_config, create_store_engine, head_revision
from pixseek.store.keyword_terms import MAX_TERMS, filename_terms, folder_terms, query_groups, terms
from pixseek.store.models import Collection, ImageRecord, ImageText
from pixseek.store.records import (
    TEXT_DESCRIPTION,
    TEXT_KEYWORDS,
    TEXT_OCR,
    TEXT_TITLE,
    ChangeBatch,
    FileFacts,
    KeywordText,
    SearchFilters,
    TextWord,
)
from pixseek.store.repository import Store

DIM = 4


@pytest.fixture
def store(database_url: str):
    store = Store.open(database_url)
    yield store
    store.close()


def _collection(store: Store, name: str = "default") -> int:
    return store.ensure_collection(name, model_id="m", fingerprint="f", dim=DIM, precision="fp32").id


def _vector(seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return x / np.linalg.norm(x)


def _add(store: Store, collection_id: int, *files: FileFacts) -> list[int]:
    batch = ChangeBatch(indexed=[(facts, _vector(i)) for i, facts in enumerate(files)])
    return store.apply(collection_id, batch).added_ids.tolist()


def _facts(path: str, *texts: KeywordText, **metadata) -> FileFacts:
    return FileFacts(path, 10, 1, content_hash=path, texts=texts, **metadata)


def _ocr(*words: str) -> KeywordText:
    return KeywordText.from_words(
        [TextWord(word, (10.0 * i, 5.0, 10.0 * i + 8, 15.0), 0.9) for i, word in enumerate(words)]
    )


def _ids(store: Store, collection_id: int, query: str, **options) -> list[int]:
    return [hit.image_id for hit in store.keyword_search(collection_id, query, **options)]


# ---- the tokeniser ----------------------------------------------------------------------------


def test_file_and_folder_names_split_on_separators_case_and_digits() -> None:
    assert filename_terms("/x/IMG_2041_receipt-Lidl.jpg") == ["img", "2041", "receipt", "lidl"]
    assert filename_terms("/x/receiptLidl2.png") == ["receiptlidl2", "receipt", "lidl", "2"]
    assert folder_terms("/photos/2021/Urlaub Ibiza/x.jpg") == ["photos", "2021", "urlaub", "ibiza"]
    assert terms("Größe CAFÉ Çà 收据") == ["grosse", "cafe", "ca", "收", "据"]


def test_query_groups_are_phrases_and_words_and_never_syntax() -> None:
    assert query_groups('"big red" car') == [["big", "red"], ["car"]]
    assert query_groups("receipt-lidl 收据") == [["receipt", "lidl"], ["收", "据"]]
    assert query_groups('a" OR * NEAR(') == [["a"], ["or"], ["near"]]  # a lone quote is a space
    assert query_groups('x "a b" "c') == [["a", "b"], ["x"], ["c"]]
    assert query_groups('" ( * ^ : - + " ') == []
    assert query_groups("car car CAR") == [["car"]]


# ---- the migration ----------------------------------------------------------------------------


def test_migration_from_0003_keeps_rows_and_backfills_path_words(database_url: str) -> None:
    engine = create_store_engine(database_url)
    config = _alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0003")
    paths = [f"/photos/Urlaub Ibiza/IMG_{i:04d}_strand.jpg" for i in range(12_000)]
    with engine.begin() as connection:
        connection.execute(
            insert(Collection.__table__).values(
                id=1, name="default", model_id="m", model_fingerprint="f", dim=DIM, precision="fp32",
                generation=1, created_at=datetime(2026, 1, 1),
            )
        )  # fmt: skip
        connection.execute(
            insert(ImageRecord.__table__),
            [
                {
                    "collection_id": 1, "path": path, "size": 1, "mtime_ns": 1, "status": "indexed",
                    "indexed_at": datetime(2026, 1, 1), "embedding": _vector(0).tobytes(),
                }
                for path in paths
            ]
            + [
                {
                    "collection_id": 1, "path": "/photos/broken_receipt.jpg", "size": 1, "mtime_ns": 1,
                    "status": "failed", "error": "truncated", "indexed_at": datetime(2026, 1, 1),
                    "embedding": None,
                }
            ],
        )  # fmt: skip
    engine.dispose()

    store = Store.open(database_url)  # migrates to the head: 0004 backfills in chunks of 5,000
    try:
        with store.engine.connect() as connection:
            assert (
                connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
                == head_revision()
            )
            assert connection.execute(select(func.count()).select_from(ImageRecord)).scalar() == 12_001
        assert store.stats(1).indexed == 12_000
        hit = store.keyword_search(1, "img 0042")
        assert [store.images([h.image_id])[h.image_id].path for h in hit] == [paths[42]]
        assert len(store.keyword_search(1, "ibiza strand", limit=20_000)) == 10_000  # the page bound
        assert store.keyword_search(1, "broken") == []  # failed rows are not searchable
        assert not store.has_keyword_text(1) and store.has_keyword_text(1, include_paths=True)
    finally:
        store.close()


def test_migration_downgrades_and_upgrades_again(database_url: str) -> None:
    store = Store.open(database_url)
    c = _collection(store)
    _add(store, c, _facts("/p/kept_after_downgrade.jpg"))
    store.close()
    engine = create_store_engine(database_url)
    config = _alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0003")
    engine.dispose()
    store = Store.open(database_url)  # back to the head: the backfill writes the path words again
    try:
        assert store.stats(c).indexed == 1 and len(_ids(store, c, "kept after downgrade")) == 1
    finally:
        store.close()


# ---- query semantics --------------------------------------------------------------------------


def test_words_are_anded_across_texts_and_phrases_must_be_adjacent(store: Store) -> None:
    c = _collection(store)
    red_car, car_red, only_red, receipt = _add(
        store,
        c,
        _facts("/p/a.jpg", _ocr("a", "big", "red", "car")),
        _facts("/p/b.jpg", _ocr("red", "big", "car")),
        _facts("/p/c.jpg", _ocr("red")),
        _facts("/p/receipts/IMG_2041_receipt-Lidl.jpg", KeywordText(TEXT_DESCRIPTION, "Einkauf bei Lidl")),
    )
    assert sorted(_ids(store, c, "big red car")) == [red_car, car_red]
    assert _ids(store, c, '"big red" car') == [red_car]
    assert _ids(store, c, '"red big"') == [car_red]
    assert _ids(store, c, "receipt einkauf 2041") == [receipt]  # file name, description, file name
    assert _ids(store, c, "receipts lidl") == [receipt]  # a folder word and a file name word
    assert sorted(_ids(store, c, "red")) == [red_car, car_red, only_red]
    assert _ids(store, c, "red nothing-like-it") == []
    assert set(_ids(store, c, "car nothing", match_all=False)) == {red_car, car_red}  # any word
    assert set(_ids(store, c, "car einkauf", match_all=False)) == {red_car, car_red, receipt}
    hits = store.keyword_search(c, "red")
    assert all(0 < hit.score < 1 for hit in hits)
    assert [hit.score for hit in hits] == sorted((hit.score for hit in hits), reverse=True)


def test_more_occurrences_rank_higher(store: Store) -> None:
    c = _collection(store)
    once, thrice = _add(
        store,
        c,
        _facts("/p/1.jpg", _ocr("invoice", "total", "date", "number", "paid", "thanks")),
        _facts("/p/2.jpg", _ocr("invoice", "invoice", "invoice", "paid")),
    )
    assert _ids(store, c, "invoice") == [thrice, once]


def test_accents_and_case_do_not_matter(store: Store) -> None:
    c = _collection(store)
    (cafe,) = _add(store, c, _facts("/p/x.jpg", _ocr("CAFÉ", "Größe", "Straße", "Noël")))
    for query in ("café", "cafe", "CAFE", "grosse", "GRÖSSE", "strasse", "noel", "Noël"):
        assert _ids(store, c, query) == [cafe], query
    (chinese,) = _add(store, c, _facts("/p/y.jpg", _ocr("收据", "总计")))
    assert _ids(store, c, "收据") == [chinese] and _ids(store, c, "据总") == [chinese]
    assert _ids(store, c, "据收") == []


def test_matched_words_carry_their_boxes(store: Store) -> None:
    c = _collection(store)
    (image,) = _add(
        store, c, _facts("/p/Lidl.jpg", _ocr("Total:", "12,50", "EUR"), KeywordText(TEXT_TITLE, "Lidl"))
    )
    (hit,) = store.keyword_search(c, "total lidl")
    by_source = {(m.source, m.text): m for m in hit.matches}
    assert by_source[(TEXT_OCR, "Total:")].box == (0.0, 5.0, 8.0, 15.0)
    assert by_source[(TEXT_OCR, "Total:")].confidence == pytest.approx(0.9)
    assert (TEXT_TITLE, "lidl") in by_source and ("filename", "lidl") in by_source
    assert hit.image_id == image


@pytest.mark.parametrize(
    ("query", "matches"),
    [
        ('a" OR * NEAR(', True),  # a lone quote is a space: the words a, or, near
        ('"near or"', True),
        ('"or near"', False),  # a phrase keeps its order
        ('"', False),
        ('""', False),
        ("*", False),
        ("NEAR(a b)", False),  # "NEAR(a" is one word, the phrase "near a": not in the text
        ("NEAR (a b)", True),
        ("a OR b", True),  # OR is a word, not an operator
        ("a AND NOT b", False),  # no "and", no "not" in the text
        ("terms:secret", False),  # not a column filter: the phrase "terms secret", not adjacent here
        ("secret:terms", True),
        ("^start", True),
        ("a + b", True),
        ("(((", False),
        ("'; DROP TABLE images; --", False),
        ("a & b | !c <-> d", False),
        ("\x00\x01\ufffd", False),
        ("\ud800", False),
        ("a" * 5000, False),
        (" ".join(["secret"] * 3000), True),
    ],
)
def test_hostile_queries_neither_fail_nor_change_meaning(store: Store, query: str, matches: bool) -> None:
    c = _collection(store)
    (image,) = _add(store, c, _facts("/p/x.jpg", _ocr("near", "or", "a", "b", "start", "secret", "terms")))
    assert _ids(store, c, query) == ([image] if matches else [])
    with store.engine.connect() as connection:  # nothing was dropped
        assert connection.execute(select(func.count()).select_from(ImageRecord)).scalar() == 1


def test_filters_and_folders_apply(store: Store) -> None:
    c = _collection(store)
    other = _collection(store, "other")
    small, big, old = _add(
        store,
        c,
        _facts("/p/a/1.jpg", _ocr("sale"), width=100, height=100, format="PNG"),
        _facts("/p/b/2.jpg", _ocr("sale"), width=2000, height=1000, format="JPEG"),
        _facts(
            "/p/b/3.jpg", _ocr("sale"), width=2000, height=1000, format="JPEG", taken_at=datetime(2001, 1, 1)
        ),
    )
    _add(store, other, _facts("/p/a/4.jpg", _ocr("sale")))
    assert sorted(_ids(store, c, "sale")) == [small, big, old]
    assert sorted(_ids(store, c, "sale", filters=SearchFilters(min_width=1000))) == [big, old]
    assert _ids(store, c, "sale", filters=SearchFilters(formats=("png",))) == [small]
    assert _ids(store, c, "sale", filters=SearchFilters(taken_before=datetime(2010, 1, 1))) == [old]
    assert _ids(store, c, "sale", filters=SearchFilters(folders=("/p/a",))) == [small]
    many = (*(f"/q/{i}" for i in range(250)), "/p/b")  # over one query's folder chunk
    assert sorted(_ids(store, c, "sale", filters=SearchFilters(folders=many))) == [big, old]
    assert _ids(store, c, "sale", limit=2) == sorted([small, big, old])[:2]  # equal scores: by id


def test_deletes_moves_copies_and_drops_leave_no_stale_rows(store: Store) -> None:
    c = _collection(store)
    kept, moved, gone = _add(
        store,
        c,
        _facts("/p/kept.jpg", _ocr("alpha")),
        _facts("/p/old_name.jpg", _ocr("beta"), KeywordText(TEXT_KEYWORDS, "holiday")),
        _facts("/p/gone.jpg", _ocr("gamma")),
    )
    store.apply(c, ChangeBatch(deleted=[gone], moved=[(moved, FileFacts("/p/new/fresh_name.jpg", 10, 2))]))
    assert _ids(store, c, "gamma") == [] and _ids(store, c, "gone") == []
    assert _ids(store, c, "old") == [] and _ids(store, c, "fresh name") == [moved]
    assert _ids(store, c, "beta holiday new") == [moved]  # OCR and keywords kept across the move
    copied = store.keyword_texts([moved], with_paths=False)[moved]
    assert {t.source for t in copied} == {TEXT_OCR, TEXT_KEYWORDS}
    (copy,) = _add(store, c, _facts("/p/copy.jpg", *copied))
    assert sorted(_ids(store, c, "beta")) == [moved, copy] and _ids(store, c, "copy beta") == [copy]
    store.set_ocr_texts(kept, [TextWord("omega", (0, 0, 1, 1), 0.5)])
    assert _ids(store, c, "alpha") == [] and _ids(store, c, "omega") == [kept]
    store.set_ocr_texts(kept, [])
    assert _ids(store, c, "omega") == [] and _ids(store, c, "kept") == [kept]
    store.set_ocr_texts(10_000_000, [TextWord("ghost", (0, 0, 1, 1), 0.5)])  # no such image: skipped
    assert store.drop_collection("default")
    with store.engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(ImageText)).scalar() == 0
        if connection.dialect.name == "sqlite":  # the FTS5 index followed its content table
            assert (
                connection.execute(
                    text("SELECT count(*) FROM image_texts_fts WHERE image_texts_fts MATCH 'beta'")
                ).scalar()
                == 0
            )


def test_empty_huge_and_junk_texts_lose_nothing(store: Store) -> None:
    c = _collection(store)
    huge = " ".join(f"w{i % 5000}" for i in range(200_000)) + " needle"  # ~1.2 MB, needle past MAX_TERMS
    empty, big, junk = _add(
        store,
        c,
        _facts("/p/empty.jpg", KeywordText(TEXT_DESCRIPTION, ""), _ocr()),
        _facts("/p/big.jpg", KeywordText(TEXT_DESCRIPTION, "start " + huge)),
        _facts("/p/junk.jpg", KeywordText(TEXT_TITLE, "\x00\udcff\ufffe bin\x00ary \x01\x02 junk")),
    )
    assert store.stats(c).indexed == 3
    assert _ids(store, c, "empty") == [empty]
    assert _ids(store, c, "start w42") == [big]
    assert _ids(store, c, "needle") == []  # past the first MAX_TERMS words: documented
    (stored,) = store.keyword_texts([big], with_paths=False)[big]
    assert stored.text == "start " + huge  # the text itself is kept in full
    assert _ids(store, c, "binary") == [] and _ids(store, c, "ary junk") == [junk]
    assert MAX_TERMS == 16_383


def test_search_without_words_and_empty_collections(store: Store) -> None:
    c = _collection(store)
    assert store.keyword_search(c, "anything") == [] and store.keyword_search(c, "  ") == []
    assert not store.has_keyword_text(c)
    _add(store, c, _facts("/p/x.jpg", KeywordText(TEXT_TITLE, "hello")))
    assert store.has_keyword_text(c) and store.keyword_search(c, "hello", limit=0) == []


# ---- the common-word guard ----------------------------------------------------------------------


@pytest.fixture
def guarded(store: Store, monkeypatch: pytest.MonkeyPatch):
    """A collection where "the" and the phrase "the end" are in most images, "invoice" in two, and
    the guard's bounds made small (5 texts, a 4-text sample) so that a dozen images cross them."""
    c = _collection(store)
    words = [["the", "end", "of", "it"]] * 10
    words[3] = ["the", "end", "invoice"]
    words[7] = ["end", "the", "invoice", "invoice"]
    words[9] = ["invoice", "end"]  # no "the"
    ids = _add(
        store, c, *(_facts(f"/p/{'b' if i >= 10 else 'a'}/{i}.jpg", _ocr(*w)) for i, w in enumerate(words))
    )
    ids += _add(store, c, *(_facts(f"/p/b/{i}.jpg", _ocr("the", "end")) for i in range(10, 12)))
    exact = {q: store.keyword_search(c, q) for q in ("invoice", '"invoice invoice"', "invoice 7")}
    monkeypatch.setattr(keyword_queries, "COMMON_WORD_TEXTS", 5)
    monkeypatch.setattr(keyword_queries, "COMMON_WORD_SAMPLE", 4)
    return store, c, ids, exact


def test_rare_words_are_unguarded_and_unchanged(guarded) -> None:
    store, c, ids, exact = guarded
    assert store.common_keyword_words("invoice") == [] and store.common_keyword_words("the") == ["the"]
    assert store.common_keyword_words('the "the end" it') == ["the end", "the", "it"]
    for query, hits in exact.items():  # below the bound: the same SQL, the same hits and scores
        assert store.keyword_search(c, query) == hits, query
    found = [h.image_id for h in exact["invoice"]]
    assert found[0] == ids[7] and sorted(found[1:]) == [ids[3], ids[9]]


def test_common_words_only_filter_the_rare_words_candidates(guarded) -> None:
    store, c, ids, _ = guarded
    hits = store.keyword_search(c, "the invoice")  # "the" is common: it filters, "invoice" ranks
    assert [h.image_id for h in hits] == [ids[7], ids[3]]  # not ids[9], which lacks "the"
    assert all(0 < h.score < 1 for h in hits) and hits[0].score > hits[1].score
    assert _ids(store, c, 'invoice "the end"') == [ids[3]]  # a common phrase still matches exactly
    assert _ids(store, c, 'invoice "end the"') == [ids[7]]
    assert _ids(store, c, "invoice of") == []


def test_an_all_common_query_is_a_bounded_id_ordered_sample(guarded) -> None:
    store, c, ids, exact = guarded
    holders = [ids[i] for i in range(12) if i != 9]  # the images with "the"
    for query in ("the", "end the", '"the end"', "the the"):
        hits = store.keyword_search(c, query, limit=3)
        assert [h.image_id for h in hits] == holders[:3], query  # the lowest ids, at most limit
        assert len({h.score for h in hits}) == 1 and 0 < hits[0].score < 1
        assert store.keyword_search(c, query, limit=3) == hits  # deterministic
    assert _ids(store, c, '"the end"', limit=20) == [i for i in holders if i != ids[7]]  # a phrase
    assert _ids(store, c, "the it", limit=4) == ids[:3]  # among the first 4 texts with "the" only
    folder_b = SearchFilters(folders=("/p/b",))  # filters apply before the sample is cut
    assert _ids(store, c, "the", filters=folder_b) == [ids[10], ids[11]]
    either = _ids(store, c, "invoice the", match_all=False, limit=5)
    assert either[:3] == [h.image_id for h in exact["invoice"]] and either[3:] == holders[:2]


# ---- EXIF and XMP -------------------------------------------------------------------------------

_XMP = """<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/">
<dc:title><rdf:Alt><rdf:li xml:lang="x-default">Quittung Café Müller</rdf:li></rdf:Alt></dc:title>
<dc:description><rdf:Alt><rdf:li xml:lang="x-default">Frühstück am Hafen</rdf:li></rdf:Alt></dc:description>
<dc:subject><rdf:Bag><rdf:li>Hamburg</rdf:li><rdf:li>breakfast</rdf:li></rdf:Bag></dc:subject>
</rdf:Description></rdf:RDF></x:xmpmeta>
<?xpacket end="w"?>"""


def _jpeg(
    description: object = "Receipt from the bakery", xmp: str | bytes | None = _XMP, **xp: bytes
) -> bytes:
    exif = Image.Exif()
    if description is not None:
        exif[0x010E] = description
    for tag, value in xp.items():
        exif[{"title": 0x9C9B, "comment": 0x9C9C, "keywords": 0x9C9E}[tag]] = value
    buffer = io.BytesIO()
    options = {"xmp": xmp.encode() if isinstance(xmp, str) else xmp} if xmp is not None else {}
    Image.new("RGB", (64, 48), "white").save(buffer, "JPEG", exif=exif, **options)
    return buffer.getvalue()


def test_exif_and_xmp_text_are_read_from_a_jpeg() -> None:
    data = _jpeg(keywords="Brot;Bäcker".encode("utf-16-le"), title="Morgens".encode("utf-16-le"))
    text = decode_image(data).metadata.text
    assert text.description == "Receipt from the bakery; Frühstück am Hafen"
    assert text.title == "Morgens; Quittung Café Müller"
    assert text.keywords == "Brot;Bäcker; Hamburg; breakfast"


@pytest.mark.parametrize(
    ("description", "xmp"),
    [
        (b"\xff\xfe\x00\x00binary\x00\x9c junk" * 10, b"\x00\xff<x:xmpmeta garbage"),
        (
            "x" * 60_000,
            b'<!DOCTYPE x [<!ENTITY a "aaaa">]><x:xmpmeta xmlns:x="adobe:ns:meta/">&a;</x:xmpmeta>',
        ),
        (None, b"<x:xmpmeta xmlns:x='adobe:ns:meta/'><unclosed></x:xmpmeta>"),
        (None, None),
    ],
)
def test_junk_metadata_costs_the_field_not_the_image(description: object, xmp: bytes | None) -> None:
    decoded = decode_image(_jpeg(description, xmp))
    assert decoded.image.size == (64, 48) and decoded.metadata.text.title is None


def test_indexing_stores_path_and_metadata_words_and_follows_moves_and_copies(
    database_url: str, settings: Settings, tmp_path: Path
) -> None:
    folder = tmp_path / "scans" / "Urlaub"
    folder.mkdir(parents=True)
    (folder / "IMG_2041_receipt-Lidl.jpg").write_bytes(_jpeg())
    Image.new("RGB", (64, 48), "black").save(folder / "plain.png")
    library = Library(settings.model_copy(update={"database_url": database_url}))
    try:
        indexer = library.indexer(library.load_encoder())
        assert indexer.run([tmp_path / "scans"]).embedded == 2
        store, c = library.store, library.collection().id
        (receipt,) = _ids(store, c, "lidl 2041 hamburg frühstück")
        assert _ids(store, c, '"cafe muller" urlaub') == [receipt]
        assert store.has_keyword_text(c)
        shutil.copy(folder / "IMG_2041_receipt-Lidl.jpg", folder / "copy.jpg")
        shutil.move(folder / "plain.png", tmp_path / "scans" / "moved_plain.png")
        report = indexer.run([tmp_path / "scans"])
        assert (report.embedded, report.copied, report.moved) == (0, 1, 1)
        copy = store.image_by_path(c, str(folder / "copy.jpg"))
        assert copy is not None and sorted(_ids(store, c, "hamburg")) == sorted([receipt, copy.id])
        assert _ids(store, c, "copy hamburg") == [copy.id]
        assert _ids(store, c, "plain") == _ids(store, c, "moved plain") != []
        assert _ids(store, c, "plain urlaub") == []
        (folder / "copy.jpg").unlink()
        indexer.run([tmp_path / "scans"])
        assert _ids(store, c, "copy") == []
    finally:
        library.close()
