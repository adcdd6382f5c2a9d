"""Find the candidate image files under the folders a user asked to index.

Real photo libraries contain symlink loops, hard-linked duplicates, unreadable folders and files
whose extension lies. The walk must end, yield each file once, and never stop on one bad entry.
"""

from __future__ import annotations

import errno
import fnmatch
import logging
import os
import re
import stat
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from pixseek.errors import PixseekError
from pixseek.media.prechecks import sniff_format

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".gif", ".webp", ".tif", ".tiff", ".bmp", ".heic", ".heif", ".avif"}
)
SNIFF_BYTES = 32


# Told about each folder or file the walk could not read: (path, reason). The walk goes on.
UnreadableCallback = Callable[[str, str], None]


@dataclass(frozen=True)
class FileEntry:
    path: Path  # absolute but not symlink-resolved: the path the user knows the photo by
    size: int
    mtime_ns: int


def walk_images(
    roots: Sequence[Path],
    *,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    include_hidden: bool = False,
    follow_symlinks: bool = True,
    skip: Collection[str] = (),
    on_unreadable: UnreadableCallback | None = None,
) -> Iterator[FileEntry]:
    """Yield image files under ``roots`` (files or folders) in a stable, sorted order.

    ``skip``: absolute paths (files or folders) passed over exactly, whatever the patterns: what
    ``pixseek rm`` keeps out of a collection. ``on_unreadable`` hears of every folder that cannot
    be listed (permissions, I/O errors), so that a run can report it instead of silently missing
    its images.

    ``follow_symlinks=False`` skips every symlink below a root: a server confined to its library
    roots must not be led outside them by a link.

    Patterns are fnmatch globs, matched case-insensitively (cameras write ".JPG") against the path
    relative to its root with "/" separators, the same with a leading "/" (so "*/thumbs/*" also
    hits a top-level "thumbs" folder), and the bare name. An ``exclude`` that matches a folder
    prunes it. Roots are checked before anything is yielded, so a typo fails fast instead of
    after half an index run.
    """
    checked: list[tuple[Path, os.stat_result]] = []
    for root in roots:
        absolute = Path(os.path.abspath(root))
        try:
            checked.append((absolute, absolute.stat()))
        except FileNotFoundError:
            raise FileNotFoundError(errno.ENOENT, f"image root does not exist: {root}", str(root)) from None
    return _walk(
        checked,
        _compile(include),
        _compile(exclude),
        include_hidden,
        follow_symlinks,
        frozenset(skip),
        on_unreadable or _log_unreadable,
    )


def _log_unreadable(path: str, reason: str) -> None:
    log.debug("skipping unreadable %s: %s", path, reason)


def _compile(patterns: Sequence[str]) -> re.Pattern[str] | None:
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns), re.IGNORECASE)


def _matches(pattern: re.Pattern[str] | None, rel: str, name: str, is_dir: bool = False) -> bool:
    if pattern is None:
        return False
    anchored = f"/{rel}/" if is_dir else f"/{rel}"
    return any(pattern.match(candidate) for candidate in (rel, anchored, name))


