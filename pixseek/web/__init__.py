"""The search page, static HTML/CSS/JS served by the API at ``/``."""
