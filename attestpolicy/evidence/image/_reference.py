"""Container image references, parsed and normalized as containers/image does.

The grammar is the one of ``github.com/distribution/reference``::

    reference := name [ ":" tag ] [ "@" digest ]
    name      := [ domain "/" ] path-component [ "/" path-component ]*

and normalization follows ``ParseNormalizedNamed``: a name without a registry
domain lives on ``docker.io``, a single-component ``docker.io`` name gains the
``library/`` prefix, and ``index.docker.io`` is spelled ``docker.io``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from attestpolicy.evidence._common import Code, fail

__all__ = ["ImageReference", "InvalidReference", "image_reference", "parse_reference"]

MAX_REFERENCE_CHARS: Final = 1024
_MAX_NAME_CHARS = 255

_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = re.compile(
    rf"^(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?$"
)
_PATH_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$", re.ASCII)
_DIGEST = re.compile(r"^([a-z0-9]+(?:[.+_-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)$")
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
_HEX64 = re.compile(r"^[a-f0-9]{64}$")

_DEFAULT_DOMAIN = "docker.io"
_LEGACY_DEFAULT_DOMAIN = "index.docker.io"
_OFFICIAL_PREFIX = "library/"


class InvalidReference(ValueError):
    """The text is not a valid image reference; ``unsupported`` for a non-sha256 digest."""

    def __init__(self, message: str, *, unsupported: bool = False) -> None:
        super().__init__(message)
        self.unsupported = unsupported


@dataclass(frozen=True, slots=True)
class ImageReference:
    """A normalized image reference.

    ``name`` is the normalized repository (``docker.io/library/busybox``), or ``None``
    for a bare ``sha256:<hex>`` digest that names no repository.
    """

    name: str | None
    tag: str | None
    digest: str | None

    def __str__(self) -> str:
        text = self.name or ""
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}" if self.name is not None else self.digest
        return text


def parse_reference(text: str) -> ImageReference:
    """Parse and normalize ``text``; raise :class:`InvalidReference` when it is not valid.

    A bare ``sha256:<64 hex>`` is accepted as a digest-only reference without a name.
    Only ``sha256`` digests are supported.
    """
    if not text or len(text) > MAX_REFERENCE_CHARS:
        raise InvalidReference(f"reference must be 1..{MAX_REFERENCE_CHARS} characters")
    if text.startswith("sha256:") and "/" not in text and "@" not in text:
        return ImageReference(name=None, tag=None, digest=_check_digest(text))
    if _HEX64.match(text):
        raise InvalidReference("a reference must not be a bare 64-character hexadecimal string")
    remainder, at, digest_text = text.partition("@")
    digest = _check_digest(digest_text) if at else None
    tag: str | None = None
    slash = remainder.rfind("/")
    colon = remainder.rfind(":")
    if colon > slash:
        remainder, tag = remainder[:colon], remainder[colon + 1 :]
        if not _TAG.match(tag):
            raise InvalidReference(f"invalid tag {tag[:140]!r}")
    return ImageReference(name=_normalize_name(remainder), tag=tag, digest=digest)


def image_reference(text: str, *, field: str) -> ImageReference:
    """:func:`parse_reference` for evidence: ``evidence.unsupported`` for a digest that is
    not sha256, ``evidence.malformed`` for anything else that is not a reference."""
    try:
        return parse_reference(text)
    except InvalidReference as exc:
        fail(Code.UNSUPPORTED if exc.unsupported else Code.MALFORMED, field, str(exc))


def _check_digest(text: str) -> str:
    match = _DIGEST.match(text)
    if match is None:
        raise InvalidReference(f"invalid digest {text[:80]!r}")
    algorithm, encoded = match.groups()
    if algorithm != "sha256":
        raise InvalidReference(
            f"unsupported digest algorithm {algorithm[:32]!r}; only sha256", unsupported=True
        )
    if not _SHA256_HEX.match(encoded):
        raise InvalidReference("sha256 digest must be 64 lowercase hex characters")
    return text


def _normalize_name(name: str) -> str:
    if not name:
        raise InvalidReference("reference has an empty repository name")
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first.lower() != first):
        domain, path = first, rest
        if not _DOMAIN.match(domain):
            raise InvalidReference(f"invalid registry domain {domain[:80]!r}")
    else:
        domain, path = _DEFAULT_DOMAIN, name
    if domain == _LEGACY_DEFAULT_DOMAIN:
        domain = _DEFAULT_DOMAIN
    if domain == _DEFAULT_DOMAIN and "/" not in path:
        path = _OFFICIAL_PREFIX + path
    if path.lower() != path:
        raise InvalidReference("repository name must be lowercase")
    for component in path.split("/"):
        if not _PATH_COMPONENT.match(component):
            raise InvalidReference(f"invalid repository path component {component[:80]!r}")
    full = f"{domain}/{path}"
    if len(full) > _MAX_NAME_CHARS:
        raise InvalidReference(f"repository name longer than {_MAX_NAME_CHARS} characters")
    return full
