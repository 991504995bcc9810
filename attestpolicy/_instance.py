"""This process's instance labels, as OPA sets them: one ``id`` (a UUID made once per
process) and the ``version``, shared by the status document and the decision logs."""

from __future__ import annotations

import uuid
from typing import Final

__all__ = ["INSTANCE_ID", "instance_labels"]

INSTANCE_ID: Final = str(uuid.uuid4())
"""This process's instance id (OPA's ``labels.id``)."""


def instance_labels() -> dict[str, str]:
    """``{"id": INSTANCE_ID, "version": <attestpolicy version>}``."""
    from attestpolicy import __version__

    return {"id": INSTANCE_ID, "version": __version__}
