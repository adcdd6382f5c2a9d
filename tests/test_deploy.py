"""docker-compose.yml and the serve command agree (no Docker engine here to run them)."""

from __future__ import annotations

from pathlib import Path

import yaml
from typer.testing import CliRunner

from pixseek.cli import app

ROOT = Path(__file__).resolve().parent.parent


def test_compose_file_describes_api_and_postgres() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    api, db = compose["services"]["api"], compose["services"]["db"]
    assert db["image"].startswith("postgres:")
    assert api["environment"]["PIXSEEK_DATABASE_URL"].startswith("postgresql+psycopg://")
    library_mount = next(v for v in api["volumes"] if v.endswith(":/library:ro"))
    assert library_mount.startswith("${PIXSEEK_LIBRARY")
    assert any(v.startswith("data:") for v in api["volumes"]) and "data" in compose["volumes"]
    assert api["depends_on"]["db"]["condition"] == "service_healthy"
    assert (ROOT / api["build"] / "Dockerfile").is_file()
    # Every flag the compose command passes exists in `pixseek serve`.
    help_text = CliRunner().invoke(app, ["serve", "--help"]).output
    for flag in (part for part in api["command"] if part.startswith("--")):
        assert flag in help_text, flag


def test_serve_refuses_a_public_address_without_a_key(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["--data-dir", str(tmp_path), "serve", "--host", "0.0.0.0"])
    assert result.exit_code == 2 and "without an API key" in result.output
