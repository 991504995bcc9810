"""The broker's signing keys: one private key with its ``kid``, and the set published as JWKS.

A :class:`SigningKey` is ES256 (ECDSA on P-256) or EdDSA (Ed25519). Its ``kid`` is the RFC
7638 JWK thumbprint (SHA-256, base64url without padding), so the same key always has the
same ``kid`` in every process. A key file is PEM (PKCS#8 or the traditional formats
``cryptography`` reads), unencrypted, and must not be readable or writable by group or
others: :meth:`SigningKey.load` refuses it otherwise. The private key never appears in a
``repr``, ``str``, log line or error message.

A :class:`KeySet` publishes several keys and signs with one: :meth:`KeySet.rotate` makes a
new key active and keeps the old ones in the JWKS, so credentials they signed still verify
until they expire; :meth:`KeySet.retire` then drops an old key.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import stat
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final, TypeAlias

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from attestpolicy._keys import load_private_key
from attestpolicy.broker._errors import BrokerError

__all__ = ["ALGORITHMS", "KeySet", "SigningKey"]

ALGORITHMS: Final = ("ES256", "EdDSA")
"""The JWS algorithms the broker signs with."""

MAX_KEY_FILE_BYTES: Final = 64 * 1024
"""Largest signing key file read (a PEM key is well under 1 KiB)."""

_PrivateKey: TypeAlias = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
_P256_COORDINATE_BYTES: Final = 32


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _read_limited(fd: int, limit: int) -> bytes:
    """At most ``limit`` bytes from ``fd``."""
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = os.read(fd, limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _algorithm_of(key: object) -> str | None:
    if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
        return "ES256"
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "EdDSA"
    return None


def _thumbprint_members(key: _PrivateKey) -> dict[str, str]:
    """The JWK members RFC 7638 hashes: the required public members of the key type."""
    public = key.public_key()
    if isinstance(public, ed25519.Ed25519PublicKey):
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return {"crv": "Ed25519", "kty": "OKP", "x": _b64url(raw)}
    numbers = public.public_numbers()
    size = _P256_COORDINATE_BYTES
    return {
        "crv": "P-256",
        "kty": "EC",
        "x": _b64url(numbers.x.to_bytes(size, "big")),
        "y": _b64url(numbers.y.to_bytes(size, "big")),
    }


def _thumbprint(members: Mapping[str, str]) -> str:
    """RFC 7638: SHA-256 over the members in lexicographic order, no whitespace."""
    canonical = json.dumps(dict(sorted(members.items())), separators=(",", ":"))
    return _b64url(hashlib.sha256(canonical.encode("utf-8")).digest())


class SigningKey:
    """One private signing key (ES256 or EdDSA) and its ``kid``.

    Build one with :meth:`load` (a PEM file), :meth:`generate`, or from a ``cryptography``
    private key object. ``repr``/``str`` show the ``kid`` and algorithm only.
    """

    __slots__ = ("_jwk", "_key", "algorithm", "kid")

    def __init__(self, private_key: _PrivateKey) -> None:
        algorithm = _algorithm_of(private_key)
        if algorithm is None:
            raise BrokerError(
                f"unsupported signing key type {type(private_key).__name__}: "
                "the broker signs with ES256 (ECDSA P-256) or EdDSA (Ed25519)"
            )
        members = _thumbprint_members(private_key)
        self._key: _PrivateKey = private_key
        self.algorithm: str = algorithm
        self.kid: str = _thumbprint(members)
        self._jwk: dict[str, str] = {**members, "kid": self.kid, "alg": algorithm, "use": "sig"}

    @classmethod
    def generate(cls, algorithm: str = "ES256") -> SigningKey:
        """A new random key: ``"ES256"`` (default) or ``"EdDSA"``."""
        if algorithm == "ES256":
            return cls(ec.generate_private_key(ec.SECP256R1()))
        if algorithm == "EdDSA":
            return cls(ed25519.Ed25519PrivateKey.generate())
        raise BrokerError(f"unsupported signing algorithm {algorithm!r}; use one of {ALGORITHMS}")

    @classmethod
    def load(cls, path: str | Path) -> SigningKey:
        """Load an unencrypted PEM key file.

        Refused with :class:`BrokerError` (naming the file, never its content): a file that
        group or others may read, write or execute, a file that is not a regular file, and
        a key that is not ES256 or EdDSA.
        """
        where = Path(path)
        try:
            # O_NONBLOCK: opening a FIFO must not hang (fstat then refuses it)
            fd = os.open(where, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            raise BrokerError(f"cannot read signing key {where}: {exc.strerror or exc}") from None
        try:
            info = os.fstat(fd)  # the file opened, not the name: no race
            if not stat.S_ISREG(info.st_mode):
                raise BrokerError(f"signing key {where} is not a regular file")
            mode = stat.S_IMODE(info.st_mode)
            if mode & 0o077:
                raise BrokerError(
                    f"signing key {where} has mode {mode:04o}: group and others must have no "
                    f"access (chmod 600 {where})"
                )
            pem = _read_limited(fd, MAX_KEY_FILE_BYTES + 1)
        finally:
            os.close(fd)
        if len(pem) > MAX_KEY_FILE_BYTES:
            raise BrokerError(f"signing key {where} is over {MAX_KEY_FILE_BYTES} bytes")
        try:
            key = load_private_key(pem, what=f"signing key {where}")
        except ValueError as exc:  # messages name the file and the problem, never the bytes
            raise BrokerError(str(exc)) from None
        if (
            not isinstance(key, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey)
            or _algorithm_of(key) is None
        ):
            raise BrokerError(
                f"signing key {where} is a {type(key).__name__}: the broker signs with "
                "ES256 (ECDSA P-256) or EdDSA (Ed25519)"
            )
        return cls(key)

    def save(self, path: str | Path) -> None:
        """Write the key as unencrypted PKCS#8 PEM with mode 0600.

        The file is written beside ``path`` first and then linked into place, so a reader
        never sees half a key; an existing ``path`` is never overwritten (BrokerError).
        """
        where = Path(path)
        pem = self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        partial = where.with_name(f".{where.name}.{secrets.token_hex(8)}.tmp")
        try:
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.fchmod(fd, 0o600)  # whatever the umask
                os.write(fd, pem)
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(partial, where)  # atomic, and fails when the target exists
            except FileExistsError:
                raise BrokerError(f"signing key {where} already exists; not overwritten") from None
        except OSError as exc:
            raise BrokerError(f"cannot write signing key {where}: {exc.strerror or exc}") from None
        finally:
            partial.unlink(missing_ok=True)

    def public_jwk(self) -> dict[str, str]:
        """The public key as a JWK: ``kty``, ``crv``, ``x`` (and ``y``), ``kid``, ``alg``,
        ``use`` = ``"sig"``."""
        return dict(self._jwk)

    def sign(self, claims: Mapping[str, Any]) -> str:
        """A compact JWS over ``claims``, header ``{"alg", "kid", "typ": "JWT"}``."""
        return jwt.encode(
            dict(claims), self._key, algorithm=self.algorithm, headers={"kid": self.kid}
        )

    def __repr__(self) -> str:
        return f"SigningKey(kid={self.kid!r}, algorithm={self.algorithm!r})"

    def __reduce__(self) -> Any:
        raise TypeError("a SigningKey is not pickled; load it from its file in each process")


class KeySet:
    """The broker's keys: one active key signs, every key is published in the JWKS.

    Thread-safe: :meth:`rotate` and :meth:`retire` may run while other threads sign.
    """

    def __init__(self, active: SigningKey, *, retired: Sequence[SigningKey] = ()) -> None:
        self._lock = threading.Lock()
        self._active = active
        self._retired: tuple[SigningKey, ...] = ()
        self._set_retired(retired)

    def _set_retired(self, retired: Sequence[SigningKey]) -> None:
        seen = {self._active.kid}
        kept = []
        for key in retired:
            if key.kid not in seen:
                seen.add(key.kid)
                kept.append(key)
        self._retired = tuple(kept)

    @property
    def active(self) -> SigningKey:
        """The key new credentials are signed with."""
        return self._active

    @property
    def retired(self) -> tuple[SigningKey, ...]:
        """The keys still published for verification, newest first."""
        return self._retired

    def rotate(self, new: SigningKey) -> None:
        """Sign with ``new`` from now on; the previous active key stays published."""
        with self._lock:
            if new.kid == self._active.kid:
                return
            previous = self._active
            self._active = new
            self._set_retired([previous, *self._retired])

    def retire(self, kid: str) -> None:
        """Stop publishing the key ``kid`` (credentials it signed stop verifying). The
        active key cannot be retired: rotate first. An unknown ``kid`` is a BrokerError."""
        with self._lock:
            if kid == self._active.kid:
                raise BrokerError(f"key {kid} is the active key: rotate to another key first")
            if all(key.kid != kid for key in self._retired):
                raise BrokerError(f"no published key has kid {kid}")
            self._retired = tuple(key for key in self._retired if key.kid != kid)

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """``{"keys": [...]}``: the public JWKs, the active key first."""
        with self._lock:
            keys = (self._active, *self._retired)
        return {"keys": [key.public_jwk() for key in keys]}

    def __repr__(self) -> str:
        return f"KeySet(active={self._active!r}, retired={list(self._retired)!r})"
