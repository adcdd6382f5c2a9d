"""Indexing: find image files, decode them safely, embed them and keep the store in step."""
