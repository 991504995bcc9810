"""SPIFFE SVIDs: X.509-SVIDs and JWT-SVIDs, verified against per-trust-domain bundles.

Each SVID is verified only against the bundle of the trust domain its own SPIFFE ID
names, so one trust domain's authority can never vouch for another's IDs. The SPIFFE ID
is validated with the same rules as :class:`attestpolicy.claims.Subject`.

X.509-SVID: the leaf must carry exactly one URI SAN (a SPIFFE ID), must not be a CA,
must have ``digitalSignature`` and neither ``keyCertSign`` nor ``cRLSign``; every
certificate must be valid at ``now``; the chain must build to the trust domain's
authorities under ``cryptography``'s RFC 5280 verifier (client profile, so an extended
key usage, when present, must allow ``clientAuth``).

JWT-SVID: ``kid``-selected key from the trust domain's JWKS, asymmetric algorithm,
``aud`` containing a trusted audience, ``exp`` in the future, ``sub`` the SPIFFE ID.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Final, TypeVar

from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError
from pydantic import (
    Field,
    PrivateAttr,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)

from attestpolicy._model import FrozenModel, error_message
from attestpolicy.claims import Runtime, Subject
from attestpolicy.errors import EvidenceError
from attestpolicy.evidence._common import (
    ClockSkewSeconds,
    Code,
    EvidenceSection,
    decode_base64,
    fail,
    require_utc,
)
from attestpolicy.evidence._crypto.jose import (
    Jwks,
    check_audience,
    check_lifetime,
    claim_text,
    peek_claims,
    verify_jws,
)
from attestpolicy.evidence._crypto.tokens import TokenSection
from attestpolicy.evidence._crypto.x509 import (
    certificate_from_der,
    certificates_from_pem_bundle,
    check_validity,
    load_pem_certificates,
)

__all__ = [
    "JwtSvidEvidence",
    "JwtSvidTrust",
    "SvidResult",
    "X509SvidEvidence",
    "X509SvidTrust",
    "svid_chain",
    "verify_jwt_svid",
    "verify_x509_svid",
]

MAX_CHAIN_CERTIFICATES: Final = 8
MAX_CHAIN_BYTES: Final = 64 * 1024
MAX_BUNDLE_CERTIFICATES: Final = 32
_MAX_TRUST_DOMAINS: Final = 64


@dataclass(frozen=True, slots=True)
class SvidResult:
    """A verified SVID: the subject's SPIFFE ID and a verified runtime bounded by expiry."""

    subject: Subject
    runtime: Runtime
    trust_domain: str


def _spiffe_id(value: str, *, field: str) -> tuple[Subject, str]:
    """Validate a SPIFFE ID with the claims rules; return it and its trust domain."""
    try:
        subject = Subject(spiffe_id=value)
    except ValidationError as exc:
        message = error_message(exc.errors(include_url=False)[0])
        fail(Code.MALFORMED, field, f"invalid SPIFFE ID: {message}")
    trust_domain = subject.spiffe_id[len("spiffe://") :].partition("/")[0]
    return subject, trust_domain


def _check_trust_domains(names: Any) -> None:
    for name in names:
        if not isinstance(name, str):
            raise ValueError("trust domain names must be strings")
        try:
            _, trust_domain = _spiffe_id(f"spiffe://{name}", field="trust_domain")
        except EvidenceError:
            trust_domain = None
        if trust_domain != name:
            raise ValueError(f"not a SPIFFE trust domain name: {name[:64]!r}")


# --- X.509-SVID -------------------------------------------------------------------


class X509SvidEvidence(EvidenceSection):
    """An X.509-SVID chain, leaf first: PEM text (``chain``) or standard base64 of the
    concatenated DER certificates as the SPIFFE Workload API returns them (``chain_der``).
    Give exactly one."""

    chain: Annotated[StrictStr, Field(min_length=1, max_length=MAX_CHAIN_BYTES * 2)] | None = None
    chain_der: Annotated[StrictStr, Field(min_length=4, max_length=MAX_CHAIN_BYTES * 2)] | None = (
        None
    )

    @model_validator(mode="after")
    def _one_form(self) -> X509SvidEvidence:
        if (self.chain is None) == (self.chain_der is None):
            raise ValueError("give exactly one of 'chain' or 'chain_der'")
        return self


