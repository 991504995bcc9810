"""sigstore-python's exceptions, as evidence errors with stable codes and fields.

sigstore raises a few exception types whose messages say what failed; the tables map a
substring of the message to the code and field reported. The substrings follow the pinned
sigstore release (see ``_sigstore_adapter``); a message no table knows keeps the type's
default code, so a changed message never makes a failure pass.
"""

from __future__ import annotations

from typing import Final

from sigstore.errors import CertValidationError, MetadataError, VerificationError
from sigstore.errors import Error as SigstoreError
from sigstore.models import IncompatibleEntry, InvalidBundle

from attestpolicy.errors import EvidenceError
from attestpolicy.evidence._common import Code

__all__ = ["parse_error", "verification_error"]

# (substring of sigstore's message, code, field); first match wins.
_PARSE_ERRORS: Final = (
    (
        "inclusion promise or signed timestamp",
        Code.UNTRUSTED,
        "bundle.verificationMaterial",
    ),
)
_VERIFY_ERRORS: Final = (
    ("not enough sources of verified time", Code.UNTRUSTED, "timestamp"),
    ("no Timestamp Authorities", Code.UNTRUSTED, "timestamp"),
    ("too many signed timestamp", Code.MALFORMED, "timestamp"),
    ("duplicate timestamp", Code.MALFORMED, "timestamp"),
    ("failed to verify SCT", Code.UNTRUSTED, "certificate.sct"),
    ("Key usage", Code.UNTRUSTED, "certificate"),
    ("Extended usage", Code.UNTRUSTED, "certificate"),
    ("expired at time of signing", Code.EXPIRED, "certificate"),
    ("Unsupported", Code.UNSUPPORTED, "tlog_entry.kindVersion"),
    ("Expected entry type", Code.UNSUPPORTED, "tlog_entry.kindVersion"),
    ("only supported for", Code.UNSUPPORTED, "tlog_entry.kindVersion"),
    ("invalid log entry", Code.SIGNATURE_INVALID, "tlog_entry"),
    ("message digest mismatch", Code.DIGEST_MISMATCH, "message_signature.digest"),
    ("Signature is invalid for input", Code.SIGNATURE_INVALID, "message_signature"),
    ("DSSE", Code.SIGNATURE_INVALID, "dsse_envelope"),
    ("inconsistent with other materials", Code.SIGNATURE_INVALID, "tlog_entry.body"),
    ("log entry payload hash", Code.SIGNATURE_INVALID, "tlog_entry.body"),
    ("log entry signatures", Code.SIGNATURE_INVALID, "tlog_entry.body"),
)


def _from_table(
    exc: Exception, table: tuple[tuple[str, str, str], ...], default: tuple[str, str]
) -> EvidenceError:
    message = str(exc)
    for needle, code, field in table:
        if needle in message:
            return EvidenceError(message, field=field, code=code)
    return EvidenceError(message, field=default[1], code=default[0])


def parse_error(exc: Exception) -> EvidenceError:
    """The evidence error for a bundle sigstore could not parse."""
    if isinstance(exc, IncompatibleEntry):
        return EvidenceError(str(exc), field="bundle.tlogEntries", code=Code.UNSUPPORTED)
    if isinstance(exc, InvalidBundle | SigstoreError):
        return _from_table(exc, _PARSE_ERRORS, (Code.MALFORMED, "bundle"))
    # parsers below sigstore (pydantic, cryptography, base64)
    return EvidenceError(f"not a valid Sigstore bundle: {exc}", field="bundle", code=Code.MALFORMED)


def verification_error(exc: Exception) -> EvidenceError:
    """The evidence error for a bundle that failed sigstore's verification (an
    ``EvidenceError`` raised by our identity policy passes through as it is)."""
    if isinstance(exc, EvidenceError):
        return exc
    if isinstance(exc, CertValidationError):
        return EvidenceError(
            f"signing certificate does not chain to the trusted root: {exc}",
            field="certificate.chain",
            code=Code.UNTRUSTED,
        )
    if isinstance(exc, MetadataError):
        return EvidenceError(str(exc), field="trusted_root", code=Code.UNTRUSTED)
    if isinstance(exc, VerificationError):
        return _from_table(exc, _VERIFY_ERRORS, (Code.UNTRUSTED, "bundle"))
    # malformed material surfacing from cryptography/pydantic
    return EvidenceError(
        f"bundle material could not be processed: {exc}", field="bundle", code=Code.MALFORMED
    )
