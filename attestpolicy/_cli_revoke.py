"""``attestpolicy revoke``: revoke (or lift) values in a revocation store (a SQLite file).

Every process that opens the same store (``attestpolicy serve --revocations FILE``, a
``PolicyDecisionPoint.local(revocations=FILE)``) denies on its next decision.
"""

from __future__ import annotations

import argparse
import json

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
    from attestpolicy.revocations import MEMBER_OF_KEYWORD, RevocationStore

    pairs = [
        (MEMBER_OF_KEYWORD[keyword], value)
        for name, keyword, _ in _FLAGS
        for value in getattr(args, name) or ()
    ]
    if not pairs:
        flags = ", ".join(f"--{name.replace('_', '-')}" for name, _, _ in _FLAGS)
        _fail_usage(f"name at least one value: {flags}")
    try:
        with RevocationStore(args.store) as store:
            changed = store.lift(pairs) if args.lift else store.add(pairs, args.reason)
            total = sum(len(values) for values in store.snapshot().values())
    except AttestPolicyError as exc:
        _fail_usage(str(exc))
    action = "lifted" if args.lift else "revoked"
    print(json.dumps({action: changed, "revocations": total, "store": str(args.store)}))
    return EXIT_ALLOW


def add_revoke_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``revoke`` to the command line."""
    revoke = commands.add_parser(
        "revoke",
        help="revoke (or --lift) values in a revocation store",
        description=(
            "Record revocations in a SQLite revocation store shared by every process that "
            "opens it: their next decision denies. Prints what changed as JSON."
        ),
    )
    revoke.add_argument("--store", required=True, metavar="FILE", help="revocation store")
    for name, _, what in _FLAGS:
        revoke.add_argument(
            f"--{name.replace('_', '-')}", action="append", metavar="VALUE", help=f"revoke {what}"
        )
    revoke.add_argument("--reason", default="revoked with attestpolicy revoke", help="why")
    revoke.add_argument("--lift", action="store_true", help="lift the values instead")
    revoke.set_defaults(handler=_cmd_revoke)
