"""The ANN index through the commands users run: rebuild with another index type, search it, remove
images from it, and find its type, parameters and measured recall in `pixseek status`."""

from __future__ import annotations

import json
from pathlib import Path

from cli_runner import cli


def test_hnsw_rebuild_search_and_remove(cli_env: Path, photos: Path) -> None:
    cli("index", str(photos), "--json")
    exact = json.loads(cli("search", "a cat", "-k", "5", "--json"))
    assert json.loads(cli("status", "--json"))["collections"][0]["index_type"] == "flat"

    output = cli("reindex", "--rebuild", "--index-type", "hnsw", "--recall-target", "0.99")
    assert "HNSW32" in output and "measured recall@10" in output
    (status,) = json.loads(cli("status", "--json"))["collections"]
    assert status["index_type"] == "hnsw" and status["index_params"]["ef_search"] >= 16
    assert status["index_recall"] >= 0.99
    approximate = json.loads(cli("search", "a cat", "-k", "5", "--json"))
    assert [hit["id"] for hit in approximate] == [hit["id"] for hit in exact], "tiny: HNSW is exact here"

    # HNSW cannot remove vectors: removed images become tombstones and never come back.
    removed = Path(exact[0]["path"])
    cli("rm", str(removed))
    after = json.loads(cli("search", "a cat", "-k", "5", "--json"))
    assert exact[0]["id"] not in [hit["id"] for hit in after] and len(after) == 5
    manifest = json.loads((cli_env / "indexes" / "default" / "manifest.json").read_text())
    assert manifest["base"]["plan"]["kind"] == "hnsw"
    # `rm` keeps the file out of later runs; once let back in, indexing the folder again (the file
    # is still on disk) brings it back through the delta.
    cli("index", str(photos))
    paths = [hit["path"] for hit in json.loads(cli("search", "a cat", "-k", "50", "--json"))]
    assert removed.as_posix() not in paths
    cli("rm", "--undo", str(removed))
    cli("index", str(photos))
    again = json.loads(cli("search", "a cat", "-k", "5", "--json"))
    assert removed.as_posix() in [hit["path"] for hit in again]


def test_bad_index_options_are_one_line_errors(cli_env: Path, photos: Path) -> None:
    assert "'annoy' is not one of 'auto', 'flat'" in cli(
        "index", str(photos), "--index-type", "annoy", code=2
    )
    assert "not a size" in cli("index", str(photos), "--memory-budget", "lots", code=2)
