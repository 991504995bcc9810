"""The broker's JWKS read into verification keys: asymmetric signature keys only."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any, Final

import jwt

from attestpolicy._json import loads_strict

__all__ = ["SUPPORTED_ALGORITHMS", "check_algorithms", "parse_jwks"]

_LOG = logging.getLogger("attestpolicy.pep")

SUPPORTED_ALGORITHMS: Final[Mapping[str, tuple[str, str]]] = {
    "ES256": ("EC", "P-256"),
    "ES384": ("EC", "P-384"),
    "ES512": ("EC", "P-521"),
    "EdDSA": ("OKP", "Ed25519"),
}
"""The algorithms a PEP may accept, each with the key type and curve it needs."""

_MAX_KID_CHARS: Final = 256


def check_algorithms(algorithms: Iterable[str]) -> frozenset[str]:
    """The allow-list, checked: a non-empty subset of :data:`SUPPORTED_ALGORITHMS`
    (never ``none`` nor a symmetric ``HS*``), else ValueError."""
    if isinstance(algorithms, str):
        raise ValueError("algorithms must be a sequence of names, not one string")
    chosen = frozenset(algorithms)
    unsupported = sorted(name for name in chosen if name not in SUPPORTED_ALGORITHMS)
    if unsupported:
        raise ValueError(
            f"algorithms {unsupported} are not accepted; "
            f"choose among {sorted(SUPPORTED_ALGORITHMS)}"
        )
    if not chosen:
        raise ValueError("algorithms must name at least one algorithm")
    return chosen


def _key_algorithm(jwk: Mapping[str, Any], algorithms: frozenset[str]) -> str | None:
    """The algorithm ``jwk`` verifies, or None when it is not a usable signature key."""
    if jwk.get("use", "sig") != "sig":
        return None
    kty, crv, alg = jwk.get("kty"), jwk.get("crv"), jwk.get("alg")
    if alg is None:  # named by the key type and curve alone
        alg = next((a for a, kc in SUPPORTED_ALGORITHMS.items() if kc == (kty, crv)), None)
    if not isinstance(alg, str) or alg not in algorithms:
        return None
    return alg if SUPPORTED_ALGORITHMS[alg] == (kty, crv) else None


def parse_jwks(body: bytes, algorithms: frozenset[str], max_keys: int) -> dict[str, jwt.PyJWK]:
    """``{kid: key}`` from a JWKS document; ValueError when the document is unusable.

    A key of another type, use or algorithm than ``algorithms`` allows is left out (a
    JWKS may publish keys for others); a key that cannot be read is left out with a
    warning. The document is refused whole when it is not strict JSON, has more than
    ``max_keys`` keys, or names one ``kid`` twice (which key would it mean?).
    """
    document = loads_strict(body)
    keys = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(keys, list):
        raise ValueError('the JWKS is not an object with a "keys" array')
    if len(keys) > max_keys:
        raise ValueError(f"the JWKS has {len(keys)} keys, over the limit of {max_keys}")
    found: dict[str, jwt.PyJWK] = {}
    kids: set[str] = set()
    for index, jwk in enumerate(keys):
        if not isinstance(jwk, dict):
            raise ValueError(f"JWKS key {index} is not an object")
        kid = jwk.get("kid")
        if not isinstance(kid, str) or not 0 < len(kid) <= _MAX_KID_CHARS:
            raise ValueError(f"JWKS key {index} has no usable kid")
        if kid in kids:
            raise ValueError(f"JWKS names kid {kid!r} twice")
        kids.add(kid)
        algorithm = _key_algorithm(jwk, algorithms)
        if algorithm is None:
            continue
        try:
            found[kid] = jwt.PyJWK(jwk, algorithm=algorithm)
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError) as exc:
            _LOG.warning("JWKS key %r left out: %s", kid, type(exc).__name__)
    return found
