"""Offline checks of a Rekor v1 transparency log entry, with ``cryptography`` only.

Used by cosign signatures (the signed entry timestamp) and by the hand-checked Sigstore
bundles of provenance (all three checks):

* the signed entry timestamp (inclusion promise): Rekor's signature over the canonical
  JSON ``{"body", "integratedTime", "logID", "logIndex"}``;
* the RFC 6962 / RFC 9162 Merkle inclusion proof of ``sha256(0x00 || body)``;
* the signed checkpoint (a signed note) that commits to the proof's tree size and root.

Each function raises ``ValueError`` with a short reason; the caller maps it to an
evidence error code.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Sequence
from typing import Final

from attestpolicy._keys import PublicKey
from attestpolicy.evidence._crypto.x509 import signature_ok

__all__ = ["leaf_hash", "verify_checkpoint", "verify_inclusion", "verify_set", "verify_signature"]

MAX_PROOF_HASHES: Final = 64
_MAX_NOTE_CHARS = 4096
_SIGNATURE_PREFIX = "\u2014 "


def verify_signature(key: PublicKey, signature: bytes, data: bytes) -> None:
    """Verify a log signature (ECDSA/RSA with SHA-256, or Ed25519) or raise ``ValueError``."""
    if not signature_ok(key, signature, data):
        raise ValueError("log signature does not verify")


def verify_set(
    key: PublicKey,
    signature: bytes,
    *,
    body: str,
    integrated_time: int,
    log_id: bytes,
    log_index: int,
) -> None:
    """Verify a signed entry timestamp over the entry's canonical JSON."""
    document = {
        "body": body,
        "integratedTime": integrated_time,
        "logID": log_id.hex(),
        "logIndex": log_index,
    }
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    verify_signature(key, signature, canonical.encode())


def leaf_hash(body: bytes) -> bytes:
    """The RFC 6962 leaf hash of an entry body."""
    return hashlib.sha256(b"\x00" + body).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def verify_inclusion(
    leaf: bytes, index: int, tree_size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check an RFC 9162 inclusion proof of ``leaf`` at ``index`` in a tree with ``root``."""
    if not 0 <= index < tree_size or tree_size >= 2**63:
        raise ValueError("inclusion proof index is outside the tree")
    if len(proof) > MAX_PROOF_HASHES or any(len(h) != 32 for h in proof):
        raise ValueError("inclusion proof hashes are malformed")
    inner = (index ^ (tree_size - 1)).bit_length()
    border = bin(index >> inner).count("1")
    if len(proof) != inner + border:
        raise ValueError(f"inclusion proof has {len(proof)} hashes, expected {inner + border}")
    node = leaf
    for level, sibling in enumerate(proof[:inner]):
        node = _node(node, sibling) if (index >> level) & 1 == 0 else _node(sibling, node)
    for sibling in proof[inner:]:
        node = _node(sibling, node)
    if node != root:
        raise ValueError("inclusion proof does not lead to the root hash")


def verify_checkpoint(
    key: PublicKey, log_id: bytes, note: str, *, tree_size: int, root: bytes
) -> None:
    """Verify a signed checkpoint and that it commits to ``tree_size`` and ``root``.

    The note is ``origin\\nsize\\nroot-base64\\n[extensions...]\\n\\n`` followed by
    signature lines ``\u2014 <name> <base64(key hint[4] || signature)>``; one line whose
    key hint is the first four bytes of ``log_id`` must verify.
    """
    if len(note) > _MAX_NOTE_CHARS:
        raise ValueError("checkpoint is too long")
    body, separator, signatures = note.partition("\n\n")
    if not separator:
        raise ValueError("checkpoint has no signature block")
    text = body + "\n"
    lines = body.split("\n")
    if len(lines) < 3 or not (lines[1].isascii() and lines[1].isdigit()):
        raise ValueError("checkpoint body is malformed")
    if int(lines[1]) != tree_size:
        raise ValueError("checkpoint tree size differs from the inclusion proof's")
    try:
        checkpoint_root = base64.b64decode(lines[2], validate=True)
    except binascii.Error:
        raise ValueError("checkpoint root hash is not base64") from None
    if checkpoint_root != root:
        raise ValueError("checkpoint root hash differs from the inclusion proof's")
    for line in signatures.split("\n"):
        if not line.startswith(_SIGNATURE_PREFIX):
            continue
        _, _, encoded = line[len(_SIGNATURE_PREFIX) :].rpartition(" ")
        try:
            raw = base64.b64decode(encoded, validate=True)
        except binascii.Error:
            continue
        if len(raw) > 4 and raw[:4] == log_id[:4]:
            verify_signature(key, raw[4:], text.encode())
            return
    raise ValueError("checkpoint carries no signature by the log's key")
