"""What the two image-signature verifiers (Sigstore bundles, cosign) have in common: the
shape of their evidence sections and of their result."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Self

from attestpolicy._model import FrozenModel
from attestpolicy.claims import Image, ImageSignature
from attestpolicy.evidence._common import validate_mapping

__all__ = ["ImageSignatureResult", "SignatureSection"]


class SignatureSection(FrozenModel):
    """An image-signature evidence section, with :meth:`parse`."""

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> Self:
        """Validate the evidence section; raise ``evidence.malformed`` (never pydantic's error).

        Image-signature sections report whole-section errors at ``(evidence)``.
        """
        return validate_mapping(cls, data, whole="(evidence)")


@dataclass(frozen=True, slots=True)
class ImageSignatureResult:
    """A verified image signature (Sigstore bundle or cosign): the claims part plus what it
    was checked against.

    ``digest`` is set only when the evidence reference is pinned by digest; for a
    tag-only reference it is ``None`` (the policy then denies ``image.digest_required``).
    ``signed_digest`` is the manifest digest the signature covers, always set;
    ``signed_reference`` the docker-reference a cosign signature names (``None`` for
    Sigstore bundles); ``signed_time`` the verified Rekor/TSA time, if any.
    """

    reference: str
    digest: str | None
    signed_digest: str
    signature: ImageSignature
    signed_time: datetime | None
    signed_reference: str | None = None

    def image(self) -> Image:
        """The :class:`~attestpolicy.claims.Image` claim for this one signature."""
        return Image(reference=self.reference, digest=self.digest, signatures=(self.signature,))
