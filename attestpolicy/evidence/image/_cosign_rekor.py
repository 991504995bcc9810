"""cosign's Rekor signed entry timestamp (SET) annotation, checked offline.

The ``dev.sigstore.cosign/bundle`` annotation is ``{"SignedEntryTimestamp", "Payload":
{"body", "integratedTime", "logIndex", "logID"}}``: Rekor's signature over the entry
(:func:`attestpolicy.evidence._crypto.rekor.verify_set`) and the entry itself, a
``hashedrekord`` 0.0.1 that must log exactly the signature, payload and key at hand.
Its base64 values are decoded as Go's ``base64.StdEncoding`` (line breaks skipped), as
containers/image's ``VerifyRekorSET`` reads them.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Final

from cryptography.hazmat.primitives.asymmetric import ec

from attestpolicy.errors import EvidenceError
from attestpolicy.evidence._common import (
    Code,
    check_not_future,
    decode_base64,
    exact_object,
    fail,
    json_string,
    json_uint64,
    load_json,
)
from attestpolicy.evidence._crypto.rekor import verify_set

__all__ = ["verify_set_annotation"]

_HEX: Final = re.compile(r"^[0-9a-f]+$")
_B64: Final = re.compile(r"^[A-Za-z0-9+/=\r\n]*$")  # the alphabet; decoding checks the rest
_PEM_BLOCK: Final = re.compile(
    r"^-----BEGIN ([A-Z0-9 ]+)-----\r?\n([A-Za-z0-9+/=\r\n]+)-----END \1-----\r?\n?$"
)


def verify_set_annotation(
    text: str,
    rekor_keys: Mapping[str, ec.EllipticCurvePublicKey],
    *,
    expected_der: bytes,
    signature: bytes,
    payload: bytes,
    now: datetime,
    field: str,
) -> datetime:
    """Verify the SET annotation ``text`` with the Rekor key its log ID names (``rekor_keys``
    by hex log ID), and that it logs exactly this ``signature``, ``payload`` and key or
    certificate (``expected_der``). Returns the verified integrated time.
    """
    outer = exact_object(
        load_json(text, field=field), {"SignedEntryTimestamp", "Payload"}, field=field
    )
    set_signature = _go_base64(
        json_string(outer["SignedEntryTimestamp"], field=f"{field}.SignedEntryTimestamp"),
        f"{field}.SignedEntryTimestamp",
    )
    inner = exact_object(
        outer["Payload"], {"body", "integratedTime", "logIndex", "logID"}, field=f"{field}.Payload"
    )
    body_text = json_string(inner["body"], field=f"{field}.Payload.body", pattern=_B64)
    log_id = json_string(inner["logID"], field=f"{field}.Payload.logID", pattern=_HEX)
    integrated = json_uint64(inner["integratedTime"], field=f"{field}.Payload.integratedTime")
    log_index = json_uint64(inner["logIndex"], field=f"{field}.Payload.logIndex")
    rekor_key = rekor_keys.get(log_id)
    if rekor_key is None:
        fail(
            Code.UNTRUSTED,
            f"{field}.Payload.logID",
            f"Rekor log ID {log_id[:64]} is not a trusted Rekor key",
        )
    try:
        verify_set(
            rekor_key,
            set_signature,
            body=body_text,
            integrated_time=integrated,
            log_id=bytes.fromhex(log_id),
            log_index=log_index,
        )
    except ValueError:
        fail(
            Code.SIGNATURE_INVALID,
            f"{field}.SignedEntryTimestamp",
            "Rekor signed entry timestamp does not verify",
        )
    _check_logged_entry(
        _go_base64(body_text, f"{field}.Payload.body"),
        expected_der,
        signature,
        payload,
        field=f"{field}.Payload.body",
    )
    try:
        when = datetime.fromtimestamp(integrated, tz=UTC)
    except (OverflowError, OSError, ValueError):
        fail(Code.MALFORMED, f"{field}.Payload.integratedTime", "integrated time out of range")
    check_not_future(when, now, field=f"{field}.Payload.integratedTime")
    return when


def _check_logged_entry(
    body: bytes, expected_der: bytes, raw_signature: bytes, payload: bytes, *, field: str
) -> None:
    """The logged hashedrekord 0.0.1 entry must name this key, signature and payload."""
    entry = exact_object(load_json(body, field=field), {"apiVersion", "kind", "spec"}, field=field)
    if entry["kind"] != "hashedrekord" or entry["apiVersion"] != "0.0.1":
        fail(
            Code.UNSUPPORTED,
            field,
            f"unsupported Rekor entry {str(entry['kind'])[:40]} {str(entry['apiVersion'])[:20]}",
        )
    spec = exact_object(entry["spec"], {"data", "signature"}, field=f"{field}.spec")
    data = exact_object(spec["data"], {"hash"}, field=f"{field}.spec.data")
    digest = exact_object(data["hash"], {"algorithm", "value"}, field=f"{field}.spec.data.hash")
    logged_sig = exact_object(
        spec["signature"], {"content", "publicKey"}, field=f"{field}.spec.signature"
    )
    key_obj = exact_object(
        logged_sig["publicKey"], {"content"}, field=f"{field}.spec.signature.publicKey"
    )
    content = json_string(logged_sig["content"], field=f"{field}.spec.signature.content")
    logged_key = _go_base64(
        json_string(key_obj["content"], field=f"{field}.spec.signature.publicKey.content"),
        f"{field}.spec.signature.publicKey.content",
    )
    if _pem_der(logged_key) != expected_der:
        fail(
            Code.SIGNATURE_INVALID,
            f"{field}.spec.signature.publicKey",
            "the logged public key or certificate is not the one that signed",
        )
    if _go_base64(content, f"{field}.spec.signature.content") != raw_signature:
        fail(
            Code.SIGNATURE_INVALID,
            f"{field}.spec.signature.content",
            "the logged signature is not this signature",
        )
    if digest["algorithm"] != "sha256":
        fail(
            Code.UNSUPPORTED,
            f"{field}.spec.data.hash.algorithm",
            "only sha256 hashedrekord entries are supported",
        )
    if digest["value"] != hashlib.sha256(payload).hexdigest():
        fail(
            Code.SIGNATURE_INVALID,
            f"{field}.spec.data.hash.value",
            "the logged payload hash is not this payload's",
        )


def _go_base64(text: str, field: str) -> bytes:
    """Standard padded base64 with CR and LF skipped, as Go's ``StdEncoding``."""
    return decode_base64(text, field=field, wrapped=True)


def _pem_der(pem: bytes) -> bytes | None:
    """The DER bytes of a single PEM block with nothing after it, else ``None``."""
    try:
        match = _PEM_BLOCK.match(pem.decode("ascii"))
    except UnicodeDecodeError:
        return None
    if match is None:
        return None
    body = "".join(match.group(2).split())
    try:
        return decode_base64(body, field="pem")
    except EvidenceError:
        return None
