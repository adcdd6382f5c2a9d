"""Words as the keyword index sees them: one tokeniser for what is stored and for what is asked.

Both backends index the same normalised ``terms`` string (written by Python, not by each database's
own tokeniser), so that SQLite FTS5 and PostgreSQL full-text search agree on what a word is: case
folded, accents removed ("Größe" -> "grosse", "café" -> "cafe"), split on anything that is not a
letter or digit, and every CJK ideograph a word of its own (Chinese has no spaces; a query of two
characters then matches as a two-word phrase). The databases' tokenisers see only such words, so
their own rules (PostgreSQL splits hyphens, FTS5 keeps them) never come into play.
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Iterable

from pixseek.store.records import TEXT_FILENAME, TEXT_PATH

# PostgreSQL records word positions up to 16,383 (later words all share that last position, so a
# phrase past it cannot match): the first MAX_TERMS words of a text are what both backends search.
# The text itself is stored in full. It also keeps a tsvector well under its 1 MB limit.
MAX_TERMS = 16_383

_WORD = re.compile(r"[^\W_]+")


def _is_cjk(char: str) -> bool:
    code = ord(char)
    return (
        0x3400 <= code <= 0x4DBF  # CJK extension A
        or 0x4E00 <= code <= 0x9FFF  # CJK unified ideographs
        or 0xF900 <= code <= 0xFAFF  # compatibility ideographs
        or 0x3040 <= code <= 0x30FF  # hiragana, katakana
        or 0xAC00 <= code <= 0xD7AF  # hangul syllables
        or 0x20000 <= code <= 0x2FA1F  # extensions B-F and supplements
    )


def _fold(text: str) -> str:
    """Case folded, without accents: NFKD splits "é" into "e" and a combining mark, which goes."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(char for char in decomposed if not unicodedata.combining(char))


def _split_cjk(word: str) -> Iterable[str]:
    if not any(_is_cjk(char) for char in word):
        yield word
        return
    run = ""
    for char in word:
        if _is_cjk(char):
            if run:
                yield run
                run = ""
            yield char
        else:
            run += char
    if run:
        yield run


def terms(text: str) -> list[str]:
    """The searchable words of ``text``, in order."""
    return [part for word in _WORD.findall(_fold(text)) for part in _split_cjk(word)]


def terms_text(words: Iterable[str]) -> str:
    """What the full-text index stores: at most MAX_TERMS words, space separated."""
    out: list[str] = []
    for word in words:
        out.append(word)
        if len(out) >= MAX_TERMS:
            break
    return " ".join(out)


def _camel_parts(word: str) -> list[str]:
    """``word`` cut where case or kind changes: "receiptLidl2" -> receipt Lidl 2, "HTMLPage" ->
    HTML Page, "Größe" stays whole (any script with case, not only ASCII)."""
    parts: list[str] = []
    start = 0
    for i in range(1, len(word)):
        before, char = word[i - 1], word[i]
        after = word[i + 1] if i + 1 < len(word) else ""
        if (
            before.isdigit() != char.isdigit()
            or (before.islower() and char.isupper())
            or (before.isupper() and char.isupper() and after.islower())
        ):
            parts.append(word[start:i])
            start = i
    parts.append(word[start:])
    return parts


def name_terms(name: str) -> list[str]:
    """Words of a file or folder name: separators, case changes and digits split it too
    ("IMG_2041_receipt-Lidl" -> img 2041 receipt lidl; "receiptLidl2" -> receiptlidl2 receipt lidl 2).
    A compound is kept before its parts, so that the query "receiptLidl" finds it as well as
    "receipt lidl" does."""
    out: list[str] = []
    for raw in _WORD.findall(name):
        whole = terms(raw)
        parts = [part for piece in _camel_parts(raw) for part in terms(piece)]
        out.extend(whole)
        if parts != whole:
            out.extend(parts)
    return out


def filename_terms(path: str) -> list[str]:
    """The file name's words, without its extension (every file has one; "jpg" finds nothing)."""
    stem, _ = os.path.splitext(os.path.basename(path))
    return name_terms(stem)


def folder_terms(path: str) -> list[str]:
    """The words of the folders a file lies in ("/photos/2021/Urlaub Ibiza/x.jpg" -> photos 2021
    urlaub ibiza)."""
    folder = os.path.dirname(path)
    return [word for part in folder.split(os.sep) if part for word in name_terms(part)]


_QUOTED = re.compile(r'"([^"]*)"')


def query_groups(query: str) -> list[list[str]]:
    """A user's query as groups of words, each group a phrase that must match as written: a
    ``"quoted phrase"`` is one group, and every other word one group of its terms (a hyphenated
    "receipt-lidl" or a run of Chinese characters is a phrase of its parts). Groups are ANDed by
    the caller. An unbalanced quote counts as a space: no input is an error."""
    groups: list[list[str]] = []
    rest: list[str] = []
    position = 0
    for match in _QUOTED.finditer(query):
        rest.append(query[position : match.start()])
        phrase = terms(match.group(1))
        if phrase:
            groups.append(phrase)
        position = match.end()
    rest.append(query[position:])
    for word in " ".join(rest).replace('"', " ").split():
        parts = terms(word)
        if parts:
            groups.append(parts)
    unique: dict[tuple[str, ...], list[str]] = {}
    for group in groups:
        unique.setdefault(tuple(group), group)
    return list(unique.values())


def clean_text(text: str) -> str:
    """Text any backend stores: no NUL (PostgreSQL refuses it) and no lone surrogates (an
    undecodable file name carries them; UTF-8 has none)."""
    return text.replace("\x00", " ").encode("utf-8", "replace").decode("utf-8")


def path_texts(path: str) -> list[tuple[str, str, str]]:
    """(source, text, terms) of the rows a file's path gives: its name and its folders' words."""
    rows = []
    for source, text, words in (
        (TEXT_FILENAME, os.path.basename(path), filename_terms(path)),
        (TEXT_PATH, os.path.dirname(path), folder_terms(path)),
    ):
        if words:
            rows.append((source, clean_text(text), terms_text(words)))
    return rows
