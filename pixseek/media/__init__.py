"""Image files as hostile input: safe reading, format sniffing, decoding and content hashing.

One package, used by the indexer, search, re-ranking, training and evaluation alike, so that every
path from a file (or an upload) to pixels applies the same limits and gives the same short reasons.
"""
