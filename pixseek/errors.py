"""Errors a user can act on: the CLI prints them as one line, the API maps them to 4xx."""


class PixseekError(RuntimeError):
    """Base of every error whose message is meant for the user, not a traceback."""


class NotFoundError(PixseekError):
    """A collection, image or path the request names does not exist."""


class ConflictError(PixseekError):
    """The request conflicts with the current state: a name already taken, a collection still
    building, the active collection deleted (the API answers 409)."""
