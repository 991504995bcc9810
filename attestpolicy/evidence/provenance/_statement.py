"""In-toto statements: what a signed provenance payload says, read strictly.

:func:`read_statement` checks the payload is an in-toto statement (v0.1 or v1),
:func:`predicate_facts` reads what the claims need from its predicate (SLSA provenance
v0.1/v0.2/v1: builder and source; a SLSA verification summary must say PASSED) and its
subject digests; :func:`link_artifacts` reads an in-toto link's materials and products.
Everything raises :class:`~attestpolicy.errors.EvidenceError` naming the statement field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

from attestpolicy.evidence._common import Code, fail, load_json_object
from attestpolicy.evidence.provenance.dsse import IN_TOTO_PAYLOAD_TYPE

__all__ = [
    "DEFAULT_PREDICATE_TYPES",
    "MAX_TEXT",
    "Facts",
    "link_artifacts",
    "predicate_facts",
    "read_statement",
    "short_text",
]

STATEMENT_TYPES: Final = frozenset(
    {"https://in-toto.io/Statement/v0.1", "https://in-toto.io/Statement/v1"}
)
SLSA_PROVENANCE_V02: Final = frozenset(
    {"https://slsa.dev/provenance/v0.1", "https://slsa.dev/provenance/v0.2"}
)
SLSA_PROVENANCE_V1: Final = "https://slsa.dev/provenance/v1"
SLSA_VSA_V1: Final = "https://slsa.dev/verification_summary/v1"
DEFAULT_PREDICATE_TYPES: Final = (*sorted(SLSA_PROVENANCE_V02), SLSA_PROVENANCE_V1, SLSA_VSA_V1)
"""Predicate types accepted unless the trust configuration says otherwise."""

MAX_TEXT: Final = 4096
"""Longest text (builder id, predicate type, link name) read from a statement."""

_MAX_SUBJECTS = 4096
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True, slots=True)
class Facts:
    """What the provenance claim takes from a statement."""

    predicate_type: str
    subject_digests: tuple[str, ...]
    builder_id: str | None
    source_repo: str | None


def short_text(value: object, field_name: str) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= MAX_TEXT:
        fail(Code.MALFORMED, field_name, f"must be a string of 1 to {MAX_TEXT} characters")
    return value


def read_statement(payload_type: str, payload: bytes) -> dict[str, Any]:
    if payload_type != IN_TOTO_PAYLOAD_TYPE:
        fail(
            Code.UNSUPPORTED,
            "statement",
            f"payload type {payload_type[:80]!r} is not an in-toto statement",
        )
    statement = load_json_object(payload, field="statement")
    statement_type = statement.get("_type")
    if not isinstance(statement_type, str) or statement_type not in STATEMENT_TYPES:
        fail(Code.UNSUPPORTED, "statement._type", "not an in-toto statement v0.1 or v1")
    return statement


def predicate_facts(statement: Mapping[str, Any], accepted: tuple[str, ...]) -> Facts:
    predicate_type = short_text(statement.get("predicateType"), "statement.predicateType")
    if predicate_type not in accepted:
        fail(
            Code.UNSUPPORTED,
            "statement.predicateType",
            f"predicate type {predicate_type[:200]!r} is not accepted",
        )
    digests = _subject_digests(statement.get("subject"))
    predicate = statement.get("predicate")
    if not isinstance(predicate, dict):
        fail(Code.MALFORMED, "statement.predicate", "must be a JSON object")
    builder_id: str | None = None
    source: str | None = None
    if predicate_type in SLSA_PROVENANCE_V02:
        builder_id = short_text(_path(predicate, "builder", "id"), "statement.predicate.builder.id")
        source = _first_uri(predicate.get("materials"), "statement.predicate.materials")
    elif predicate_type == SLSA_PROVENANCE_V1:
        builder_id = short_text(
            _path(predicate, "runDetails", "builder", "id"),
            "statement.predicate.runDetails.builder.id",
        )
        source = _first_uri(
            _path(predicate, "buildDefinition", "resolvedDependencies"),
            "statement.predicate.buildDefinition.resolvedDependencies",
        )
    elif predicate_type == SLSA_VSA_V1 and predicate.get("verificationResult") != "PASSED":
        fail(
            Code.UNTRUSTED,
            "statement.predicate.verificationResult",
            "the verification summary does not say PASSED",
        )
    return Facts(predicate_type, digests, builder_id, source)


def _path(value: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _subject_digests(subjects: object) -> tuple[str, ...]:
    if not isinstance(subjects, list) or not 0 < len(subjects) <= _MAX_SUBJECTS:
        fail(
            Code.MALFORMED, "statement.subject", f"must be a list of 1 to {_MAX_SUBJECTS} subjects"
        )
    digests: dict[str, None] = {}
    for index, subject in enumerate(subjects):
        where = f"statement.subject[{index}].digest"
        digest = subject.get("digest") if isinstance(subject, dict) else None
        if not isinstance(digest, dict) or not all(isinstance(v, str) for v in digest.values()):
            fail(Code.MALFORMED, where, "must map algorithms to hex strings")
        value = digest.get("sha256")
        if value is None:
            continue
        if not _SHA256_HEX.match(value):
            fail(Code.MALFORMED, where, "sha256 must be 64 lowercase hex characters")
        digests["sha256:" + value] = None
    return tuple(digests)


def _first_uri(entries: object, field_name: str) -> str | None:
    if entries is None:
        return None
    if not isinstance(entries, list):
        fail(Code.MALFORMED, field_name, "must be a list")
    if not entries:
        return None
    uri = entries[0].get("uri") if isinstance(entries[0], dict) else None
    if uri is None:
        return None
    return _repository(short_text(uri, f"{field_name}[0].uri"))


def _repository(uri: str) -> str:
    """Drop a ``git+`` scheme prefix and an ``@<ref>`` path suffix (SLSA's git URI form)."""
    uri = uri.removeprefix("git+")
    try:
        parts = urlsplit(uri)
    except ValueError:
        return uri
    path = parts.path.split("@", 1)[0]
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, parts.fragment))


def link_artifacts(value: object, field_name: str) -> dict[str, str]:
    if not isinstance(value, dict) or len(value) > _MAX_SUBJECTS:
        fail(Code.MALFORMED, field_name, f"must map at most {_MAX_SUBJECTS} paths to digests")
    artifacts: dict[str, str] = {}
    for path, digest in value.items():
        where = f"{field_name}[{path[:80]!r}]"
        if not isinstance(digest, dict):
            fail(Code.MALFORMED, where, "must map algorithms to hex")
        sha256 = digest.get("sha256")
        if sha256 is None:
            continue
        if not isinstance(sha256, str) or not _SHA256_HEX.match(sha256):
            fail(Code.MALFORMED, where, "sha256 must be 64 lowercase hex characters")
        artifacts[path] = "sha256:" + sha256
    return artifacts
