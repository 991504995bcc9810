"""``python -m attestpolicy``: the same as the ``attestpolicy`` command."""

import sys

from attestpolicy.cli import main

sys.exit(main())
