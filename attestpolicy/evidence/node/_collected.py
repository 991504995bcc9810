"""What the attested-node verifiers (TPM, SEV-SNP, TDX) share: a collection window.

None of these attestations carries a time: their sections say when they were collected
(:class:`CollectedSection`), which becomes the node claim's ``issued_at``
(:meth:`CollectedSection.verified_node`). SEV-SNP and TDX bind the verifier's nonce as
REPORT_DATA (:func:`check_report_data`).
"""

from __future__ import annotations

import hmac
from typing import ClassVar, Final, Literal, Self

from pydantic import model_validator

from attestpolicy.claims import Node, Timestamp
from attestpolicy.evidence._common import LARGE_SECTION_CHARS, Code, EvidenceSection, fail

__all__ = ["CollectedSection", "check_report_data"]

_REPORT_DATA_BYTES: Final = 64


class CollectedSection(EvidenceSection):
    """A node evidence section with no signed time: when it was collected, and until when
    the collector vouches for it (``Node.issued_at`` / ``Node.expires_at``)."""

    _max_chars: ClassVar[int] = LARGE_SECTION_CHARS

    collected_at: Timestamp
    expires_at: Timestamp | None = None

    @model_validator(mode="after")
    def _window(self) -> Self:
        if self.expires_at is not None and self.expires_at <= self.collected_at:
            raise ValueError("expires_at must be after collected_at")
        return self

    def verified_node(
        self,
        kind: Literal["tpm", "sev_snp", "az_snp_vtpm", "tdx"],
        node_id: str,
        nonce: bytes | None,
        measurements: dict[str, str],
    ) -> Node:
        """The verified node claim, timed by the collection window; fresh
        (``nonce_verified``) when the caller's ``nonce`` was checked."""
        return Node(
            kind=kind,
            id=node_id,
            verified=True,
            nonce_verified=nonce is not None,
            issued_at=self.collected_at,
            expires_at=self.expires_at,
            measurements=measurements,
        )


def check_report_data(report_data: bytes, nonce: bytes | None, field: str) -> None:
    """``nonce`` (1..64 bytes) zero-padded to 64 bytes must equal REPORT_DATA; no nonce,
    no check (the node is then not fresh)."""
    if nonce is None:
        return
    if not nonce or len(nonce) > _REPORT_DATA_BYTES:
        fail(Code.NONCE_MISMATCH, field, "the expected nonce must be 1 to 64 bytes")
    if not hmac.compare_digest(report_data, nonce.ljust(_REPORT_DATA_BYTES, b"\x00")):
        fail(Code.NONCE_MISMATCH, field, "REPORT_DATA is not the expected nonce")
