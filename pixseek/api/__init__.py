"""REST API: FastAPI application over the library roots (``pixseek serve``)."""
