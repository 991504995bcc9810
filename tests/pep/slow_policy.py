"""A real policy that is slow on purpose: the ``slow`` audience makes the engine count
through a large range (about half a second on each engine here); any other is allowed."""

from __future__ import annotations

from pathlib import Path
from typing import Final

from attestpolicy import PolicyDecisionPoint

__all__ = ["SLOW_AUDIENCE", "slow_pdp"]

SLOW_AUDIENCE: Final = "slow"

_ALLOW: Final = (
    '{"allow": true, "ttl_seconds": 60, "reasons": [], "ttl_bound_by": "default",'
    ' "valid_until": null, "ttl_terms": [{"name": "default", "seconds": 60}], "revocable": []}'
)
_POLICY: Final = f"""package attestpolicy.v1

import rego.v1

_allow := {_ALLOW}

decision := _allow if input.request.audience != "{SLOW_AUDIENCE}"

decision := _allow if {{
	input.request.audience == "{SLOW_AUDIENCE}"
	count([x | some x in numbers.range(1, {{size}}); x % 7 == 0]) > 0
}}
"""
_RANGE: Final = {"regorus": 1_000_000, "opa": 150_000}  # OPA's engine is slower at this


def slow_pdp(directory: Path, engine: str, *, cache: bool = True) -> PolicyDecisionPoint:
    """A PDP on the slow policy (written into ``directory``) with ``engine``."""
    (directory / "policy.rego").write_text(_POLICY.replace("{size}", str(_RANGE[engine])))
    return PolicyDecisionPoint.local(directory, engine=engine, cache=cache)
