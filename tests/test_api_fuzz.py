"""Property-based fuzzing of the API from its own OpenAPI document, with every schemathesis check:
no request, however odd, may produce a 500, every response must match the documented schema,
schema-valid requests must be accepted and schema-violating ones refused.

The same checks from the command line, against a running server (README, Development)::

    SCHEMATHESIS_HOOKS=pixseek.testing.schemathesis_hooks \\
        schemathesis run --checks all http://127.0.0.1:8000/openapi.json
"""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import negative_data_rejection, positive_data_acceptance

import pixseek.testing.schemathesis_hooks  # noqa: F401  (uploads that are images, as the schema says)
from pixseek.api.app import create_app
from pixseek.api.config import ServerSettings


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory, clip_dir: Path, sample_photo_paths: list[Path]):
    import shutil

    photos = tmp_path_factory.mktemp("fuzz") / "photos"
    photos.mkdir()
    for source in sample_photo_paths[:8]:
        shutil.copy(source, photos / source.name)
    data = tmp_path_factory.mktemp("fuzz-data")
    app = create_app(
        ServerSettings(data_dir=data, model=str(clip_dir), device="cpu", batch_size=8, library_roots=[photos])
    )
    with TestClient(app) as client:  # runs the lifespan; index first so searches reach the model
        job = client.post("/index").json()
        while client.get(f"/jobs/{job['id']}").json()["state"] not in ("done", "failed"):
            pass
        yield schemathesis.openapi.from_asgi("/openapi.json", app)


def test_no_server_errors_and_responses_match_the_schema(api_schema) -> None:
    # Driven by hypothesis directly: schemathesis' own pytest plugin does not support pytest 9.
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 10

    @given(st.data())
    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
    def call(data: st.DataObject) -> None:
        operation = data.draw(st.sampled_from(operations))
        mode = data.draw(st.sampled_from([GenerationMode.POSITIVE, GenerationMode.NEGATIVE]))
        case = data.draw(operation.as_strategy(generation_mode=mode))
        response = case.call()
        excluded = _unsendable(case) + _depends_on_the_data(response)
        case.validate_response(response, excluded_checks=excluded)  # every check that can hold

    call()


# 400s for schema-valid requests whose fault lies in data no schema can know: a crop outside the
# size of the image it cuts, or terms whose vectors cancel out.
DATA_DEPENDENT = (
    "reaches outside",
    "holds no pixel",
    "cancel each other out",
    "embeds to a zero vector",
    # POST /collections: whether a schema-valid model name is a checkpoint on this machine
    "neither a folder here nor in the local cache",
    "no model folder at",
    "cannot load model",
    # POST /index with ocr: whether the ocr extra and a language's Debian data are installed here
    "needs the ocr extra",
    "language data for",
)


def _depends_on_the_data(response: schemathesis.Response) -> list:
    if response.status_code == 400 and any(reason in response.text for reason in DATA_DEPENDENT):
        return [positive_data_acceptance]
    return []


def _unsendable(case: schemathesis.Case) -> list:
    """A multipart form cannot carry what schemathesis' negative upload cases assume it sends: every
    part is text (a "string" ``k`` of digits is the integer it spells), an empty array is no part
    at all (indistinguishable from an absent ``filters``), and negating one branch of ``filters``'s
    anyOf can land on the other (null). Those cases are schema-violating only before they are
    serialised, so rejecting them is not checked for the upload; everything else is, and every
    check holds for every other operation and for positive uploads."""
    if case.operation.path == "/search/image" and case.meta.generation.mode == GenerationMode.NEGATIVE:
        return [negative_data_rejection]
    return []
