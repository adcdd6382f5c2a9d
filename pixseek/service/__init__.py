"""The parts the service facade, :class:`pixseek.library.Library`, is built from.

Front ends (the CLI, the API, the watcher, evaluation) call ``Library`` and import its result types
from ``pixseek.library``; these modules hold what the facade delegates to, one job each: the
collection's folders and exclusions, its status, its vector index, re-ranking, the search flow's
steps, and the caches a long-running server shares between requests.
"""