class X509SvidTrust(FrozenModel):
    """X.509 authorities per trust domain: ``{"example.org": "<PEM certificates>"}``."""

    bundles: Annotated[
        dict[StrictStr, Annotated[StrictStr, Field(max_length=MAX_BUNDLE_CERTIFICATES * 4096)]],
        Field(min_length=1, max_length=_MAX_TRUST_DOMAINS),
    ]

    _stores: dict[str, Store] = PrivateAttr(default_factory=dict)

    @field_validator("bundles")
    @classmethod
    def _names(cls, value: dict[str, str]) -> dict[str, str]:
        _check_trust_domains(value)
        return value

    def model_post_init(self, context: Any, /) -> None:
        """Load each trust domain's authorities into a verification store once."""
        for name, pem in self.bundles.items():
            certs = load_pem_certificates(pem, max_count=MAX_BUNDLE_CERTIFICATES)
            self._stores[name] = Store(certs)

    def store_for(self, trust_domain: str) -> Store | None:
        """The authorities of ``trust_domain``, or None when it is not trusted."""
        return self._stores.get(trust_domain)


def verify_x509_svid(
    evidence: X509SvidEvidence, trust: X509SvidTrust, *, now: datetime
) -> SvidResult:
    """Verify an X.509-SVID chain at ``now``.

    ``runtime.expires_at`` is the earliest ``notAfter`` of the verified chain.
    Raises :class:`EvidenceError`: ``evidence.malformed`` (unparseable, or not an
    X.509-SVID: URI SAN count, CA leaf, key usage), ``evidence.expired``,
    ``evidence.untrusted`` (unknown trust domain, chain does not build).
    """
    now = require_utc(now)
    chain = svid_chain(evidence)
    leaf = chain[0]
    subject, trust_domain = _leaf_identity(leaf)
    store = trust.store_for(trust_domain)
    if store is None:
        fail(Code.UNTRUSTED, "chain[0]", f"trust domain {trust_domain!r} is not trusted")
    for index, cert in enumerate(chain):
        check_validity(cert, now, field=f"chain[{index}]")
    verifier = PolicyBuilder().store(store).time(now).build_client_verifier()
    try:
        verified = verifier.verify(leaf, chain[1:])
    except VerificationError as exc:
        fail(
            Code.UNTRUSTED,
            "chain",
            f"chain does not build to the {trust_domain} authorities: {exc}",
        )
    except ValueError as exc:
        fail(Code.MALFORMED, "chain", f"cannot verify the chain: {exc}")
    for index, cert in enumerate(verified.chain):
        check_validity(cert, now, field=f"chain.verified[{index}]")
    expires_at = min(cert.not_valid_after_utc for cert in verified.chain)
    return SvidResult(
        subject=subject,
        runtime=Runtime(verified=True, expires_at=expires_at),
        trust_domain=trust_domain,
    )


def svid_chain(evidence: X509SvidEvidence) -> list[x509.Certificate]:
    """The certificates of an X.509-SVID section, leaf first (parsed, not verified)."""
    if evidence.chain is not None:
        certs = certificates_from_pem_bundle(
            evidence.chain, "chain", max_count=MAX_CHAIN_CERTIFICATES
        )
    elif evidence.chain_der is not None:
        der = decode_base64(
            evidence.chain_der,
            field="chain_der",
            max_bytes=MAX_CHAIN_BYTES,
            wrapped=True,
            allow_empty=False,
        )
        try:
            parts = _split_der(der)
        except ValueError as exc:
            fail(Code.MALFORMED, "chain", f"not a certificate chain: {exc}")
        certs = [certificate_from_der(part, "chain") for part in parts]
    else:
        fail(Code.MALFORMED, "(section)", "give 'chain' or 'chain_der'")
    if not 0 < len(certs) <= MAX_CHAIN_CERTIFICATES:
        fail(Code.MALFORMED, "chain", f"a chain holds 1 to {MAX_CHAIN_CERTIFICATES} certificates")
    return certs


def _split_der(data: bytes) -> list[bytes]:
    """Split concatenated DER SEQUENCEs (bounded: at most MAX_CHAIN_CERTIFICATES)."""
    parts: list[bytes] = []
    offset = 0
    while offset < len(data):
        if len(parts) == MAX_CHAIN_CERTIFICATES:
            raise ValueError(f"more than {MAX_CHAIN_CERTIFICATES} certificates")
        if data[offset] != 0x30 or offset + 2 > len(data):
            raise ValueError("not a DER certificate sequence")
        first = data[offset + 1]
        if first < 0x80:
            header, length = 2, first
        else:
            size = first & 0x7F
            if not 1 <= size <= 3 or offset + 2 + size > len(data):
                raise ValueError("unsupported DER length")
            header = 2 + size
            length = int.from_bytes(data[offset + 2 : offset + header], "big")
        end = offset + header + length
        if end > len(data):
            raise ValueError("truncated DER certificate")
        parts.append(data[offset:end])
        offset = end
    return parts


