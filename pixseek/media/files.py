"""Open and read image files as hostile input: one open, checked on the descriptor it returns.

Checking a path and then opening it again by name is a race: between the two, a file inside a library
root can be swapped for a symlink to ``/etc/passwd``, a FIFO (whose read blocks forever) or a device.
So every read here opens the file once, checks what that descriptor is (``fstat``: a regular file,
not too large) and reads from the same descriptor. A :class:`FileOpener` confined to roots also
refuses every symlink below a root, component by component (``O_NOFOLLOW`` relative to the parent
folder's descriptor), so a link swapped in after a walk or a check is never followed either.
"""

from __future__ import annotations

import errno
import io
import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType

from pixseek.media.errors import DecodeError
from pixseek.media.prechecks import check_head

# The largest file read into memory to decode. A 150 MP TIFF or PNG stays well below it; a sparse
# or padded multi-GB ".jpg" would otherwise be read whole (2 GB of RAM per file, per worker).
DEFAULT_MAX_FILE_BYTES = 256 * 1024 * 1024
HEAD_BYTES = 512  # enough to sniff the format and to tell text from binary

_READ = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0) | getattr(os, "O_NOCTTY", 0)
# O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever. It changes
# nothing for regular files, the only kind that is read after the fstat check.
_FILE_FLAGS = _READ | getattr(os, "O_NONBLOCK", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
# Descriptor-relative, no-follow opens need POSIX; elsewhere confinement falls back to a path check.
CONFINED_OPEN_SUPPORTED = bool(_NOFOLLOW and _DIRECTORY) and os.open in os.supports_dir_fd


class UnsafeFileError(DecodeError):
    """A path that is not a regular file reached without symlinks below its root: never read."""


def format_size(n_bytes: int) -> str:
    """'256 MB' for a limit in whole MiB, else the exact number of bytes."""
    mib, rest = divmod(n_bytes, 2**20)
    return f"{mib} MB" if mib and not rest else f"{n_bytes} bytes"


class OpenFile:
    """A regular file opened once; ``stat`` is its ``fstat``. Close it (or use ``with``)."""

    def __init__(self, fd: int, path: str) -> None:
        self.file = io.FileIO(fd, "rb", closefd=True)  # closes the descriptor when collected, too
        try:
            self.stat = os.fstat(fd)
        except BaseException:
            self.file.close()
            raise
        if not stat.S_ISREG(self.stat.st_mode):
            self.file.close()
            raise UnsafeFileError("not a regular file")
        self.path = path

    def __enter__(self) -> OpenFile:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self.file.close()

    def read_image_bytes(self, max_bytes: int) -> bytes:
        """The whole file, unless its first bytes show it is no image or it is over ``max_bytes``.

        The size comes from ``fstat`` and the read stops one byte past the limit, so a file that
        grows while it is read cannot push the read past it either. DecodeError gives the reason.
        """
        too_large = DecodeError(f"file larger than the {format_size(max_bytes)} limit")
        if self.stat.st_size > max_bytes:
            raise too_large
        fd = self.file.fileno()
        check_head(_read_up_to(fd, HEAD_BYTES))  # a renamed text or video file is not read whole
        os.lseek(fd, 0, os.SEEK_SET)
        data = _read_up_to(fd, self.stat.st_size + 1)
        if len(data) > self.stat.st_size:  # it grew since fstat: read on, in steps, up to the limit
            data += _read_up_to(fd, max_bytes + 1 - len(data), step=2**20)
            if len(data) > max_bytes:
                raise too_large
        return data


def _read_up_to(fd: int, n_bytes: int, step: int | None = None) -> bytes:
    """Up to ``n_bytes`` from the current position: fewer only at the end of the file. One
    allocation of the final size in the usual case (one ``read`` returns everything)."""
    chunks = []
    remaining = n_bytes
    while remaining > 0:
        chunk = os.read(fd, min(remaining, step or remaining))
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


@dataclass(frozen=True)
class FileOpener:
    """How image files are opened: anywhere, following symlinks (``roots`` None: the CLI's rules),
    or only beneath ``roots`` without following any symlink below them (a server's library roots,
    or an indexing run told not to follow symlinks). The roots themselves are trusted as given.
    """

    roots: tuple[str, ...] | None = None
    max_bytes: int = DEFAULT_MAX_FILE_BYTES

    def __post_init__(self) -> None:
        if self.max_bytes < 1:
            raise ValueError(f"max_bytes must be >= 1, got {self.max_bytes}")
        if self.roots is not None:
            cleaned = tuple(os.path.normpath(os.path.abspath(root)) for root in self.roots)
            object.__setattr__(self, "roots", tuple(sorted(cleaned, key=len, reverse=True)))

    def beneath(self, roots: Iterable[str | os.PathLike[str]]) -> FileOpener:
        """The same limits, confined to ``roots``."""
        return FileOpener(tuple(os.fspath(root) for root in roots), self.max_bytes)

    @property
    def confined(self) -> bool:
        return self.roots is not None

    def open(self, path: str | os.PathLike[str]) -> OpenFile:
        """Open a regular file; FileNotFoundError if it is gone, UnsafeFileError if it is a symlink
        (when confined), below one, outside the roots, or not a regular file (FIFO, device,
        folder), any other OSError as the OS reports it."""
        text = os.fspath(path)
        if self.roots is None:
            return OpenFile(os.open(text, _FILE_FLAGS), text)
        root, parts = self._beneath_root(text)
        if not parts:  # the root itself is the file: trusted as given, like a folder root
            return OpenFile(os.open(root, _FILE_FLAGS), text)
        if not CONFINED_OPEN_SUPPORTED:
            return self._open_checked(text, root)
        return OpenFile(_open_without_symlinks(root, parts), text)

    def read(self, path: str | os.PathLike[str]) -> bytes:
        """The bytes of an image file, by the rules of :meth:`open` and
        :meth:`OpenFile.read_image_bytes`."""
        with self.open(path) as opened:
            return opened.read_image_bytes(self.max_bytes)

    def _beneath_root(self, path: str) -> tuple[str, Sequence[str]]:
        absolute = os.path.normpath(os.path.abspath(path))
        for root in self.roots or ():
            if absolute == root:
                return root, ()
            if absolute.startswith(root.rstrip(os.sep) + os.sep):
                return root, absolute[len(root.rstrip(os.sep)) + 1 :].split(os.sep)
        raise UnsafeFileError("outside the library roots")

    def _open_checked(self, path: str, root: str) -> OpenFile:
        """Best effort where descriptor-relative opens are missing (Windows): check, then open."""
        real_root = os.path.realpath(root)
        if os.path.islink(path) or not os.path.realpath(path).startswith(real_root.rstrip(os.sep) + os.sep):
            raise UnsafeFileError("symlink in path (not followed)")
        return OpenFile(os.open(path, _FILE_FLAGS), path)


def _open_without_symlinks(root: str, parts: Sequence[str]) -> int:
    """Walk from the root's descriptor one component at a time, each opened with O_NOFOLLOW: a
    symlink anywhere below the root (even one swapped in a microsecond ago) fails the open."""
    if any(part in ("", ".", "..") for part in parts):
        raise UnsafeFileError("outside the library roots")
    folder = os.open(root, _READ | _DIRECTORY)
    try:
        for name in parts[:-1]:
            try:
                inner = os.open(name, _READ | _DIRECTORY | _NOFOLLOW, dir_fd=folder)
            except OSError as error:
                _refuse_link(error, "a folder on the path is a symlink or not a folder")
                raise
            os.close(folder)
            folder = inner
        try:
            return os.open(parts[-1], _FILE_FLAGS | _NOFOLLOW, dir_fd=folder)
        except OSError as error:
            _refuse_link(error, "symlink (not followed)")
            raise
    finally:
        os.close(folder)


def _refuse_link(error: OSError, reason: str) -> None:
    """O_NOFOLLOW on a symlink fails with ELOOP (EMLINK on FreeBSD, EFTYPE on NetBSD); O_DIRECTORY
    on a file with ENOTDIR. Those mean "not what the walk saw", not a broken disk."""
    refused = {errno.ELOOP, errno.ENOTDIR, errno.EMLINK, getattr(errno, "EFTYPE", errno.ELOOP)}
    if error.errno in refused:
        raise UnsafeFileError(reason) from None
