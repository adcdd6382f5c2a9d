"""walk_images: finds images by content, ends on symlink loops, yields each file once, never crashes."""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path

import pytest
from PIL import Image

import hostile_files as hf
from pixseek.indexer.walker import FileEntry, walk_images


def _tiny_png() -> bytes:
    buf = io.BytesIO()
    Image.new("L", (1, 1)).save(buf, "PNG")
    return buf.getvalue()


PNG = _tiny_png()
needs_symlinks = pytest.mark.skipif(
    not hasattr(os, "symlink") or os.name == "nt", reason="needs POSIX symlinks"
)


def _write(root: Path, rel: str, data: bytes = PNG) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _rels(root: Path, **kwargs: object) -> list[str]:
    return [entry.path.relative_to(root).as_posix() for entry in walk_images([root], **kwargs)]  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("hostile")
    return root, hf.make_hostile_tree(root)


@needs_symlinks
@pytest.mark.timeout(30)  # a walker that follows loops must fail, not hang
def test_hostile_tree_yields_every_file_once(tree: tuple[Path, dict[str, str]]) -> None:
    root, expected = tree
    assert (root / hf.LOOP_LINK).is_symlink() and (root / hf.BROKEN_LINK).is_symlink()
    rels = _rels(root)
    assert len(rels) == len(set(rels))  # the loop nested/loop -> .. neither hangs nor duplicates
    assert set(rels) == set(expected)  # includes "photo" (no extension) and text.jpg (lying name)


def test_order_is_sorted_and_stable(tree: tuple[Path, dict[str, str]]) -> None:
    root, _ = tree
    rels = _rels(root)
    assert rels == sorted(rels, key=lambda rel: rel.split("/"))
    assert rels == _rels(root)


def test_entries_carry_absolute_path_size_and_mtime(tree: tuple[Path, dict[str, str]]) -> None:
    root, _ = tree
    for entry in walk_images([root]):
        assert isinstance(entry, FileEntry) and entry.path.is_absolute()
        st = entry.path.stat()
        assert (entry.size, entry.mtime_ns) == (st.st_size, st.st_mtime_ns)


def test_relative_roots_become_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(tmp_path, "a/b.png")
    monkeypatch.chdir(tmp_path)
    assert [entry.path for entry in walk_images([Path("a")])] == [tmp_path / "a" / "b.png"]


def test_content_decides_when_the_extension_does_not(tmp_path: Path) -> None:
    _write(tmp_path, "photo")  # PNG without extension: found
    _write(tmp_path, "renamed.txt")  # PNG named .txt: found
    _write(tmp_path, "notes.txt", b"not an image at all\n")
    _write(tmp_path, "README", b"hello")
    _write(tmp_path, "empty", b"")
    _write(tmp_path, "broken.JPG", b"text in a .JPG")  # image extension: yielded, the decoder reports it
    assert _rels(tmp_path) == ["broken.JPG", "photo", "renamed.txt"]


def test_hidden_files_and_folders(tmp_path: Path) -> None:
    _write(tmp_path, "seen.png")
    _write(tmp_path, ".hidden.png")
    _write(tmp_path, ".thumbs/a.png")
    _write(tmp_path, "album/.trash/b.png")
    assert _rels(tmp_path) == ["seen.png"]
    assert _rels(tmp_path, include_hidden=True) == [
        ".hidden.png",
        ".thumbs/a.png",
        "album/.trash/b.png",
        "seen.png",
    ]


def test_hidden_root_is_walked_when_asked_for(tmp_path: Path) -> None:
    _write(tmp_path, ".photos/a.png")
    assert [entry.path.name for entry in walk_images([tmp_path / ".photos"])] == ["a.png"]


def test_include_and_exclude(tmp_path: Path) -> None:
    for rel in [
        "a.jpg",
        "b.GIF",
        "thumbnails/t.jpg",
        "2020/c.png",
        "2020/thumbnails/t.jpg",
        "2020/@eaDir/x.jpg",
    ]:
        _write(tmp_path, rel)
    assert _rels(tmp_path, exclude=["*/thumbnails/*", "*.gif", "@eaDir"]) == ["2020/c.png", "a.jpg"]
    assert _rels(tmp_path, include=["*.png"]) == ["2020/c.png"]
    assert _rels(tmp_path, include=["2020/*"], exclude=["*.png"]) == [
        "2020/@eaDir/x.jpg",
        "2020/thumbnails/t.jpg",
    ]
    assert _rels(tmp_path, include=["*.JPG"], exclude=["thumbnails"]) == ["2020/@eaDir/x.jpg", "a.jpg"]