def _walk(
    roots: list[tuple[Path, os.stat_result]],
    include: re.Pattern[str] | None,
    exclude: re.Pattern[str] | None,
    include_hidden: bool,
    follow_symlinks: bool,
    skip: frozenset[str],
    on_unreadable: UnreadableCallback,
) -> Iterator[FileEntry]:
    seen_dirs: set[tuple[int, int]] = set()
    seen_files: set[tuple[int, int]] = set()

    def wanted_file(path: str, rel: str, name: str, st: os.stat_result) -> FileEntry | None:
        if include is not None and not _matches(include, rel, name):
            return None
        if _matches(exclude, rel, name):
            return None
        if not _is_candidate(path, name, st):
            return None
        key = (st.st_dev, st.st_ino)
        if st.st_ino:  # filesystems without inode numbers report 0: cannot dedupe there
            if key in seen_files:
                log.debug("skipping %s: same file already yielded (link)", path)
                return None
            seen_files.add(key)
        return FileEntry(Path(path), st.st_size, st.st_mtime_ns)

    for root, root_st in roots:
        if stat.S_ISREG(root_st.st_mode):
            single = wanted_file(str(root), root.name, root.name, root_st)
            if single is not None:
                yield single
            continue
        if not stat.S_ISDIR(root_st.st_mode):
            log.warning("skipping root %s: neither a regular file nor a folder", root)
            continue
        seen_dirs.add((root_st.st_dev, root_st.st_ino))
        # Depth-first over an explicit stack of sorted listings: deep trees cannot hit the
        # recursion limit, and the order equals sorting paths by their components.
        stack = [(iter(_sorted_entries(str(root), on_unreadable)), "")]
        while stack:
            entries, prefix = stack[-1]
            entry = next(entries, None)
            if entry is None:
                stack.pop()
                continue
            name = entry.name
            if name.startswith(".") and not include_hidden:
                continue
            if not follow_symlinks and entry.is_symlink():
                log.debug("skipping symlink %s", entry.path)
                continue
            if entry.path in skip:
                log.debug("skipping %s: removed from the collection (pixseek rm)", entry.path)
                continue
            rel = prefix + name
            try:
                st = _stat(entry)
            except OSError as exc:
                kind = "broken symlink" if os.path.islink(entry.path) else "unreadable entry"
                log.debug("skipping %s %s: %s", kind, entry.path, exc)
                continue
            if stat.S_ISDIR(st.st_mode):
                key = (st.st_dev, st.st_ino)
                if key in seen_dirs:
                    log.debug("skipping %s: folder already walked (symlink loop or alias)", entry.path)
                elif _matches(exclude, rel, name, is_dir=True):
                    log.debug("skipping %s: excluded", entry.path)
                else:
                    seen_dirs.add(key)
                    stack.append((iter(_sorted_entries(entry.path, on_unreadable)), rel + "/"))
            elif stat.S_ISREG(st.st_mode):
                found = wanted_file(entry.path, rel, name, st)
                if found is not None:
                    yield found
            else:
                log.debug("skipping %s: not a regular file", entry.path)


def _sorted_entries(path: str, on_unreadable: UnreadableCallback) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(path) as it:
            return sorted(it, key=lambda entry: entry.name)
    except OSError as exc:
        on_unreadable(path, f"unreadable folder: {exc.strerror or exc}")
        return []


def _stat(entry: os.DirEntry[str]) -> os.stat_result:
    """Stat through symlinks; on Windows DirEntry.stat() leaves st_ino 0, so ask the OS properly."""
    st = entry.stat()
    return st if st.st_ino else os.stat(entry.path)


def _is_candidate(path: str, name: str, st: os.stat_result) -> bool:
    """Trust an image extension; otherwise let the first bytes decide (extension-less exports)."""
    if os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
        return True
    if st.st_size == 0:
        return False
    try:
        # Non-blocking, then checked on the descriptor: a FIFO swapped in since the listing would
        # block a plain open (and the walk) until a writer comes.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
        try:
            head = os.read(fd, SNIFF_BYTES) if stat.S_ISREG(os.fstat(fd).st_mode) else b""
        finally:
            os.close(fd)
    except OSError as exc:
        log.debug("skipping unreadable file %s: %s", path, exc)
        return False
    return sniff_format(head) is not None


def is_under(path: str, folder: str) -> bool:
    """``path`` is ``folder`` or lies below it (not a sibling sharing a name prefix)."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def refuse_excluded(roots: Sequence[Path | str], excluded: Sequence[str], collection: str) -> None:
    """Indexing a path that ``pixseek rm`` keeps out asks for two opposite things: say how to choose."""
    for root in (os.path.abspath(root) for root in roots):
        inside = next((path for path in excluded if is_under(root, path)), None)
        if inside is not None:
            raise PixseekError(
                f"{root} was removed from collection {collection!r} with `pixseek rm` and is kept out; "
                f"to index it again, first run: pixseek rm --undo {inside}"
            )


class PathRules:
    """The include/exclude/hidden rules of :func:`walk_images`, for judging one path without a walk.

    A folder watcher hears about single paths and must skip exactly what a walk of their root
    would skip: patterns match the path relative to that root, and anything inside a hidden or
    excluded folder is skipped like the folder itself.
    """

    def __init__(
        self, include: Sequence[str] = (), exclude: Sequence[str] = (), include_hidden: bool = False
    ):
        self.include = _compile(include)
        self.exclude = _compile(exclude)
        self.include_hidden = include_hidden

    def skips(self, rel: str, *, is_dir: bool) -> bool:
        """Whether a walk of the root would pass over ``rel`` ("/"-separated, relative to the root)."""
        parts = rel.split("/")
        for depth, name in enumerate(parts):
            if name.startswith(".") and not self.include_hidden:
                return True
            sub = "/".join(parts[: depth + 1])
            if depth < len(parts) - 1 or is_dir:
                if _matches(self.exclude, sub, name, is_dir=True):
                    return True
            elif (self.include is not None and not _matches(self.include, sub, name)) or _matches(
                self.exclude, sub, name
            ):
                return True
        return False
