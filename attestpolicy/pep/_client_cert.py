"""The client certificate a request presented: from a TLS-terminating proxy's header, or
from the ASGI TLS extension (``scope["extensions"]["tls"]``) of the server itself."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import unquote

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from attestpolicy._keys import CERTIFICATE_ERRORS
from attestpolicy.pep._tokens import Rejection

__all__ = ["check_header_name", "presented_certificate"]

_MAX_HEADER_BYTES: Final = 16 * 1024


def check_header_name(name: str | None) -> bytes | None:
    """The header name as ASGI gives it (lower-case bytes), or None; ValueError if unusable."""
    if name is None:
        return None
    if not isinstance(name, str) or not name or not name.isascii() or not name.isprintable():
        raise ValueError("client_cert_header must be a printable ASCII header name")
    if any(char in name for char in ' :"(),/;<=>?@[\\]{}'):
        raise ValueError(f"client_cert_header {name!r} is not a header name")
    return name.lower().encode("ascii")


def _der_of_pem(pem: str) -> bytes:
    try:
        return x509.load_pem_x509_certificate(pem.encode("ascii")).public_bytes(Encoding.DER)
    except (*CERTIFICATE_ERRORS, UnicodeError):
        raise Rejection(401, "the client certificate presented cannot be read") from None


def presented_certificate(scope: Mapping[str, Any], header: bytes | None) -> bytes | None:
    """The DER client certificate of the request, or None when it presented none.

    With ``header`` (a proxy's header carrying the URL-encoded PEM certificate, as
    nginx's ``$ssl_client_escaped_cert`` or Envoy's ``%DOWNSTREAM_PEER_CERT%``) only that
    header counts: one occurrence, empty meaning no certificate. Without it, the ASGI TLS
    extension's ``client_cert_chain[0]``, unless the server reports ``client_cert_error``.
    A certificate that cannot be read is a :class:`Rejection` (401).
    """
    if header is not None:
        values = [value for name, value in scope.get("headers", ()) if name.lower() == header]
        if not values or not values[0]:
            return None
        if len(values) > 1 or len(values[0]) > _MAX_HEADER_BYTES:
            raise Rejection(401, "the client certificate header is ambiguous or too large")
        return _der_of_pem(unquote(values[0].decode("latin-1")))
    extensions = scope.get("extensions")
    tls = extensions.get("tls") if isinstance(extensions, Mapping) else None
    if not isinstance(tls, Mapping) or tls.get("client_cert_error") is not None:
        return None
    chain = tls.get("client_cert_chain")
    first = next(iter(chain), None) if chain else None
    return _der_of_pem(first) if isinstance(first, str) else None
