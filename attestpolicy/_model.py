"""The one pydantic base of every document model (claims, configuration, evidence, trust),
and the one place pydantic's error messages are worded for people."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from pydantic_core import ErrorDetails

__all__ = ["FrozenModel", "error_message"]

_PREFIXED = frozenset({"value_error", "assertion_error"})
"""Error types whose message pydantic prefixes ("Value error, ", "Assertion failed, ")."""


class FrozenModel(BaseModel):
    """A frozen model that rejects unknown fields: a typo is an error, never ignored."""

    model_config = ConfigDict(frozen=True, extra="forbid")


def error_message(error: ErrorDetails) -> str:
    """The message of one of pydantic's errors, as our validators worded it.

    pydantic prefixes what a validator raised with "Value error, " or "Assertion failed, ";
    every message attestpolicy shows goes through here, so none carries such a prefix.
    """
    if error["type"] in _PREFIXED:
        cause = (error.get("ctx") or {}).get("error")
        if cause is not None:
            return str(cause)
        return error["msg"].partition(", ")[2] or error["msg"]
    return error["msg"]