@needs_symlinks
@pytest.mark.timeout(30)  # a walker that follows loops must fail, not hang
def test_symlinked_folders_are_followed_once(tmp_path: Path) -> None:
    _write(tmp_path, "real/a.png")
    _write(tmp_path, "outside/b.png")
    (tmp_path / "lib").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "lib" / "alias")  # same folder twice
    os.symlink(tmp_path / "outside", tmp_path / "lib" / "external")
    os.symlink(tmp_path / "lib", tmp_path / "lib" / "self")  # loop
    os.symlink(tmp_path / "real" / "a.png", tmp_path / "lib" / "link.png")  # same file twice
    os.link(tmp_path / "outside" / "b.png", tmp_path / "lib" / "hardlink.png")
    assert _rels(tmp_path / "lib") == ["alias/a.png", "external/b.png"]


def test_overlapping_roots_yield_each_file_once(tmp_path: Path) -> None:
    _write(tmp_path, "2020/a.png")
    _write(tmp_path, "b.png")
    entries = list(walk_images([tmp_path / "2020", tmp_path, tmp_path / "2020" / "a.png"]))
    assert [entry.path for entry in entries] == [tmp_path / "2020" / "a.png", tmp_path / "b.png"]


@needs_symlinks
def test_symlinked_root_is_not_resolved(tmp_path: Path) -> None:
    _write(tmp_path, "real/a.png")
    os.symlink(tmp_path / "real", tmp_path / "link")
    assert [entry.path for entry in walk_images([tmp_path / "link"])] == [tmp_path / "link" / "a.png"]


@needs_symlinks
def test_broken_symlinks_are_skipped_and_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _write(tmp_path, "a.png")
    os.symlink(tmp_path / "gone.jpg", tmp_path / "dangling.jpg")
    os.symlink(tmp_path / "gone", tmp_path / "dangling_dir")
    with caplog.at_level(logging.DEBUG, logger="pixseek.indexer.walker"):
        assert _rels(tmp_path) == ["a.png"]
    assert "broken symlink" in caplog.text and "dangling.jpg" in caplog.text


def test_unreadable_folders_are_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _write(tmp_path, "a/ok.png")
    _write(tmp_path, "locked/secret.png")
    _write(tmp_path, "z.png")
    real_scandir = os.scandir

    def scandir(path: str) -> object:  # chmod 000 does not stop root, so refuse in software
        if os.path.basename(path) == "locked":
            raise PermissionError(13, "Permission denied", path)
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with caplog.at_level(logging.DEBUG, logger="pixseek.indexer.walker"):
        assert _rels(tmp_path) == ["a/ok.png", "z.png"]
    assert "locked" in caplog.text


def test_missing_root_fails_before_anything_is_yielded(tmp_path: Path) -> None:
    _write(tmp_path, "a.png")
    missing = tmp_path / "no such folder"
    with pytest.raises(FileNotFoundError, match="image root does not exist") as caught:
        walk_images([tmp_path, missing])  # raised at the call, not halfway through iteration
    assert str(missing) in str(caught.value)


def test_file_root(tmp_path: Path) -> None:
    image = _write(tmp_path, "one.png")
    _write(tmp_path, "two.png")
    assert [entry.path for entry in walk_images([image])] == [image]
    assert list(walk_images([_write(tmp_path, "notes.txt", b"hello")])) == []
    assert list(walk_images([image], exclude=["*.png"])) == []


def test_follow_symlinks_false_skips_links_out_of_the_root(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    Image.new("RGB", (8, 8)).save(outside / "secret.png")
    root = tmp_path / "root"
    root.mkdir()
    Image.new("RGB", (8, 8)).save(root / "own.png")
    (root / "link-dir").symlink_to(outside)
    (root / "link.png").symlink_to(outside / "secret.png")
    followed = {entry.path.name for entry in walk_images([root])}
    confined = {entry.path.name for entry in walk_images([root], follow_symlinks=False)}
    assert followed == {"own.png", "secret.png"}  # link-dir/secret.png; link.png is the same file
    assert confined == {"own.png"}


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
@pytest.mark.timeout(20)
def test_an_extensionless_file_swapped_for_a_fifo_does_not_hang_the_walk(tmp_path: Path) -> None:
    """The walk stats an extension-less file, then opens it to sniff its format: a FIFO swapped in
    between (simulated by passing the regular file's stat) must not block that open."""
    from pixseek.indexer.walker import _is_candidate

    export = tmp_path / "export"
    export.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 32)
    regular = export.stat()
    assert _is_candidate(str(export), export.name, regular)
    export.unlink()
    os.mkfifo(export)
    assert not _is_candidate(str(export), export.name, regular)
