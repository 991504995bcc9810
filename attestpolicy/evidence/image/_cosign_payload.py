"""cosign's simple-signing payload: what a cosign signature says it signed.

The payload names the manifest digest (``critical.image.docker-manifest-digest``) and the
image (``critical.identity.docker-reference``); it is parsed as strictly as
containers/image does, and the signed reference must match the evidence reference.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from attestpolicy.evidence._common import Code, exact_object, fail, json_string, load_json
from attestpolicy.evidence.image._reference import (
    ImageReference,
    InvalidReference,
    image_reference,
    parse_reference,
)

__all__ = ["SignedPayload", "check_docker_reference", "parse_payload"]

_SIGNATURE_TYPE: Final = "cosign container image signature"


@dataclass(frozen=True, slots=True)
class SignedPayload:
    """The manifest digest and the docker-reference a payload signs."""

    manifest_digest: str
    docker_reference: str


def parse_payload(payload: bytes) -> SignedPayload:
    """Parse cosign's simple-signing JSON strictly, as containers/image does."""
    field = "signature.payload"
    top = exact_object(load_json(payload, field=field), {"critical", "optional"}, field=field)
    optional = top["optional"]
    if optional is not None:
        if not isinstance(optional, dict):
            fail(Code.MALFORMED, f"{field}.optional", "optional must be an object or null")
        if "creator" in optional and not isinstance(optional["creator"], str):
            fail(Code.MALFORMED, f"{field}.optional", "optional.creator must be a string")
        stamp = optional.get("timestamp")
        if "timestamp" in optional and (
            isinstance(stamp, bool)
            or not isinstance(stamp, int | float)
            or (isinstance(stamp, float) and not stamp.is_integer())
        ):
            fail(Code.MALFORMED, f"{field}.optional", "optional.timestamp must be an integer")
    critical = exact_object(
        top["critical"], {"type", "image", "identity"}, field=f"{field}.critical"
    )
    if critical["type"] != _SIGNATURE_TYPE:
        fail(
            Code.UNSUPPORTED,
            f"{field}.critical.type",
            f"unrecognized signature type {str(critical['type'])[:80]!r}",
        )
    image = exact_object(
        critical["image"], {"docker-manifest-digest"}, field=f"{field}.critical.image"
    )
    identity = exact_object(
        critical["identity"], {"docker-reference"}, field=f"{field}.critical.identity"
    )
    digest_field = f"{field}.critical.image.docker-manifest-digest"
    digest_text = json_string(image["docker-manifest-digest"], field=digest_field)
    digest_ref = image_reference(digest_text, field=digest_field)
    if digest_ref.name is not None or digest_ref.digest is None:
        fail(Code.MALFORMED, digest_field, "not a sha256 digest")
    reference = json_string(
        identity["docker-reference"], field=f"{field}.critical.identity.docker-reference"
    )
    return SignedPayload(manifest_digest=digest_ref.digest, docker_reference=reference)


def check_docker_reference(ref: ImageReference, signed: SignedPayload) -> None:
    """Match the signed docker-reference against the evidence reference.

    The rule (containers/image ``matchRepoDigestOrExact``, relaxed like its
    ``matchRepository`` for cosign's name-only references): the normalized repositories
    must be equal (skipped for a bare-digest reference that names none); when both
    carry a tag the tags must be equal; a digest in the signed reference must be the
    signed manifest digest.
    """
    field = "signature.payload.critical.identity.docker-reference"
    try:
        signed_ref = parse_reference(signed.docker_reference)
    except InvalidReference as exc:
        fail(
            Code.IDENTITY_MISMATCH,
            field,
            f"signed docker-reference is not a valid reference: {exc}",
        )
    if signed_ref.name is None:
        fail(Code.IDENTITY_MISMATCH, field, "signed docker-reference names no repository")
    if ref.name is not None and signed_ref.name != ref.name:
        fail(
            Code.IDENTITY_MISMATCH,
            field,
            f"signed for repository {signed_ref.name}, not {ref.name}",
        )
    if ref.tag is not None and signed_ref.tag is not None and signed_ref.tag != ref.tag:
        fail(Code.IDENTITY_MISMATCH, field, f"signed for tag {signed_ref.tag}, not {ref.tag}")
    if signed_ref.digest is not None and signed_ref.digest != signed.manifest_digest:
        fail(Code.IDENTITY_MISMATCH, field, "signed docker-reference pins another digest")
