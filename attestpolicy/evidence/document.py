"""The evidence document and the trust configuration formats.

An *evidence document* (JSON, one file) gathers one workload's raw evidence and its
request; a *trust configuration* (JSON or YAML) holds the trust anchors those
verifiers check against. Both are versioned (``"version": 1``), reject unknown
fields, and delegate each section to the verifier module that owns its format.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Final, Literal, Self, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    Field,
    GetJsonSchemaHandler,
    ValidationError,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from attestpolicy._model import FrozenModel, error_message
from attestpolicy._yaml import loads_strict_yaml
from attestpolicy.claims import Request, Text
from attestpolicy.errors import ConfigError, EvidenceError
from attestpolicy.evidence._common import Code, fail, load_json
from attestpolicy.evidence.image.cosign import CosignEvidence, CosignTrust
from attestpolicy.evidence.image.sigstore_bundle import SigstoreBundleEvidence, SigstoreTrust
from attestpolicy.evidence.node.aws_iid import AwsIidEvidence, AwsIidTrust
from attestpolicy.evidence.node.gce_iit import GceIitEvidence, GceIitTrust
from attestpolicy.evidence.node.sev_snp import AzSnpVtpmEvidence, SevSnpEvidence, SevSnpTrust
from attestpolicy.evidence.node.tdx import TdxEvidence, TdxTrust
from attestpolicy.evidence.node.tpm import TpmEvidence, TpmTrust
from attestpolicy.evidence.provenance.in_toto import ProvenanceEvidence, ProvenanceTrust
from attestpolicy.evidence.workload.psat import PsatEvidence, PsatTrust
from attestpolicy.evidence.workload.spiffe import (
    JwtSvidEvidence,
    JwtSvidTrust,
    X509SvidEvidence,
    X509SvidTrust,
)
from attestpolicy.evidence.workload.workload_attestor import (
    WorkloadAttestorEvidence,
    WorkloadAttestorTrust,
)

__all__ = [
    "MAX_EVIDENCE_BYTES",
    "MAX_TRUST_BYTES",
    "NODE_KINDS",
    "EvidenceDocument",
    "TrustConfig",
    "load_evidence_document",
    "load_trust_config",
]

MAX_EVIDENCE_BYTES: Final = 8 * 1024 * 1024
MAX_TRUST_BYTES: Final = 8 * 1024 * 1024
_MAX_SIGNATURES: Final = 32
_MAX_LOC_PART: Final = 64

NODE_KINDS: Final = ("tpm", "aws_iid", "gcp_iit", "k8s_psat", "sev_snp", "az_snp_vtpm", "tdx")
"""Evidence kinds accepted under ``node`` (exactly one per document)."""

_M = TypeVar("_M", bound=BaseModel)


def _integer(value: object) -> object:
    if type(value) is not int:  # not true, 1.0 or "1"
        raise ValueError("version must be the integer 1")
    return value


_Version = Annotated[Literal[1], BeforeValidator(_integer)]


# --- evidence document ---------------------------------------------------------


class ImageSection(FrozenModel):
    """The image reference and its signatures (cosign signature files, Sigstore bundles).

    Entries leave out ``reference``: the section's reference applies to each.
    """

    reference: Text
    cosign: tuple[CosignEvidence, ...] = Field(default=(), max_length=_MAX_SIGNATURES)
    sigstore: tuple[SigstoreBundleEvidence, ...] = Field(default=(), max_length=_MAX_SIGNATURES)

    @model_validator(mode="before")
    @classmethod
    def _apply_reference(cls, data: Any) -> Any:
        """Give every signature entry the section's reference (entries must not differ)."""
        if not isinstance(data, Mapping) or not isinstance(data.get("reference"), str):
            return data
        reference = data["reference"]
        result = dict(data)
        for name in ("cosign", "sigstore"):
            entries = data.get(name)
            if not isinstance(entries, list | tuple):
                continue
            patched = []
            for entry in entries:
                if isinstance(entry, Mapping):
                    if entry.get("reference", reference) != reference:
                        raise ValueError(f"{name} entry names another reference than the image")
                    entry = {**entry, "reference": reference}
                patched.append(entry)
            result[name] = patched
        return result

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        """Say in the JSON Schema that entries may leave out ``reference``."""
        schema = handler(core_schema)
        section = handler.resolve_ref_schema(schema)
        for name in ("cosign", "sigstore"):
            entry = handler.resolve_ref_schema(section["properties"][name]["items"])
            required = [item for item in entry.get("required", ()) if item != "reference"]
            if required:
                entry["required"] = required
            else:
                entry.pop("required", None)
        return schema


class NodeSection(FrozenModel):
    """Exactly one kind of node evidence."""

    tpm: TpmEvidence | None = None
    aws_iid: AwsIidEvidence | None = None
    gcp_iit: GceIitEvidence | None = None
    k8s_psat: PsatEvidence | None = None
    sev_snp: SevSnpEvidence | None = None
    az_snp_vtpm: AzSnpVtpmEvidence | None = None
    tdx: TdxEvidence | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        present = sum(getattr(self, kind) is not None for kind in NODE_KINDS)
        if present != 1:
            raise ValueError(
                f"exactly one node evidence kind is required ({', '.join(NODE_KINDS)}), "
                f"got {present}"
            )
        return self

    @property
    def kind(self) -> str:
        """The one kind present (validation guarantees there is exactly one)."""
        return next(kind for kind in NODE_KINDS if getattr(self, kind) is not None)


