"""The node verifier table: one entry per node evidence kind of the evidence document."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from attestpolicy.errors import EvidenceError
from attestpolicy.evidence.document import NODE_KINDS, NodeSection, NodeTrust
from attestpolicy.evidence.node.registry import NODE_VERIFIERS, Challenge

CHALLENGE = Challenge(now=datetime(2025, 6, 1, tzinfo=UTC), nonce=None, nonce_audience=None)


def test_every_node_kind_has_exactly_one_verifier() -> None:
    assert sorted(NODE_VERIFIERS) == sorted(NODE_KINDS)


@pytest.mark.parametrize("kind", NODE_KINDS)
def test_a_kind_without_trust_anchors_is_untrusted(kind: str) -> None:
    with pytest.raises(EvidenceError) as info:
        NODE_VERIFIERS[kind](NodeSection.model_construct(), NodeTrust(), CHALLENGE, field=kind)
    assert (info.value.code, info.value.field) == ("evidence.untrusted", kind)
