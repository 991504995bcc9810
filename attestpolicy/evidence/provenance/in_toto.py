"""Build provenance (in-toto statements in DSSE) and in-toto links.

:func:`verify_provenance` verifies an in-toto statement (SLSA provenance v0.1/v0.2/v1, a
SLSA verification summary...) carried either

* in a DSSE envelope signed with a trusted key (:mod:`attestpolicy.evidence.provenance.dsse`), or
* in a Sigstore bundle (keyless: Fulcio certificate + Rekor entry), checked against an
  embedded ``trusted_root.json`` and a list of expected signer identities,

and returns the :class:`~attestpolicy.claims.Provenance` claim with the signer. Given an
``expected_digest``, the artifact must be among the statement's subjects.

:func:`verify_intoto_link` verifies an in-toto link (one supply-chain step's record of
materials and products) in a key-signed DSSE envelope and reports it.

See docs/evidence/provenance.md for the document formats and every error code.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Annotated, Any, ClassVar, Self

from pydantic import (
    Field,
    JsonValue,
    PrivateAttr,
    StrictStr,
    ValidationError,
    model_validator,
)

from attestpolicy._model import FrozenModel, error_message
from attestpolicy.claims import Provenance
from attestpolicy.errors import EvidenceError
from attestpolicy.evidence._common import (
    LARGE_SECTION_CHARS,
    Code,
    EvidenceSection,
    fail,
    load_json_object,
    require_utc,
)
from attestpolicy.evidence._crypto.trusted_root import SigstoreRoot, parse_trusted_root
from attestpolicy.evidence.image.sigstore_bundle import (
    SigstoreBundleEvidence,
    SigstoreTrust,
    verify_sigstore_bundle,
)
from attestpolicy.evidence.provenance._intoto_bundle import (
    SigstoreDsse,
    is_intoto_v002,
    verify_intoto_bundle,
)
from attestpolicy.evidence.provenance._statement import (
    DEFAULT_PREDICATE_TYPES,
    MAX_TEXT,
    Facts,
    link_artifacts,
    predicate_facts,
    read_statement,
    short_text,
)
from attestpolicy.evidence.provenance.dsse import (
    IN_TOTO_PAYLOAD_TYPE,
    DsseEvidence,
    DsseTrust,
    verify_dsse,
)

__all__ = [
    "DEFAULT_PREDICATE_TYPES",
    "InTotoLink",
    "InTotoLinkEvidence",
    "InTotoLinkTrust",
    "ProvenanceEvidence",
    "ProvenanceResult",
    "ProvenanceTrust",
    "verify_intoto_link",
    "verify_provenance",
]


_MAX_BUNDLE_CHARS = 4 * 1024 * 1024
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")

Text = Annotated[StrictStr, Field(min_length=1, max_length=MAX_TEXT)]


# --- evidence ------------------------------------------------------------------


class ProvenanceEvidence(EvidenceSection):
    """The provenance section: exactly one of a key-signed DSSE envelope or a Sigstore bundle.

    ``sigstore_bundle`` is the bundle JSON object as written by the signing tool.
    """

    _max_chars: ClassVar[int] = LARGE_SECTION_CHARS

    dsse: DsseEvidence | None = None
    sigstore_bundle: dict[str, JsonValue] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        if (self.dsse is None) == (self.sigstore_bundle is None):
            raise ValueError("give exactly one of dsse or sigstore_bundle")
        if self.sigstore_bundle is not None:
            try:
                size = len(json.dumps(self.sigstore_bundle, separators=(",", ":")))
            except (ValueError, RecursionError):
                raise ValueError("sigstore_bundle is not a JSON object") from None
            if size > _MAX_BUNDLE_CHARS:
                raise ValueError(f"sigstore_bundle is over {_MAX_BUNDLE_CHARS} characters")
        return self


class InTotoLinkEvidence(DsseEvidence):
    """The in-toto link section: a key-signed DSSE envelope whose payload is a link."""


# --- trust ---------------------------------------------------------------------


class ProvenanceTrust(FrozenModel):
    """Trust for provenance: signing keys and/or Sigstore signers, and accepted predicates.

    ``sigstore`` is the same section image signatures use (an embedded
    ``trusted_root.json`` and the exact signer identities accepted).
    """

    dsse: DsseTrust | None = None
    sigstore: SigstoreTrust | None = None
    predicate_types: Annotated[tuple[Text, ...], Field(min_length=1, max_length=64)] = (
        DEFAULT_PREDICATE_TYPES
    )

    _root: SigstoreRoot | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _some_anchor(self) -> Self:
        if self.dsse is None and self.sigstore is None:
            raise ValueError("give dsse keys, a sigstore trust section, or both")
        if self.sigstore is not None:
            self._root = parse_trusted_root(self.sigstore.trusted_root)
        return self


class InTotoLinkTrust(FrozenModel):
    """Keys trusted to sign links, and optionally the step name the link must carry."""

    dsse: DsseTrust
    step_name: Text | None = None


# --- results -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProvenanceResult:
    """Verified provenance and who signed it.

    ``provenance.builder_id`` is the builder the verifier stands behind: for key-signed
    provenance the predicate's builder id (vouched for by the trusted key), for keyless
    provenance the signing certificate's SAN (the workflow Fulcio certified), since the
    predicate is only what that signer wrote; ``predicate_builder_id`` is always the
    predicate's. ``signer`` is the certificate SAN or the names of the trusted keys that
    signed; ``signed_at`` the transparency-log (or timestamp authority) time, if any.
    """

    provenance: Provenance
    statement_type: str
    signer: str
    predicate_builder_id: str | None = None
    signer_issuer: str | None = None
    key_ids: tuple[str, ...] = ()
    signed_at: datetime | None = None
    certificate_extensions: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


class InTotoLink(FrozenModel):
    """A verified in-toto link; digests are ``sha256:<hex>`` (other algorithms dropped)."""

    name: Text
    command: tuple[StrictStr, ...]
    materials: dict[StrictStr, str]
    products: dict[StrictStr, str]
    key_ids: tuple[StrictStr, ...]


# --- verification --------------------------------------------------------------


def verify_provenance(
    evidence: ProvenanceEvidence,
    trust: ProvenanceTrust,
    *,
    now: datetime,
    expected_digest: str | None = None,
) -> ProvenanceResult:
    """Verify signed provenance and return its claim (``verified=True``) and signer.

    ``expected_digest`` (``sha256:<hex>``), when given, must be one of the statement's
    subject digests, or ``evidence.digest_mismatch`` is raised. Every failure raises
    :class:`~attestpolicy.errors.EvidenceError`; nothing unverified is returned.
    """
    now = require_utc(now)
    if expected_digest is not None and not (
        isinstance(expected_digest, str) and _DIGEST.match(expected_digest)
    ):
        fail(Code.MALFORMED, "expected_digest", "expected digest must be sha256:<64 lowercase hex>")
    if evidence.dsse is not None:
        if trust.dsse is None:
            fail(Code.UNTRUSTED, "dsse", "no signing keys are trusted for DSSE provenance")
        verified = verify_dsse(evidence.dsse, trust.dsse, now=now)
        statement = read_statement(verified.payload_type, verified.payload)
        facts = predicate_facts(statement, trust.predicate_types)
        result = ProvenanceResult(
            provenance=_claim(facts, facts.builder_id, facts.source_repo),
            statement_type=statement["_type"],
            signer=", ".join(verified.key_ids),
            predicate_builder_id=facts.builder_id,
            key_ids=verified.key_ids,
        )
    else:
        if trust.sigstore is None or trust._root is None or evidence.sigstore_bundle is None:
            fail(
                Code.UNTRUSTED, "sigstore_bundle", "no Sigstore trust is configured for provenance"
            )
        keyless = _verify_bundle(evidence.sigstore_bundle, trust.sigstore, trust._root, now=now)
        statement = read_statement(keyless.payload_type, keyless.payload)
        facts = predicate_facts(statement, trust.predicate_types)
        source_repo = keyless.extensions.get("source_repository_uri") or facts.source_repo
        result = ProvenanceResult(
            provenance=_claim(facts, keyless.subject, source_repo),
            statement_type=statement["_type"],
            signer=keyless.subject,
            predicate_builder_id=facts.builder_id,
            signer_issuer=keyless.issuer,
            signed_at=keyless.signed_at,
            certificate_extensions=MappingProxyType(dict(keyless.extensions)),
        )
    if expected_digest is not None and expected_digest not in result.provenance.subject_digests:
        fail(
            Code.DIGEST_MISMATCH,
            "statement.subject",
            f"{expected_digest} is not among the statement's subject digests",
        )
    return result


def verify_intoto_link(
    evidence: InTotoLinkEvidence, trust: InTotoLinkTrust, *, now: datetime
) -> InTotoLink:
    """Verify a key-signed in-toto link and report its step, command and artifacts.

    ``trust.step_name``, when set, must equal the link's ``name``
    (``evidence.identity_mismatch``).
    """
    verified = verify_dsse(evidence, trust.dsse, now=now)
    where = "envelope.payload"
    if verified.payload_type != IN_TOTO_PAYLOAD_TYPE:
        fail(Code.UNSUPPORTED, "envelope.payloadType", "links use the in-toto payload type")
    link = load_json_object(verified.payload, field=where)
    if link.get("_type") != "link":
        fail(Code.UNSUPPORTED, f"{where}._type", "payload is not an in-toto link")
    name = short_text(link.get("name"), f"{where}.name")
    if trust.step_name is not None and name != trust.step_name:
        fail(
            Code.IDENTITY_MISMATCH,
            f"{where}.name",
            f"link is for step {name[:80]!r}, expected {trust.step_name[:80]!r}",
        )
    command = link.get("command", [])
    if not isinstance(command, list) or len(command) > 1024:
        fail(Code.MALFORMED, f"{where}.command", "must be a list of at most 1024 strings")
    try:
        return InTotoLink(
            name=name,
            command=tuple(command),
            materials=link_artifacts(link.get("materials", {}), f"{where}.materials"),
            products=link_artifacts(link.get("products", {}), f"{where}.products"),
            key_ids=verified.key_ids,
        )
    except ValidationError as exc:
        fail(Code.MALFORMED, where, error_message(exc.errors(include_url=False)[0]))


# --- internals -----------------------------------------------------------------


def _claim(facts: Facts, builder_id: str | None, source_repo: str | None) -> Provenance:
    try:
        return Provenance(
            verified=True,
            builder_id=builder_id,
            source_repo=source_repo,
            subject_digests=facts.subject_digests,
            predicate_type=facts.predicate_type,
        )
    except ValidationError as exc:
        fail(Code.MALFORMED, "statement", error_message(exc.errors(include_url=False)[0]))


def _verify_bundle(
    bundle: dict[str, Any], trust: SigstoreTrust, root: SigstoreRoot, *, now: datetime
) -> SigstoreDsse:
    if is_intoto_v002(bundle):
        identities = [(identity.subject, identity.issuer) for identity in trust.identities]
        return verify_intoto_bundle(bundle, root, identities, now=now)
    try:
        result = verify_sigstore_bundle(SigstoreBundleEvidence(bundle=bundle), trust, now=now)
    except ValidationError as exc:
        fail(Code.MALFORMED, "sigstore_bundle", error_message(exc.errors(include_url=False)[0]))
    except EvidenceError as exc:
        message = exc.message.removeprefix(f"{exc.field}: ") if exc.field else exc.message
        fail(exc.code, _bundle_field(exc.field), message)
    if result.kind != "dsse" or result.payload_type is None or result.payload is None:
        fail(
            Code.UNSUPPORTED,
            "sigstore_bundle",
            "a message-signature bundle carries no provenance statement",
        )
    extensions = {
        name: value
        for name, value in dataclasses.asdict(result.extensions).items()
        if isinstance(value, str) and name != "issuer"
    }
    return SigstoreDsse(
        payload_type=result.payload_type,
        payload=result.payload,
        subject=result.subject,
        issuer=result.issuer,
        extensions=extensions,
        signed_at=result.signed_time,
    )


def _bundle_field(field_name: str | None) -> str:
    """Re-root a field named by the Sigstore bundle verifier under ``sigstore_bundle``."""
    if not field_name:
        return "sigstore_bundle"
    return (
        "sigstore_bundle" + field_name.removeprefix("bundle")
        if field_name.startswith("bundle")
        else f"sigstore_bundle.{field_name}"
    )