class RuntimeSection(FrozenModel):
    """The workload's SVID (its identity), and what a workload attestor reports."""

    x509_svid: X509SvidEvidence | None = None
    jwt_svid: JwtSvidEvidence | None = None
    psat: PsatEvidence | None = None
    attestor: WorkloadAttestorEvidence | None = None


class EvidenceDocument(FrozenModel):
    """One workload's raw evidence and its request (format version 1)."""

    version: _Version
    request: Request
    image: ImageSection | None = None
    provenance: ProvenanceEvidence | None = None
    node: NodeSection | None = None
    runtime: RuntimeSection


# --- trust configuration ---------------------------------------------------------


class ImageTrust(FrozenModel):
    """Trust anchors for image signatures."""

    cosign: CosignTrust | None = None
    sigstore: SigstoreTrust | None = None


class NodeTrust(FrozenModel):
    """Trust anchors per node evidence kind."""

    tpm: TpmTrust | None = None
    aws_iid: AwsIidTrust | None = None
    gcp_iit: GceIitTrust | None = None
    k8s_psat: PsatTrust | None = None
    sev_snp: SevSnpTrust | None = None
    tdx: TdxTrust | None = None


class RuntimeTrust(FrozenModel):
    """Trust anchors for SVIDs, service account tokens and the attestor binding."""

    x509_svid: X509SvidTrust | None = None
    jwt_svid: JwtSvidTrust | None = None
    psat: PsatTrust | None = None
    attestor: WorkloadAttestorTrust = WorkloadAttestorTrust()


class TrustConfig(FrozenModel):
    """All trust anchors (format version 1). A missing section trusts nothing."""

    version: _Version
    image: ImageTrust = ImageTrust()
    provenance: ProvenanceTrust | None = None
    node: NodeTrust = NodeTrust()
    runtime: RuntimeTrust = RuntimeTrust()


# --- loading -----------------------------------------------------------------------


def _loc_part(part: object) -> str:
    """One path part, safe to log: unknown keys come from the document itself."""
    text = str(part)
    short = text[:_MAX_LOC_PART]
    if not short.isprintable():
        short = short.encode("unicode_escape").decode("ascii")
    return short if len(text) <= _MAX_LOC_PART else short + "..."


def _location(error: Mapping[str, Any]) -> str:
    return ".".join(_loc_part(part) for part in error["loc"]) or "(document)"


def _validate(model: type[_M], data: object) -> _M:
    if isinstance(data, model):
        return data
    if not isinstance(data, Mapping):
        raise TypeError(f"must be a JSON object, got {type(data).__name__}")
    return model.model_validate(dict(data))


def parse_evidence_document(data: EvidenceDocument | Mapping[str, Any]) -> EvidenceDocument:
    """Validate an evidence document; raise EvidenceError (``evidence.malformed``)."""
    try:
        return _validate(EvidenceDocument, data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        fail(Code.MALFORMED, _location(first), error_message(first))
    except EvidenceError as exc:
        raise exc.within("(document)") from None
    except TypeError as exc:
        fail(Code.MALFORMED, "(document)", str(exc))


def parse_trust_config(data: TrustConfig | Mapping[str, Any]) -> TrustConfig:
    """Validate a trust configuration; raise ConfigError naming the field."""
    try:
        return _validate(TrustConfig, data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        raise ConfigError(
            f"invalid trust configuration at {_location(first)}: {error_message(first)}"
        ) from None
    except (EvidenceError, TypeError, ValueError) as exc:
        raise ConfigError(f"invalid trust configuration: {exc}") from None


def _read_limited(path: Path, limit: int) -> bytes:
    """At most ``limit + 1`` bytes of ``path`` (OSError propagates)."""
    with path.open("rb") as handle:
        return handle.read(limit + 1)


def _document_error(message: str) -> EvidenceError:
    return EvidenceError(message, field="(document)", code=Code.MALFORMED)


def load_evidence_document(source: Path | str | bytes) -> EvidenceDocument:
    """Read an evidence document from a JSON file path or JSON bytes (strict JSON)."""
    if isinstance(source, bytes):
        raw = source
    else:
        try:
            raw = _read_limited(Path(source), MAX_EVIDENCE_BYTES)
        except OSError as exc:
            raise _document_error(f"cannot read {source}: {exc.strerror or exc}") from None
    if len(raw) > MAX_EVIDENCE_BYTES:
        raise _document_error(f"over the {MAX_EVIDENCE_BYTES} byte limit")
    # strict JSON: no duplicate members, NaN/Infinity or lone surrogates
    return parse_evidence_document(load_json(raw, field="(document)"))


def load_trust_config(source: Path | str | bytes) -> TrustConfig:
    """Read a trust configuration from a JSON or YAML file path (or bytes).

    YAML aliases and duplicate keys are refused (``ConfigError``).
    """
    if isinstance(source, bytes):
        raw = source
    else:
        try:
            raw = _read_limited(Path(source), MAX_TRUST_BYTES)
        except OSError as exc:
            raise ConfigError(
                f"cannot read trust configuration {source}: {exc.strerror or exc}"
            ) from None
    if len(raw) > MAX_TRUST_BYTES:
        raise ConfigError(f"trust configuration is larger than {MAX_TRUST_BYTES} bytes")
    try:
        data = loads_strict_yaml(raw)
    except ValueError as exc:
        raise ConfigError(f"trust configuration is not valid JSON or YAML: {exc}") from None
    return parse_trust_config(data)
