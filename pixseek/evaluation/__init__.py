"""Retrieval evaluation (issue 6): metrics first; the `pixseek eval` command builds on them."""
