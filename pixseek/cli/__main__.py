"""``python -m pixseek.cli``: the ``pixseek`` command (tests and process managers run it so)."""

from pixseek.cli import main

main()