def _leaf_identity(leaf: x509.Certificate) -> tuple[Subject, str]:
    """Check the X.509-SVID leaf profile; return its SPIFFE ID and trust domain."""
    try:
        extensions = leaf.extensions
        uris = _extension_value(extensions, x509.SubjectAlternativeName)
        basic = _extension_value(extensions, x509.BasicConstraints)
        usage = _extension_value(extensions, x509.KeyUsage)
        uri_values = uris.get_values_for_type(x509.UniformResourceIdentifier) if uris else []
    except Exception as exc:  # cryptography raises several non-ValueError types here
        fail(Code.MALFORMED, "chain[0]", f"unreadable extensions: {exc}")
    if len(uri_values) != 1:
        fail(
            Code.MALFORMED,
            "chain[0].subject_alt_name",
            f"an X.509-SVID needs exactly one URI SAN, found {len(uri_values)}",
        )
    identity = _spiffe_id(uri_values[0], field="chain[0].subject_alt_name")
    if basic is not None and basic.ca:
        fail(Code.MALFORMED, "chain[0].basic_constraints", "a leaf SVID must not be a CA")
    if usage is None or not usage.digital_signature:
        fail(
            Code.MALFORMED, "chain[0].key_usage", "a leaf SVID needs the digitalSignature key usage"
        )
    if usage.key_cert_sign or usage.crl_sign:
        fail(
            Code.MALFORMED, "chain[0].key_usage", "a leaf SVID must not have keyCertSign or cRLSign"
        )
    return identity


_Ext = TypeVar("_Ext", bound=x509.ExtensionType)


def _extension_value(extensions: x509.Extensions, kind: type[_Ext]) -> _Ext | None:
    try:
        return extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


# --- JWT-SVID ---------------------------------------------------------------------


class JwtSvidEvidence(TokenSection):
    """A JWT-SVID, compact JWS text."""


class JwtSvidTrust(FrozenModel):
    """JWT authorities per trust domain (JWKS or SPIFFE bundle) and the accepted audiences."""

    bundles: Annotated[dict[StrictStr, Jwks], Field(min_length=1, max_length=_MAX_TRUST_DOMAINS)]
    audiences: Annotated[
        tuple[Annotated[StrictStr, Field(min_length=1, max_length=1024)], ...],
        Field(min_length=1, max_length=64),
    ]
    clock_skew_seconds: ClockSkewSeconds = 0

    @field_validator("bundles")
    @classmethod
    def _names(cls, value: dict[str, Jwks]) -> dict[str, Jwks]:
        _check_trust_domains(value)
        return value


def verify_jwt_svid(evidence: JwtSvidEvidence, trust: JwtSvidTrust, *, now: datetime) -> SvidResult:
    """Verify a JWT-SVID at ``now``; ``runtime.expires_at`` is the token's ``exp``.

    The ``sub`` read before verification only picks which trust domain's keys to use;
    the returned subject is read from the verified claims (the same bytes).
    """
    now = require_utc(now)
    field = "token"
    claimed = claim_text(
        peek_claims(evidence.token, field=field), "sub", field=field, max_length=2048
    )
    _, trust_domain = _spiffe_id(claimed, field=f"{field}.sub")
    jwks = trust.bundles.get(trust_domain)
    if jwks is None:
        fail(Code.UNTRUSTED, f"{field}.sub", f"trust domain {trust_domain!r} is not trusted")
    verified = verify_jws(evidence.token, jwks, field=field, allowed_typ=("JWT", "JOSE"))
    subject, _ = _spiffe_id(
        claim_text(verified.claims, "sub", field=field, max_length=2048), field=f"{field}.sub"
    )
    lifetime = check_lifetime(
        verified.claims, now=now, leeway_seconds=trust.clock_skew_seconds, field=field
    )
    check_audience(verified.claims, audiences=trust.audiences, nonce_audience=None, field=field)
    return SvidResult(
        subject=subject,
        runtime=Runtime(verified=True, expires_at=lifetime.expires_at),
        trust_domain=trust_domain,
    )
