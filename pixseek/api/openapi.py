"""What the OpenAPI document says about this server in particular, so that it promises no more
than the server accepts (schemathesis' positive_data_acceptance holds it to that).

The models in schemas.py describe every pixseek server; a given one offers only the re-rankers
it loaded (``serve --rerank``) and the thumbnail sizes it is configured with, reads the upload's
``filters`` part as JSON and its ``file`` part as an image. FastAPI generates the document from
the models and handlers; these functions narrow it once, when it is first asked for.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI

# Formats every Pillow build reads (HEIF and AVIF need plugins: accepted when present, not promised).
UPLOAD_MEDIA_TYPES = ("image/jpeg", "image/png", "image/webp", "image/gif", "image/tiff", "image/bmp")


def describe_this_server(app: FastAPI, rerankers: Sequence[str], thumbnail_sizes: Sequence[int]) -> None:
    """Make ``app.openapi()`` return the document narrowed to this server's choices."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()  # caches it in app.openapi_schema, which is narrowed in place
            _offer_rerankers(schema["components"]["schemas"]["SearchRequest"], rerankers)
            _describe_upload(schema, schema["paths"]["/search/image"]["post"]["requestBody"])
            _offer_sizes(schema["paths"]["/images/{image_id}/thumbnail"]["get"], thumbnail_sizes)
            return schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def offered_reranks(rerankers: Sequence[str]) -> list[str]:
    """The ``rerank`` values this server accepts: 'none', each loaded re-ranker, 'both' for two."""
    choices = ["none", *rerankers]
    if {"bridgetower", "blip2"} <= set(rerankers):
        choices.append("both")
    return choices


def _offer_rerankers(request: dict[str, Any], rerankers: Sequence[str]) -> None:
    """Only loaded re-rankers are accepted (others get 400); without any, no request can use
    ``min_score``, which applies to re-ranking probabilities, so it is not offered either."""
    properties = request["properties"]
    properties["rerank"]["anyOf"][0]["enum"] = offered_reranks(rerankers)
    if not rerankers:
        properties.pop("min_score", None)
        properties["rerank"]["description"] += ". This server loaded none (pixseek serve --rerank ...)"


def _offer_sizes(operation: dict[str, Any], sizes: Sequence[int]) -> None:
    """The thumbnail ``size`` takes only the configured sizes (others get 400)."""
    size = next(parameter for parameter in operation["parameters"] if parameter["name"] == "size")
    size["schema"]["enum"] = list(sizes)


def _describe_upload(schema: dict[str, Any], request_body: dict[str, Any]) -> None:
    """``file`` must be an image (anything else gets 400: not a usable image); ``filters`` and
    ``terms`` are POST /search's sent as JSON parts, ``crop`` a CropBox as JSON (each or null)."""
    form = request_body["content"]["multipart/form-data"]
    body_name = form["schema"]["$ref"].rsplit("/", 1)[-1]
    body = schema["components"]["schemas"][body_name]
    body["additionalProperties"] = False  # other parts get 422 (routers/search.only_upload_fields)
    properties = body["properties"]
    properties["filters"] = {
        "anyOf": [{"$ref": "#/components/schemas/Filters"}, {"type": "null"}],
        "description": "Filters as in POST /search, as a JSON part",
    }
    terms = schema["components"]["schemas"]["SearchRequest"]["properties"]["terms"]
    properties["terms"] = {
        "anyOf": [{key: value for key, value in terms.items() if key != "default"}, {"type": "null"}],
        "description": "More terms as in POST /search (the upload is the first term), as a JSON part",
    }
    # A form part is text: "null" names no cutoff or mode. Leave the part out for the default.
    for part in ("cutoff", "mode"):
        properties[part]["anyOf"] = [b for b in properties[part]["anyOf"] if b.get("type") != "null"]
    properties["crop"] = {
        "anyOf": [{"$ref": "#/components/schemas/CropBox"}, {"type": "null"}],
        "description": "Search by this region of the upload, as a JSON part",
    }
    form["encoding"] = {
        "file": {"contentType": ", ".join(UPLOAD_MEDIA_TYPES)},
        **{part: {"contentType": "application/json"} for part in ("filters", "terms", "crop")},
    }
