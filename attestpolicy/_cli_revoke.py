"""``attestpolicy revoke``: revoke (or lift) values in a revocation store (a SQLite file), and
mark revoked the live credentials resting on them in a credential registry.

Every process that opens the same store (``attestpolicy serve --revocations FILE``, a
``PolicyDecisionPoint.local(revocations=FILE)``) denies on its next decision; the credentials
marked in the registry (``--credentials FILE``) are listed, so that whoever holds them can be
chased, and relying parties find them on the revocation list.
"""

from __future__ import annotations

import argparse
import json
import math
from contextlib import ExitStack
from typing import Any

from attestpolicy.cli import EXIT_ALLOW, _fail_usage
from attestpolicy.errors import AttestPolicyError

__all__ = ["add_revoke_command"]

# flag -> keyword of PolicyDecisionPoint.revoke (a key id is revoked as a signer subject)
_FLAGS = (
    ("signer", "signer_subject", "a keyless signer subject"),
    ("key_id", "signer_subject", "a signing key id"),
    ("image_digest", "image_digest", "an image digest"),
    ("node_id", "node_id", "a node id"),
    ("spiffe_id", "spiffe_id", "a workload SPIFFE ID"),
)


def _cmd_revoke(args: argparse.Namespace) -> int:
    from attestpolicy.broker import CredentialRegistry
    from attestpolicy.revocations import MEMBER_OF_KEYWORD, RevocationStore

    pairs = [
        (MEMBER_OF_KEYWORD[keyword], value)
        for name, keyword, _ in _FLAGS
        for value in getattr(args, name) or ()
    ]
    if not pairs:
        flags = ", ".join(f"--{name.replace('_', '-')}" for name, _, _ in _FLAGS)
        _fail_usage(f"name at least one value: {flags}")
    if args.store is None and args.credentials is None:
        _fail_usage(
            "name a revocation store (--store), a credential registry (--credentials) or both"
        )
    if args.lift and args.credentials is not None:
        _fail_usage("--lift applies to the revocation store: revoked credentials stay revoked")
    report: dict[str, Any] = {}
    try:
        with ExitStack() as opened:  # both files open (usable) before either changes
            store = registry = None
            if args.store is not None:
                store = opened.enter_context(RevocationStore(args.store))
            if args.credentials is not None:
                registry = opened.enter_context(CredentialRegistry(args.credentials))
            if store is not None:
                changed = store.lift(pairs) if args.lift else store.add(pairs, args.reason)
                report["lifted" if args.lift else "revoked"] = changed
                report["revocations"] = sum(len(values) for values in store.snapshot().values())
                report["store"] = str(args.store)
            if registry is not None:
                report["credentials"] = [
                    {
                        "jti": credential.jti,
                        "subject": credential.subject,
                        "audience": credential.audience,
                        "exp": math.ceil(credential.expires_at.timestamp()),
                    }
                    for credential in registry.revoke(pairs, reason=args.reason)
                ]
                report["registry"] = str(args.credentials)
    except AttestPolicyError as exc:
        done = f" (already done: {json.dumps(report)})" if report else ""
        _fail_usage(f"{exc}{done}")
    print(json.dumps(report))
    return EXIT_ALLOW


def add_revoke_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``revoke`` to the command line."""
    revoke = commands.add_parser(
        "revoke",
        help="revoke (or --lift) values; list the live credentials that rested on them",
        description=(
            "Record revocations in a SQLite revocation store shared by every process that "
            "opens it: their next decision denies. With --credentials, also mark revoked the "
            "live credentials resting on the values in that credential registry, and list "
            "them. Lifting a value never un-revokes a credential. Prints what changed as JSON."
        ),
    )
    revoke.add_argument("--store", metavar="FILE", help="revocation store")
    revoke.add_argument(
        "--credentials",
        metavar="FILE",
        help="credential registry: mark and list the live credentials resting on the values",
    )
    for name, _, what in _FLAGS:
        revoke.add_argument(
            f"--{name.replace('_', '-')}", action="append", metavar="VALUE", help=f"revoke {what}"
        )
    revoke.add_argument("--reason", default="revoked with attestpolicy revoke", help="why")
    revoke.add_argument(
        "--lift",
        action="store_true",
        help="lift the values from the store instead (credentials revoked stay revoked)",
    )
    revoke.set_defaults(handler=_cmd_revoke)
