"""The decision log's configuration errors (the operator's to fix, at start-up), and the
checks of its numeric settings that raise them."""

from __future__ import annotations

import math

from attestpolicy.errors import AttestPolicyError

__all__ = ["DecisionLogConfigError", "MaskConfigError", "check_count", "check_seconds"]


class DecisionLogConfigError(AttestPolicyError, ValueError):
    """A decision logger, sink or label was configured with an unusable value."""

    code = "decisionlog.invalid_config"


class MaskConfigError(DecisionLogConfigError):
    """A mask rule (or a mask file) is malformed: the message names the rule and why."""

    code = "decisionlog.invalid_mask"


def check_count(name: str, value: object, least: int) -> int:
    """``value`` if it is an integer (not a bool) of at least ``least``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise DecisionLogConfigError(f"{name} must be an integer >= {least}, not {value!r}")
    return value


def check_seconds(name: str, value: object, *, allow_zero: bool = False) -> float:
    """``value`` as seconds if it is a finite number, positive (or zero if allowed)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise DecisionLogConfigError(f"{name} must be a finite number of seconds, not {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise DecisionLogConfigError(f"{name} must be a positive number of seconds")
    return float(value)
