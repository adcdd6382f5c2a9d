"""Past one machine with Ray: distributed indexing (Ray Data actors) and sharded search (Ray actors).

Ray is an optional extra (``pip install 'pixseek[ray]'``). Nothing in this package imports it at
module level, so importing pixseek, or this package, works without it; :func:`require_ray` turns a
missing install into a one-line error with the fix.
"""

from __future__ import annotations

from types import ModuleType

from pixseek.errors import PixseekError

RAY_INSTALL_HINT = "pip install 'pixseek[ray]'"


class RayUnavailableError(PixseekError):
    """Ray (with Ray Data) is not installed in this environment."""


def require_ray() -> ModuleType:
    """Import and return ``ray`` (with ``ray.data`` loaded), or raise a one-line error naming the fix."""
    try:
        import ray
        import ray.data  # the indexer needs Ray Data, not only Ray core
    except ImportError:
        raise RayUnavailableError(f"Ray is not installed; install it with: {RAY_INSTALL_HINT}") from None
    return ray


def connect(address: str | None = None, **init_options) -> ModuleType:
    """Join the Ray cluster at ``address`` (``auto``, ``host:6379``, ``ray://host:10001``), or start a
    local one when ``address`` is None; a no-op when this process is already connected (tests, notebooks)."""
    ray = require_ray()
    if not ray.is_initialized():
        if address:  # a cluster's own settings (resources, dashboard) are not ours to pass
            ray.init(address=address, logging_level="WARNING", **init_options)
        else:
            ray.init(include_dashboard=False, logging_level="WARNING", **init_options)
    return ray
