"""Library roots: the only folders the server indexes or serves files from.

Every path a client names is relative to a root ("ROOT_NAME/sub/dir") and must still lie inside
that root after resolving symlinks, so ``..``, absolute paths, encoded slashes and symlinks that
point out of a root are all refused the same way.
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath

from pixseek.errors import NotFoundError, PixseekError

SERVER_PATH = "<server path>"
# An absolute path in a message: a "/" that starts a token (not "a/b", "HTTP/1.1" or "sqlite:///x").
_ABSOLUTE_PATH = re.compile(r"(?<![\w.~:/-])/[^\s'\",;:()\[\]{}<>|]+")
_PATH_END = r"(?=[/\s'\",;:()\[\]{}<>|]|$)"


class PathRefusedError(PixseekError):
    """A client-supplied path that is not inside a configured library root."""


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


class LibraryRoots:
    def __init__(self, paths: list[Path]):
        self.by_name: dict[str, str] = {}
        for path in paths:
            real = os.path.realpath(path)
            if not os.path.isdir(real):
                raise NotFoundError(f"library root {path} is not a folder")
            name, n = Path(real).name or "root", 1
            while name in self.by_name:  # two roots called "photos" become photos and photos-2
                n += 1
                name = f"{Path(real).name}-{n}"
            self.by_name[name] = real

    def __bool__(self) -> bool:
        return bool(self.by_name)

    @property
    def paths(self) -> list[str]:
        return list(self.by_name.values())

    def resolve(self, user_path: str) -> str:
        """'ROOT_NAME/sub/dir' -> the absolute path inside that root, or PathRefusedError."""
        if "\\" in user_path or "\x00" in user_path:
            raise PathRefusedError("invalid characters in path")
        parts = PurePosixPath(user_path).parts
        if not parts or PurePosixPath(user_path).is_absolute() or ".." in parts:
            raise PathRefusedError(
                f"path must be ROOT_NAME/relative/path inside a library root: {user_path!r}"
            )
        root = self.by_name.get(parts[0])
        if root is None:
            raise PathRefusedError(f"no library root named {parts[0]!r} (roots: {', '.join(self.by_name)})")
        try:
            resolved = os.path.realpath(os.path.join(root, *parts[1:]))
        except OSError:  # a symlink on the path changed while it was resolved (readlink: EINVAL)
            raise PathRefusedError(f"{user_path!r} changed while it was resolved; try again") from None
        if not _inside(resolved, root):
            raise PathRefusedError(f"{user_path!r} leads out of its library root")
        return resolved

    def existing(self, user_path: str) -> str:
        """:meth:`resolve` for a path that must exist now: NotFoundError names it as the client
        wrote it, so a job is never started to fail on it (with the server's path in its error)."""
        resolved = self.resolve(user_path)
        if not os.path.exists(resolved):
            raise NotFoundError(f"no file or folder {user_path!r} in the library")
        return resolved

    def redact(self, message: str) -> str:
        """``message`` (an error, a job's reason) with each path inside a root written as
        'ROOT_NAME/...' and any other absolute path as '<server path>': clients never see server paths."""
        for name, root in sorted(self.by_name.items(), key=lambda item: -len(item[1])):
            if root != os.sep:
                message = re.sub(re.escape(root) + _PATH_END, name.replace("\\", r"\\"), message)
        return _ABSOLUTE_PATH.sub(SERVER_PATH, message)

    def display(self, absolute_path: str) -> str:
        """'ROOT_NAME/sub/dir' for a path inside a root: clients never see server paths."""
        located = self.locate(absolute_path)
        if located is None:
            return absolute_path
        root, relative = located
        return root if relative == "." else f"{root}/{relative}"

    def locate(self, absolute_path: str) -> tuple[str, str] | None:
        """(root name, path relative to it) for a stored path whose real location is inside a root.

        None as well when the path cannot be resolved right now: realpath raises (EINVAL) when a
        symlink on it is swapped for a file between its lstat and its readlink.
        """
        try:
            real = os.path.realpath(absolute_path)
        except OSError:
            return None
        for name, root in self.by_name.items():
            if _inside(absolute_path, root) and _inside(real, root):
                return name, os.path.relpath(absolute_path, root)
        return None
