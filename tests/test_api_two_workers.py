"""The API suite again, in the mode `pixseek serve --workers 2` runs each process in: jobs through
the shared job files, the writer elected by the file lock, readers following the change log. One
process here, so it is always the writer; tests/test_serve_workers.py runs two real processes,
kills the writer and checks that a reader sees its writes within a second."""

from __future__ import annotations

import functools
from collections.abc import Iterator

import pytest
import test_api
from fastapi.testclient import TestClient
from test_api import *  # noqa: F403  (every API test, run against the fixtures below)

from api_client import wait_for_job
from pixseek.api.app import create_app
from pixseek.api.config import ServerSettings

two_workers_app = functools.partial(create_app, workers=2)


@pytest.fixture(autouse=True)
def _apps_in_worker_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(test_api, "create_app", two_workers_app)


@pytest.fixture
def client(server_settings: ServerSettings) -> Iterator[TestClient]:
    with TestClient(two_workers_app(server_settings)) as client:
        assert wait_for_job(client, client.post("/index").json()["id"])["state"] == "done"
        yield client
