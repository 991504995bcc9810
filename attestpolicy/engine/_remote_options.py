"""The remote evaluator's options, checked: the OPA URL, time limits, size cap, token, TLS."""

from __future__ import annotations

import ipaddress
import math
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from attestpolicy.errors import EvaluatorError

__all__ = [
    "Endpoint",
    "RemoteConfigError",
    "check_max_response_bytes",
    "check_seconds",
    "check_token",
    "parse_url",
    "request_head",
    "tls_context",
]

_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
_VISIBLE_ASCII: Final = frozenset(chr(code) for code in range(0x21, 0x7F))


class RemoteConfigError(EvaluatorError, ValueError):
    """The remote evaluator was given an unusable URL, time limit, size cap, token or CA bundle."""

    code = "remote.invalid_config"


@dataclass(frozen=True)
class Endpoint:
    """A parsed OPA base URL."""

    scheme: str
    hostname: str  # as given to the resolver: ASCII, IPv6 literals without brackets
    host: str  # as it appears in a URL: IPv6 literals in brackets
    port: int
    prefix: str  # "" or "/some/prefix" (a reverse proxy's mount point)
    loopback: bool

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}{self.prefix}"


def parse_url(url: str) -> Endpoint:
    if not isinstance(url, str) or not url.strip():
        raise RemoteConfigError("OPA URL must be a non-empty string")
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise RemoteConfigError(f"invalid OPA URL {url!r}: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise RemoteConfigError(f"OPA URL must use http or https, got {url!r}")
    hostname = parts.hostname
    if not hostname:
        raise RemoteConfigError(f"OPA URL has no host: {url!r}")
    if not hostname.isascii():  # an internationalized name: its ASCII (punycode) form
        try:
            hostname = hostname.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise RemoteConfigError(f"invalid host name in OPA URL {url!r}: {exc}") from None
    if not _VISIBLE_ASCII.issuperset(hostname):
        raise RemoteConfigError(f"invalid host name in OPA URL {url!r}")
    if parts.username is not None or parts.password is not None:
        raise RemoteConfigError("OPA URL must not carry credentials; use token= instead")
    if parts.query or parts.fragment:
        raise RemoteConfigError(f"OPA URL must not have a query or fragment: {url!r}")
    prefix = parts.path.rstrip("/")
    if not _VISIBLE_ASCII.issuperset(prefix):
        raise RemoteConfigError(
            f"OPA URL path must be ASCII without spaces or control characters "
            f"(percent-encode the others): {url!r}"
        )
    if prefix.endswith("/v1") or "/v1/data" in prefix:
        raise RemoteConfigError(
            f"pass the server's base URL (e.g. http://127.0.0.1:8181), not an API path: {url!r}"
        )
    try:
        address = ipaddress.ip_address(hostname)
    except ValueError:
        loopback = hostname == "localhost"
        host = hostname
    else:
        loopback = address.is_loopback
        host = f"[{hostname}]" if address.version == 6 else hostname
    return Endpoint(
        scheme=scheme,
        hostname=hostname,
        host=host,
        port=port if port is not None else _DEFAULT_PORTS[scheme],
        prefix=prefix,
        loopback=loopback,
    )


def check_seconds(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RemoteConfigError(f"{name} must be a number of seconds")
    if not math.isfinite(value) or value <= 0:
        raise RemoteConfigError(f"{name} must be a positive, finite number of seconds")
    return float(value)


def check_max_response_bytes(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise RemoteConfigError("max_response_bytes must be a positive integer (bytes)")
    return value


def check_token(token: str | None, endpoint: Endpoint) -> str | None:
    if token is None:
        return None
    if not isinstance(token, str) or not token or not _VISIBLE_ASCII.issuperset(token):
        raise RemoteConfigError(
            "token must be a non-empty string of printable ASCII "
            "(no spaces, line breaks or other control characters)"
        )
    if endpoint.scheme == "http" and not endpoint.loopback:
        raise RemoteConfigError(
            "refusing to send a bearer token in clear text: use https for a non-loopback OPA"
        )
    return token


def request_head(endpoint: Endpoint, path: str, token: str | None) -> bytes:
    """A POST of JSON to ``path`` (under the URL's prefix), up to the Content-Length value.

    The headers are what http.client would send (``Host``, ``Accept-Encoding: identity``),
    the content types, and ``Authorization`` when there is a token (checked above).
    """
    host = endpoint.host
    if endpoint.port != _DEFAULT_PORTS[endpoint.scheme]:
        host = f"{host}:{endpoint.port}"
    lines = [
        f"POST {endpoint.prefix}{path} HTTP/1.1",
        f"Host: {host}",
        "User-Agent: attestpolicy",
        "Accept-Encoding: identity",
        "Accept: application/json",
        "Content-Type: application/json",
    ]
    if token is not None:
        lines.append(f"Authorization: Bearer {token}")
    return ("\r\n".join(lines) + "\r\nContent-Length: ").encode("ascii")


def tls_context(ca_bundle: str | Path | None, endpoint: Endpoint) -> ssl.SSLContext | None:
    """The TLS configuration of an https endpoint (``None`` for http).

    The server's certificate and name are always verified, against ``ca_bundle`` (a PEM
    file or a hashed directory) or else the system store at OpenSSL's built-in location.
    Nothing comes from the environment: ``SSL_CERT_FILE``, ``SSL_CERT_DIR`` and
    ``SSLKEYLOGFILE`` are ignored.
    """
    if endpoint.scheme != "https":
        if ca_bundle is not None:
            raise RemoteConfigError("ca_bundle is only meaningful with an https OPA URL")
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the chain and the name
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.hostname_checks_common_name = False
    if ca_bundle is None:
        system = ssl.get_default_verify_paths()
        cafile, capath = Path(system.openssl_cafile), Path(system.openssl_capath)
        context.load_verify_locations(
            cafile=cafile if cafile.is_file() else None,
            capath=capath if capath.is_dir() else None,
        )
        return context
    path = Path(ca_bundle)
    if not path.exists():
        raise RemoteConfigError(f"CA bundle not found: {path}")
    try:
        if path.is_dir():
            context.load_verify_locations(capath=path)
        else:
            context.load_verify_locations(cafile=path)
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        raise RemoteConfigError(f"CA bundle {path} is unusable: {exc}") from None
    return context
