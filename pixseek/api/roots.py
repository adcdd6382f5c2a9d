"""Library roots: the only folders the server indexes or serves files from.

Every path a client names is relative to a root ("ROOT_NAME/sub/dir") and must still lie inside
that root after resolving symlinks, so ``..``, absolute paths, encoded slashes and symlinks that
point out of a root are all refused the same way.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from pixseek.errors import NotFoundError, PixseekError


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
        resolved = os.path.realpath(os.path.join(root, *parts[1:]))
        if not _inside(resolved, root):
            raise PathRefusedError(f"{user_path!r} leads out of its library root")
        return resolved

    def display(self, absolute_path: str) -> str:
        """'ROOT_NAME/sub/dir' for a path inside a root: clients never see server paths."""
        located = self.locate(absolute_path)
        if located is None:
            return absolute_path
        root, relative = located
        return root if relative == "." else f"{root}/{relative}"

    def locate(self, absolute_path: str) -> tuple[str, str] | None:
        """(root name, path relative to it) for a stored path whose real location is inside a root."""
        real = os.path.realpath(absolute_path)
        for name, root in self.by_name.items():
            if _inside(absolute_path, root) and _inside(real, root):
                return name, os.path.relpath(absolute_path, root)
        return None
