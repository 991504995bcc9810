"""``attestpolicy replay``: decide recorded inputs again with a candidate policy, and say
what would change (docs/operations.md, "Replaying a candidate bundle").

Exit codes: 0 no widening (or ``--allow-widening``), 1 some recorded deny would be an
allow, 2 usage errors (a log, bundle, key or configuration that cannot be used, a bundle
whose signature fails).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

from attestpolicy.cli import EXIT_ALLOW, EXIT_DENY, _fail_usage, _load_config_arg, _read_bytes
from attestpolicy.errors import AttestPolicyError

__all__ = ["add_replay_command"]


def _check_logs(paths: list[str]) -> None:
    if paths.count("-") > 1:
        _fail_usage("--logs - (standard input) can be given once")
    for path in paths:
        if path == "-":
            continue
        try:
            with Path(path).open("rb"):
                pass
        except OSError as exc:
            _fail_usage(f"cannot read decision log {path}: {exc.strerror or exc}")


def _cmd_replay(args: argparse.Namespace) -> int:
    from attestpolicy.replay import LogLine, load_candidate, read_decision_log, replay
    from attestpolicy.revocations import RevocationStore

    _check_logs(args.logs)
    if args.max_listed < 0:
        _fail_usage("--list must be >= 0")
    if args.verification_key is not None and args.bundle is None:
        _fail_usage("--verification-key applies to --bundle")
    if args.bundle is not None and not Path(args.bundle).exists():
        _fail_usage(f"no such bundle: {args.bundle}")
    if args.revocations is not None and not Path(args.revocations).is_file():
        _fail_usage(f"no such revocation store: {args.revocations}")
    config = _load_config_arg(args.config)
    key = _read_bytes(args.verification_key, "verification key") if args.verification_key else None
    with ExitStack() as stack:
        try:
            store = (
                stack.enter_context(RevocationStore(args.revocations))
                if args.revocations is not None
                else None
            )
            candidate = stack.enter_context(
                load_candidate(
                    bundle=Path(args.bundle) if args.bundle is not None else None,
                    policy_dir=args.policy,
                    config=config,
                    verification_key=key,
                    engine=args.engine,
                    revocations=store,
                )
            )
        except AttestPolicyError as exc:
            _fail_usage(f"candidate refused [{exc.code}]: {exc}")
        lines: Iterator[LogLine] = itertools.chain.from_iterable(
            read_decision_log(path) for path in args.logs
        )
        try:
            report = replay(lines, candidate.evaluator, max_listed=args.max_listed)
        except OSError as exc:
            _fail_usage(f"cannot read the decision logs: {exc.strerror or exc}")
    report = dataclasses.replace(report, warnings=candidate.warnings)
    if args.format == "json":
        print(json.dumps(report.to_json_dict(), indent=2))
    else:
        print(report.table())
    if not report.replayed:
        print("attestpolicy: warning: no recorded decision was replayed", file=sys.stderr)
    if report.widening and not args.allow_widening:
        print(
            f"attestpolicy: {report.counts.get('deny_to_allow', 0)} recorded deny(s) would "
            "be allowed by the candidate (pass --allow-widening to accept)",
            file=sys.stderr,
        )
        return EXIT_DENY
    return EXIT_ALLOW


def add_replay_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``replay`` to the command line."""
    replay = commands.add_parser(
        "replay",
        help="re-decide logged decisions with a candidate policy; exit 1 if any deny -> allow",
        description=(
            "Decide every input recorded in decision logs (OPA's event format, JSON lines, "
            "gzip too) again with a candidate bundle or policy directory and its "
            "configuration, at the time each was logged (the input's now), and print what "
            "would change: allow -> deny, deny -> allow, reasons and TTLs, by reason code and "
            "by workload. Masked or erased inputs are reported as not replayable. Exit 0, or "
            "1 when some deny would become an allow (unless --allow-widening); 2 on usage "
            "errors."
        ),
    )
    replay.add_argument(
        "--logs",
        required=True,
        action="append",
        metavar="FILE",
        help="decision log (repeat for rotated files, oldest first; - reads standard input)",
    )
    where = replay.add_mutually_exclusive_group()
    where.add_argument("--bundle", metavar="FILE", help="candidate bundle (.tar.gz or directory)")
    where.add_argument(
        "--policy", metavar="DIR", help="candidate Rego policy directory (default: shipped)"
    )
    replay.add_argument(
        "--config",
        metavar="FILE",
        help="the candidate's configuration (data.attestpolicy.config; default: the bundle's)",
    )
    replay.add_argument(
        "--verification-key", metavar="PEM", help="the bundle must be signed by this public key"
    )
    replay.add_argument(
        "--revocations",
        metavar="FILE",
        help="revocation store whose runtime revocations the candidate applies too",
    )
    replay.add_argument(
        "--engine",
        choices=("regorus", "opa"),
        default="regorus",
        help="in-process Rego engine (default: regorus)",
    )
    replay.add_argument(
        "--format", choices=("table", "json"), default="table", help="output (default: table)"
    )
    replay.add_argument(
        "--allow-widening",
        action="store_true",
        help="exit 0 even when some recorded deny would be an allow",
    )
    replay.add_argument(
        "--list",
        dest="max_listed",
        type=int,
        default=100,
        metavar="N",
        help="list at most N changed decisions (and unreadable or not replayable records); "
        "the counts always cover every record (default 100)",
    )
    replay.set_defaults(handler=_cmd_replay)
