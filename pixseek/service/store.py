"""Opening the store the settings name, after checking what a user can fix.

The default SQLite file lives in the data directory: an unwritable one is a setting to fix (one
line naming ``--data-dir``), not a traceback from deep in SQLite.
"""

from __future__ import annotations

import os

from pixseek.config import Settings
from pixseek.errors import PixseekError
from pixseek.store.repository import Store


def open_store(settings: Settings) -> Store:
    if not settings.database_url:
        _writable_data_dir(settings)
    return Store.open(settings.resolved_database_url)


def _writable_data_dir(settings: Settings) -> None:
    folder = settings.data_dir
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise PixseekError(
            f"cannot create the data directory {folder}: {error.strerror or error}; choose another "
            "with --data-dir or PIXSEEK_DATA_DIR"
        ) from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise PixseekError(
            f"the data directory {folder} is not writable; choose another with --data-dir or PIXSEEK_DATA_DIR"
        )
