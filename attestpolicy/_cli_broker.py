"""``attestpolicy credential``: the credential broker from the command line.

- ``keygen --out FILE``: a new signing key (ES256 or EdDSA), written with mode 600.
- ``issue``: verify evidence, decide, and print a credential (exit 0) or the deny (exit 1).
- ``ear``: the same decision as a signed EAR attestation result (exit as ``issue``).
- ``jwks``: the public keys of signing keys, as a JWKS.

``serve --signing-key`` offers the same over HTTP (``docs/broker.md``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from attestpolicy.cli import (
    EXIT_ALLOW,
    EXIT_DENY,
    _add_engine_arg,
    _evidence_inputs,
    _fail_usage,
    _load_config_arg,
    _now_arg,
    _read_bytes,
)
from attestpolicy.errors import AttestPolicyError

if TYPE_CHECKING:
    from attestpolicy.broker import CredentialBroker

__all__ = ["add_credential_command"]


def _keys(paths: list[str]) -> Any:
    from attestpolicy.broker import KeySet, SigningKey

    try:
        loaded = [SigningKey.load(path) for path in paths]
    except AttestPolicyError as exc:
        _fail_usage(str(exc))
    return KeySet(loaded[0], retired=loaded[1:])


def _broker(args: argparse.Namespace) -> CredentialBroker:
    from attestpolicy.broker import CredentialBroker, CredentialRegistry
    from attestpolicy.pdp import PolicyDecisionPoint

    keys = _keys(args.signing_key)
    config = _load_config_arg(args.config)
    try:
        pdp = PolicyDecisionPoint.local(
            args.policy, config, engine=args.engine or "regorus", revocations=args.revocations
        )
        registry = CredentialRegistry(args.credentials) if args.credentials else None
        return CredentialBroker(pdp, keys, args.issuer, registry)
    except AttestPolicyError as exc:
        _fail_usage(str(exc))


def _appraisal_inputs(args: argparse.Namespace) -> tuple[Any, Any, dict[str, Any]]:
    from attestpolicy.evidence.document import load_evidence_document

    evidence_path, trust, options = _evidence_inputs(args)
    del options["nonce_audience"]
    try:
        document = load_evidence_document(evidence_path)
    except AttestPolicyError as exc:
        _fail_usage(str(exc))
    options["now"] = _now_arg(args.now)
    return document, trust, options


def _cmd_issue(args: argparse.Namespace) -> int:
    document, trust, options = _appraisal_inputs(args)
    certificate = _read_bytes(args.client_cert, "client certificate") if args.client_cert else None
    with _broker(args) as broker:
        credential = broker.issue(document, trust, client_certificate=certificate, **options)
    content: dict[str, Any] = {"decision": credential.decision.to_json_dict()}
    if credential.token is not None and credential.expires_at is not None:
        content = {
            "token": credential.token,
            "jti": credential.jti,
            "expires_at": credential.expires_at.isoformat(),
            **content,
        }
    print(json.dumps(content, indent=2))
    return EXIT_ALLOW if credential.token is not None else EXIT_DENY


def _cmd_ear(args: argparse.Namespace) -> int:
    document, trust, options = _appraisal_inputs(args)
    with _broker(args) as broker:
        result = broker.ear(document, trust, **options)
    print(
        json.dumps(
            {
                "ear": result.token,
                "claims": result.claims,
                "decision": result.decision.to_json_dict(),
            },
            indent=2,
        )
    )
    return EXIT_ALLOW if result.decision.allow else EXIT_DENY


def _cmd_keygen(args: argparse.Namespace) -> int:
    from attestpolicy.broker import SigningKey

    out = Path(args.out)
    if out.exists():
        _fail_usage(f"{out} exists: a signing key is never overwritten")
    try:
        key = SigningKey.generate(args.algorithm)
        key.save(out)
    except AttestPolicyError as exc:  # its message names the file
        _fail_usage(str(exc))
    except OSError as exc:
        _fail_usage(f"cannot write {out}: {exc.strerror or exc}")
    print(json.dumps({"kid": key.kid, "algorithm": key.algorithm, "path": str(out)}))
    return EXIT_ALLOW


def _cmd_jwks(args: argparse.Namespace) -> int:
    print(json.dumps(_keys(args.signing_key).jwks(), indent=2))
    return EXIT_ALLOW


def _add_broker_args(command: argparse.ArgumentParser) -> None:
    command.add_argument("--evidence", required=True, metavar="FILE", help="evidence JSON")
    command.add_argument(
        "--trust", required=True, metavar="FILE", help="trust configuration (JSON or YAML)"
    )
    command.add_argument(
        "--config",
        required=True,
        metavar="FILE",
        help="JSON document placed at data.attestpolicy.config",
    )
    command.add_argument("--policy", metavar="DIR", help="Rego policy directory")
    command.add_argument(
        "--signing-key",
        required=True,
        action="append",
        metavar="FILE",
        help="PEM private key, mode 600 (repeat: the first signs, the others are published)",
    )
    command.add_argument("--issuer", required=True, metavar="URL", help="the iss claim")
    command.add_argument(
        "--credentials", metavar="FILE", help="issued-credential registry (SQLite) to record in"
    )
    command.add_argument("--revocations", metavar="FILE", help="revocation store (SQLite)")
    command.add_argument("--now", metavar="TS", help="verify and issue at this RFC 3339 time")
    command.add_argument("--nonce", metavar="HEX", help="the freshness nonce issued (hex)")
    command.set_defaults(nonce_audience=None)  # identity tokens are checked for their own
    _add_engine_arg(command)


def add_credential_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    """Add ``credential`` (keygen, issue, ear, jwks) to the command line."""
    credential = commands.add_parser(
        "credential",
        help="issue short-lived credentials from verified evidence (keygen, issue, ear, jwks)",
        description="The credential broker from the command line (docs/broker.md).",
    )
    actions = credential.add_subparsers(dest="action", required=True, metavar="ACTION")

    keygen = actions.add_parser("keygen", help="write a new signing key (mode 600)")
    keygen.add_argument("--out", required=True, metavar="FILE", help="where to write it")
    keygen.add_argument("--algorithm", choices=("ES256", "EdDSA"), default="ES256")
    keygen.set_defaults(handler=_cmd_keygen)

    issue = actions.add_parser(
        "issue", help="verify, decide and print a credential (exit 0) or the deny (exit 1)"
    )
    _add_broker_args(issue)
    issue.add_argument(
        "--client-cert",
        metavar="FILE",
        help="the workload's client certificate (PEM or DER) to bind the credential to",
    )
    issue.set_defaults(handler=_cmd_issue)

    ear = actions.add_parser("ear", help="the decision as a signed EAR attestation result")
    _add_broker_args(ear)
    ear.set_defaults(handler=_cmd_ear)

    jwks = actions.add_parser("jwks", help="print the JWKS of signing keys")
    jwks.add_argument("--signing-key", required=True, action="append", metavar="FILE")
    jwks.set_defaults(handler=_cmd_jwks)
