"""The one pydantic base of every document model (claims, configuration, evidence, trust)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["FrozenModel"]


class FrozenModel(BaseModel):
    """A frozen model that rejects unknown fields: a typo is an error, never ignored."""

    model_config = ConfigDict(frozen=True, extra="forbid")
