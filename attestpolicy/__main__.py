"""``python -m attestpolicy``: the same as the ``attestpolicy`` command."""

from attestpolicy.cli import run

run()
