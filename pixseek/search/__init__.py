"""Search: embed a query, find candidates in FAISS, return hits with their metadata."""
