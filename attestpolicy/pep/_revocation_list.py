"""The broker's revocation list (``GET /v1/revocations``) read into a set of jti."""

from __future__ import annotations

from attestpolicy._json import loads_strict

__all__ = ["parse_revocation_list"]


def parse_revocation_list(body: bytes) -> frozenset[str]:
    """The revoked jti of ``{"revoked": [{"jti", "exp"}], "generated_at"}``; ValueError
    when the document is not that (strict JSON, integer NumericDates)."""
    document = loads_strict(body)
    if not isinstance(document, dict):
        raise ValueError("the revocation list is not a JSON object")
    revoked = document.get("revoked")
    if not isinstance(revoked, list) or type(document.get("generated_at")) is not int:
        raise ValueError('the revocation list needs a "revoked" array and "generated_at"')
    jtis = set()
    for index, entry in enumerate(revoked):
        jti = entry.get("jti") if isinstance(entry, dict) else None
        if not isinstance(jti, str) or not jti or type(entry.get("exp")) is not int:
            raise ValueError(f"revoked[{index}] is not a {{jti, exp}} entry")
        jtis.add(jti)
    return frozenset(jtis)
