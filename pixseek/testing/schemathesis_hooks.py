"""Schemathesis hooks for the pixseek API: uploads that are images, as the OpenAPI document says.

``POST /search/image`` declares its ``file`` part as an image (``encoding: contentType:
image/jpeg, image/png, ...``), and a part that is not one gets 400. Schemathesis fills a binary
part with arbitrary bytes unless a strategy is registered for its media type; importing this
module registers small real PNG and JPEG files, so schema-valid uploads are images and the
``positive_data_acceptance`` check holds the server to accepting them. Negative cases still get
arbitrary bytes. Used by tests/test_api_fuzz.py, and by the command line::

    SCHEMATHESIS_HOOKS=pixseek.testing.schemathesis_hooks schemathesis run --checks all URL/openapi.json
"""

from __future__ import annotations

import io

import schemathesis
from hypothesis import strategies as st
from PIL import Image


@st.composite
def image_files(draw: st.DrawFn, image_format: str) -> bytes:
    """An image file of ``image_format``: a few pixels to a few dozen per side, grey or colour."""
    size = (draw(st.integers(1, 48)), draw(st.integers(1, 48)))
    mode = draw(st.sampled_from(["RGB", "L"]))
    colour = draw(st.integers(0, 255)) if mode == "L" else tuple(draw(st.integers(0, 255)) for _ in "rgb")
    buffer = io.BytesIO()
    Image.new(mode, size, colour).save(buffer, image_format)
    return buffer.getvalue()


schemathesis.openapi.media_type("image/png", image_files("PNG"))
schemathesis.openapi.media_type("image/jpeg", image_files("JPEG"))
