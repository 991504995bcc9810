"""Hypothesis strategies for property-testing a policy: configurations, claim sets, raw input.

Claim sets come as the JSON documents :meth:`attestpolicy.ClaimSet.parse` reads (with
``now``), not as ClaimSet objects: a document keeps an absent field and a null one
apart, and the policy must treat them alike. They exercise every evidence class and the
contract's boundaries (evidence age and clock skew exactly at their limits, expiry at
``now``, TTL ties, absent and null fields, signer subjects made from the configured
globs). The project's own property and differential tests draw from the same generators.

    from hypothesis import given
    from attestpolicy.testing import strategies

    @given(claims=strategies.claim_sets(config=CONFIG))
    def test_prod_needs_provenance(rego_pdp, claims): ...

Needs Hypothesis: ``pip install 'attestpolicy[testing]'``. ``docs/custom-policies.md``
shows the two properties most policies want: no allow with a violation, and the same
decision in both engines.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from attestpolicy.claims import ClaimSet
from attestpolicy.config import validate_config
from attestpolicy.errors import ClaimsError

try:
    from hypothesis import strategies as st
except ImportError as exc:  # pragma: no cover - the testing extra is not installed
    raise ImportError(
        "attestpolicy.testing needs Hypothesis: pip install 'attestpolicy[testing]'"
    ) from exc

from attestpolicy.testing import _generators

__all__ = ["claim_sets", "configs", "raw_inputs", "scenarios"]


def configs() -> st.SearchStrategy[dict[str, Any]]:
    """Valid configuration documents (``data.attestpolicy.config``), small and varied:
    registered workloads with or without required classes, digest allow-lists, TTL caps
    and node kinds; trusted signers by issuer glob and by key id; builders, baselines,
    audiences, boundary limits and revocations."""
    return _generators.configs()


def claim_sets(
    config: Mapping[str, Any] | None = None, *, valid: bool = True
) -> st.SearchStrategy[dict[str, Any]]:
    """Claim set documents, tied to ``config`` so that allows are reachable.

    Each starts consistent with ``config`` (a registered subject, a known audience, an
    allowed image signed by a trusted signer, provenance by a trusted builder, the node
    baseline's measurements, runtime evidence in the workload's namespace), with times
    on the limits of ``config["limits"]``; then zero to four faults are injected (an
    unregistered subject, an unsigned image, an untrusted builder, a stale or future
    node, drift...). Without ``config`` the values come from built-in pools.

    With ``valid=True`` every document passes :meth:`ClaimSet.parse`; with
    ``valid=False`` every one is an object that :meth:`ClaimSet.parse` rejects (a wrong
    type, a value just past its limit, a missing or unknown field). An invalid
    ``config`` raises :class:`~attestpolicy.errors.ConfigError` here.
    """
    if config is not None:
        config = copy.deepcopy(validate_config(config))
    documents = _claim_documents(config)
    if valid:
        return documents
    broken = documents.flatmap(
        lambda claims: _generators.special_edits(claims) | _generators.mutated(claims)
    )
    return broken.filter(_breaks_contract)


def raw_inputs(config: Mapping[str, Any] | None = None) -> st.SearchStrategy[Any]:
    """Policy inputs as a faulty client or an attacker might send them: mostly ill-typed.

    Claim sets of :func:`claim_sets` (as sent, or as the PDP hands them to its engine)
    with edits anywhere (deletions, nulls, values just outside the contract, unknown
    keys, garbage), or with a boundary value in a field the contract constrains; one
    time in ten any JSON value at all. Some edits leave the input valid: check with
    :meth:`ClaimSet.parse` (and a non-null ``now``, which the policy requires) when a
    property depends on it. Every value is JSON both engines can receive.
    """
    if config is not None:
        config = copy.deepcopy(validate_config(config))
    return _claim_documents(config).flatmap(_generators.corruptions_of)


def scenarios() -> st.SearchStrategy[tuple[dict[str, Any], dict[str, Any]]]:
    """Pairs (configuration, valid claim set document) from :func:`configs`, with faults
    injected into either (a revoked subject, a lowered TTL cap, an untrusted signer...)
    so that every reason code of the default policy is reached."""
    return _generators.scenarios()


def _claim_documents(config: Mapping[str, Any] | None) -> st.SearchStrategy[dict[str, Any]]:
    if config is None:
        return _generators.configs().flatmap(_generators.claim_documents)
    return _generators.claim_documents(config)


def _breaks_contract(document: object) -> bool:
    """The document is an object that ClaimSet.parse rejects."""
    if not isinstance(document, dict):
        return False
    try:
        ClaimSet.parse(copy.deepcopy(document))
    except ClaimsError:
        return True
    return False
