"""The ``attestpolicy`` command.

Exit codes: 0 allow (or success), 1 deny (including fail-closed denies), 2 usage errors
(bad flag, missing or unreadable file, invalid configuration); ``test`` exits as ``opa
test`` does (0 passed, 2 a test failed, 1 nothing could be loaded or run).
A usage error is reported on stderr (a line, or one per configuration problem), never
as a traceback.

Modules load when a command needs them (``--help`` loads neither pydantic nor an engine):
keep imports of the library inside the functions that use them.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from attestpolicy.errors import AttestPolicyError

if TYPE_CHECKING:
    from attestpolicy._output import Format
    from attestpolicy._server_broker import BrokerSettings
    from attestpolicy._server_operations import OperationsSettings
    from attestpolicy.decision import Decision
    from attestpolicy.pdp import PolicyDecisionPoint

__all__ = ["main"]

EXIT_ALLOW = 0
EXIT_DENY = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """A problem with how the command was called (exit code 2)."""


def _fail_usage(message: str) -> NoReturn:
    raise UsageError(message)


def _read_bytes(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        _fail_usage(f"cannot read {what} {path}: {exc.strerror or exc}")


def _load_config_arg(path: str | None) -> dict[str, Any] | None:
    if path is None:
        return None
    from attestpolicy.config import load_config

    try:
        return load_config(path)
    except AttestPolicyError as exc:
        _fail_usage(str(exc))


def _now_arg(value: str | None) -> Any:
    if value is None:
        return None
    from attestpolicy.claims import parse_timestamp

    try:
        return parse_timestamp(value)
    except ValueError as exc:
        _fail_usage(f"--now: {exc}")


def _print_decision(decision: Decision, fmt: Format = "json") -> int:
    from attestpolicy._output import render_decision

    print(render_decision(decision, fmt))
    return EXIT_ALLOW if decision.allow else EXIT_DENY


def _make_pdp(args: argparse.Namespace) -> PolicyDecisionPoint:
    if args.remote:
        if args.config is not None:
            _fail_usage("--config is for the in-process engine: the server at --remote has its own")
    elif args.config is None:
        _fail_usage(
            f"{args.command} needs --config FILE, the configuration the policy reads "
            "(JSON or YAML; e.g. attestpolicy/examples/config.json), or --remote URL"
        )
    config = _load_config_arg(args.config)
    from attestpolicy.pdp import PolicyDecisionPoint

    try:
        if args.remote:
            if args.engine is not None:
                _fail_usage("--engine selects the in-process engine: not with --remote")
            return PolicyDecisionPoint.remote(args.remote, read_timeout=args.timeout)
        return PolicyDecisionPoint.local(args.policy, config, engine=args.engine or "regorus")
    except AttestPolicyError as exc:
        _fail_usage(str(exc))


_POLICY_ARG: dict[str, Any] = {
    "action": "append",
    "metavar": "DIR",
    "help": "Rego policy directory (default: shipped); repeat it to load several as one policy",
}
"""``--policy``: each directory given is loaded, as one policy (docs/custom-policies.md)."""


def _add_engine_arg(parser: argparse.ArgumentParser, *, both: bool = False) -> None:
    choices = ("regorus", "opa", "both") if both else ("regorus", "opa")
    default = "both when OPA's engine is installed, else regorus" if both else "regorus"
    parser.add_argument(
        "--engine",
        choices=choices,
        help=f"in-process Rego engine: regorus or OPA's Go evaluator (default: {default})",
    )


# --- commands ------------------------------------------------------------------


def _cmd_decide(args: argparse.Namespace) -> int:
    raw = _read_bytes(args.claims, "claims file")
    now = _now_arg(args.now)
    if args.explain:
        return _explain_decision(args, raw, now)
    with _make_pdp(args) as pdp:
        return _print_decision(pdp.decide(raw, now=now), args.format)


def _explain_decision(args: argparse.Namespace, raw: bytes, now: Any) -> int:
    """``decide --explain``: the decision and why, from the policy in this process."""
    if args.remote:
        _fail_usage("--explain evaluates the policy in this process: not with --remote")
    from attestpolicy._explain import decide_and_explain, render_explanation
    from attestpolicy.policy import PolicySource

    with _make_pdp(args) as pdp:
        try:
            explanation = decide_and_explain(
                pdp,
                raw,
                now=now,
                source=PolicySource.from_directory(args.policy),
                config=_load_config_arg(args.config),
                engine=args.engine or "regorus",
            )
        except AttestPolicyError as exc:
            _fail_usage(str(exc))
    print(render_explanation(explanation, args.format))
    return EXIT_ALLOW if explanation.decision.allow else EXIT_DENY


def _cmd_schema(args: argparse.Namespace) -> int:
    if args.kind == "claims":
        from attestpolicy.claims import ClaimSet

        schema = ClaimSet.json_schema()
    elif args.kind == "config":
        from attestpolicy.config import config_schema

        schema = config_schema()
    else:
        from attestpolicy.evidence.document import EvidenceDocument, TrustConfig

        model = EvidenceDocument if args.kind == "evidence" else TrustConfig
        schema = model.model_json_schema()
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    print(json.dumps(schema, indent=2))
    return EXIT_ALLOW


def _evidence_inputs(args: argparse.Namespace) -> tuple[Any, Any, dict[str, Any]]:
    from attestpolicy.evidence.document import load_trust_config

    for path, what in ((args.evidence, "evidence document"), (args.trust, "trust configuration")):
        if not Path(path).is_file():
            _fail_usage(f"{what} not found: {path}")
    try:
        trust = load_trust_config(args.trust)
    except AttestPolicyError as exc:
        _fail_usage(str(exc))
    try:
        nonce = bytes.fromhex(args.nonce) if args.nonce else None
    except ValueError:
        _fail_usage("--nonce must be hex")
    options = {"nonce": nonce, "nonce_audience": args.nonce_audience}
    return args.evidence, trust, options


def _cmd_verify(args: argparse.Namespace) -> int:
    from attestpolicy.evidence.document import load_evidence_document
    from attestpolicy.evidence.verify import verify_evidence_report

    evidence_path, trust, options = _evidence_inputs(args)
    try:
        report = verify_evidence_report(
            load_evidence_document(evidence_path), trust, _now_arg(args.now), **options
        )
    except AttestPolicyError as exc:
        print(f"attestpolicy: evidence rejected [{exc.code}]: {exc}", file=sys.stderr)
        return EXIT_DENY
    from attestpolicy._output import render_claims

    print(render_claims(report.claims.to_input(), args.format))
    if report.claims.node is not None and options["nonce"] is None:
        print(
            "attestpolicy: warning: no --nonce: the node evidence's freshness is unproven "
            "(nonce_verified is false; a policy requiring it denies with node.nonce)",
            file=sys.stderr,
        )
    for problem in report.problems:
        print(f"attestpolicy: not verified [{problem.code}]: {problem}", file=sys.stderr)
    return EXIT_DENY if report.problems else EXIT_ALLOW


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from attestpolicy.decision import Decision
    from attestpolicy.evidence.document import load_evidence_document

    evidence_path, trust, options = _evidence_inputs(args)
    now = _now_arg(args.now)
    with _make_pdp(args) as pdp:
        try:
            document: Any = load_evidence_document(evidence_path)
        except AttestPolicyError as exc:
            return _print_decision(Decision.deny(exc.code, str(exc)), args.format)
        decision = pdp.decide_evidence(document, trust, now=now, **options)
        return _print_decision(decision, args.format)


def _cmd_test(args: argparse.Namespace) -> int:
    import re

    from attestpolicy.engine.opa import OPA_INSTALL_COMMAND, opa_available
    from attestpolicy.regotest import default_policy_dir, exit_code, run_tests

    paths = [Path(p) for p in args.paths] or [default_policy_dir()]
    for path in paths:
        if not path.exists():
            _fail_usage(f"no such file or directory: {path}")
    try:
        pattern = re.compile(args.run) if args.run is not None else None
    except re.error as exc:
        _fail_usage(f"--run {args.run!r} is not a valid regular expression: {exc}")
    if args.engine is None:
        engines = ["regorus", "opa"] if opa_available() else ["regorus"]
        if len(engines) == 1:
            print(
                "OPA's engine is not available, testing with regorus only "
                f"(install it with: {OPA_INSTALL_COMMAND})",
                file=sys.stderr,
            )
    elif args.engine == "both":
        engines = ["regorus", "opa"]
    else:
        engines = [args.engine]
    try:
        reports = [
            run_tests(paths, engine=engine, run=pattern, coverage=args.coverage)
            for engine in engines
        ]
    except AttestPolicyError as exc:
        _fail_usage(str(exc))
    code = exit_code(reports)
    if args.format == "json":
        document = {"ok": code == 0, "engines": [report.to_json() for report in reports]}
        print(json.dumps(document, indent=2, default=str))
        return code
    for report in reports:
        print(report.header())
        print(report.text(verbose=args.verbose))
    if len(reports) > 1:
        summary = ", ".join(
            f"{report.engine} {'PASS' if report.ok else 'FAIL'}" for report in reports
        )
        print(f"engines: {summary}")
    return code


def _cmd_serve(args: argparse.Namespace) -> int:
    from attestpolicy._server_limits import limits_from_arguments
    from attestpolicy.server import run_server

    _load_config_arg(args.config)  # validate before starting workers
    try:
        broker = _broker_settings(args)
        run_server(
            args.addr,
            policy_dir=args.policy,
            config_path=args.config,
            workers=args.workers,
            engine=args.engine,
            limits=limits_from_arguments(args),
            revocations_path=args.revocations,
            broker=broker,
            operations=_operations_settings(args),
            ready_file=args.ready_file,
        )
    except AttestPolicyError as exc:  # before anything listens: bad policy, engine, address
        _fail_usage(str(exc))
    return EXIT_ALLOW


def _operations_settings(args: argparse.Namespace) -> OperationsSettings:
    from attestpolicy._server_operations import OperationsSettings

    if args.bundle_url is not None and args.policy:
        _fail_usage("--bundle-url serves the polled bundle's policy: not with --policy")
    if args.watch and args.bundle_url is not None:
        _fail_usage("--watch re-reads local files: not with --bundle-url")

    def resolved(path: str | None) -> str | None:
        return str(Path(path).resolve()) if path is not None else None

    log = args.decision_log
    if log is not None and log != "-" and not log.startswith(("http://", "https://")):
        log = resolved(log)
    return OperationsSettings(
        access_log=args.access_log,
        log_level=args.log_level,
        metrics=args.metrics,
        decision_log=log,
        decision_log_masks=resolved(args.decision_log_masks),
        decision_log_token_file=resolved(args.decision_log_token_file),
        bundle_url=args.bundle_url,
        bundle_token_file=resolved(args.bundle_token_file),
        bundle_verification_key=resolved(args.bundle_verification_key),
        bundle_min_delay=args.bundle_min_delay,
        bundle_max_delay=args.bundle_max_delay,
        watch=args.watch,
        shadow_bundle=resolved(args.shadow_bundle),
    )


def _broker_settings(args: argparse.Namespace) -> BrokerSettings | None:
    """The broker's settings from ``serve``'s flags, or None without ``--signing-key``."""
    from attestpolicy._server_broker import BrokerSettings

    named = {
        "--issuer": args.issuer,
        "--credentials": args.credentials,
        "--trust": args.trust,
    }
    if args.signing_key is None:
        given = [flag for flag, value in named.items() if value is not None]
        if given or args.admin_token_file is not None:
            _fail_usage(f"{', '.join(given) or '--admin-token-file'} needs --signing-key")
        return None
    missing = [flag for flag, value in named.items() if value is None]
    if missing:
        _fail_usage(f"--signing-key needs {', '.join(missing)}")
    return BrokerSettings(
        signing_key=str(Path(args.signing_key).resolve()),
        issuer=args.issuer,
        credentials=str(Path(args.credentials).resolve()),
        trust=str(Path(args.trust).resolve()),
        admin_token_file=(
            str(Path(args.admin_token_file).resolve()) if args.admin_token_file else None
        ),
        nonce_lifetime_seconds=args.nonce_lifetime,
    )


def _cmd_demo(args: argparse.Namespace) -> int:
    if args.format != "pretty" and (args.broker or args.write_evidence is not None):
        _fail_usage("--format is for the demo's decisions: not with --broker or --write-evidence")
    if args.write_evidence is not None:
        from attestpolicy._demo_broker import write_fresh_evidence

        try:
            written = write_fresh_evidence(Path(args.write_evidence))
        except OSError as exc:
            _fail_usage(f"cannot write to {args.write_evidence}: {exc.strerror or exc}")
        print(json.dumps({"written": [str(path) for path in written]}))
        return EXIT_ALLOW
    if args.broker:
        from attestpolicy._demo_broker import run_broker_demo

        return run_broker_demo(sys.stdout)
    from attestpolicy._demo import run_demo

    return run_demo(sys.stdout, args.format)


def _cmd_version(args: argparse.Namespace) -> int:
    from attestpolicy._version import render_version, version_info

    print(render_version(version_info(), args.format))
    return EXIT_ALLOW


class _VersionAction(argparse.Action):
    """``--version``: the versions, worked out only when asked for."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, help=kwargs.get("help"))

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> NoReturn:
        from attestpolicy._version import render_version, version_info

        print(render_version(version_info(), "pretty"))
        parser.exit()


# --- parser ----------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests)."""
    parser = argparse.ArgumentParser(
        prog="attestpolicy",
        description="Policy decision point for attestation-based workload identity.",
    )
    from attestpolicy._output import add_format_argument

    parser.add_argument(
        "--version",
        action=_VersionAction,
        help="print the versions of attestpolicy, its engines and the shipped policy",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    decide = commands.add_parser(
        "decide",
        help="decide one claim set; exit 0 allow, 1 deny, 2 usage error",
        description="Print the decision for a claim set as JSON (exit 0 allow, 1 deny).",
    )
    decide.add_argument("--claims", required=True, metavar="FILE", help="claim set JSON file")
    decide.add_argument(
        "--config", metavar="FILE", help="JSON document placed at data.attestpolicy.config"
    )
    where = decide.add_mutually_exclusive_group()
    where.add_argument("--policy", **_POLICY_ARG)
    where.add_argument(
        "--remote", metavar="URL", help="OPA server base URL, e.g. http://127.0.0.1:8181"
    )
    decide.add_argument(
        "--timeout", type=float, default=2.0, metavar="S", help="remote read timeout (seconds)"
    )
    decide.add_argument("--now", metavar="TS", help="evaluate at this RFC 3339 time")
    _add_engine_arg(decide)
    decide.add_argument(
        "--explain",
        action="store_true",
        help="also say why: the rule (file:line, METADATA title) and the values behind "
        "each reason, or every check passed and the TTL terms (docs/explain.md)",
    )
    add_format_argument(decide, "json")
    decide.set_defaults(handler=_cmd_decide)

    test = commands.add_parser(
        "test",
        help="run Rego unit tests (test_* rules in *_test.rego)",
        description=(
            "Run Rego tests in-process, like `opa test`, with regorus, OPA's Go evaluator, "
            "or both. A failing test shows its location and the statement that does not "
            "hold, with values. Exit codes as opa test: 0 every test passed, 2 a test "
            "failed or raised an error, 1 a file could not be loaded or no test ran "
            "(2 also for usage errors)."
        ),
    )
    test.add_argument(
        "paths", nargs="*", metavar="DIR", help="policy directories or files (default: shipped)"
    )
    _add_engine_arg(test, both=True)
    test.add_argument("-v", "--verbose", action="store_true", help="list every test with its time")
    test.add_argument(
        "--run",
        metavar="REGEX",
        help="run only the tests whose full name (data.pkg.test_x) matches REGEX",
    )
    test.add_argument(
        "--coverage",
        action="store_true",
        help="report line coverage of the policy files, per file and in total",
    )
    test.add_argument(
        "--format", choices=("pretty", "json"), default="pretty", help="output format"
    )
    test.set_defaults(handler=_cmd_test)

    schema = commands.add_parser(
        "schema",
        help="print a JSON Schema (claim set, evidence document, trust or policy configuration)",
    )
    schema.add_argument(
        "kind",
        nargs="?",
        default="claims",
        choices=("claims", "evidence", "trust", "config"),
        help="which document (default: claims)",
    )
    schema.set_defaults(handler=_cmd_schema)

    for name, handler, summary in (
        ("verify", _cmd_verify, "verify an evidence document and print its ClaimSet"),
        ("evaluate", _cmd_evaluate, "verify an evidence document and decide (exit as decide)"),
    ):
        command = commands.add_parser(name, help=summary, description=summary + ".")
        command.add_argument("--evidence", required=True, metavar="FILE", help="evidence JSON")
        command.add_argument(
            "--trust", required=True, metavar="FILE", help="trust configuration (JSON or YAML)"
        )
        command.add_argument("--now", metavar="TS", help="verify at this RFC 3339 time")
        command.add_argument(
            "--nonce", metavar="HEX", help="the freshness nonce issued for this request (hex)"
        )
        command.add_argument(
            "--nonce-audience", metavar="AUD", help="per-request audience for identity tokens"
        )
        if name == "evaluate":
            command.add_argument(
                "--config", metavar="FILE", help="JSON document placed at data.attestpolicy.config"
            )
            where = command.add_mutually_exclusive_group()
            where.add_argument("--policy", **_POLICY_ARG)
            where.add_argument("--remote", metavar="URL", help="OPA server base URL")
            command.add_argument(
                "--timeout",
                type=float,
                default=2.0,
                metavar="S",
                help="remote read timeout (seconds)",
            )
            _add_engine_arg(command)
        add_format_argument(command, "json")
        command.set_defaults(handler=handler)

    serve = commands.add_parser(
        "serve",
        help="serve OPA's Data API from the in-process engine",
        description="An OPA-compatible Data API server (POST /v1/data/{path}, GET /health).",
    )
    serve.add_argument("--addr", default="127.0.0.1:8181", help="host:port to listen on")
    serve.add_argument("--policy", **_POLICY_ARG)
    serve.add_argument(
        "--config", metavar="FILE", help="JSON document placed at data.attestpolicy.config"
    )
    serve.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    serve.add_argument(
        "--ready-file",
        metavar="FILE",
        help="write the server's URL to FILE once it answers /health, remove it on exit "
        "(a script waits with: until [ -f FILE ]; do sleep 0.1; done)",
    )
    serve.add_argument(
        "--revocations",
        metavar="FILE",
        help="revocation store (SQLite) shared by the workers and `attestpolicy revoke`",
    )
    serve.add_argument(
        "--engine",
        choices=("regorus", "opa"),
        default="regorus",
        help="in-process Rego engine of every worker (default: regorus)",
    )
    operations = serve.add_argument_group("operations (docs/operations.md)")
    operations.add_argument(
        "--access-log",
        action="store_true",
        help="a JSON line per request on stderr (with the decision_id when one was logged)",
    )
    operations.add_argument(
        "--log-level",
        choices=("critical", "error", "warning", "info", "debug"),
        default="info",
        help="log level of the server and the attestpolicy loggers (default info)",
    )
    operations.add_argument(
        "--no-metrics",
        dest="metrics",
        action="store_false",
        help="no GET /metrics (Prometheus; on by default, every worker's counts together)",
    )
    operations.add_argument(
        "--decision-log",
        metavar="TARGET",
        help="log every decision (OPA's event format, masked): - for stdout, a file (JSON "
        "lines, rotated; with several workers each writes FILE.<pid>), or an http(s) URL "
        "of a decision log service (gzip batches to URL/logs)",
    )
    operations.add_argument(
        "--decision-log-masks", metavar="FILE", help="erase/upsert masks (JSON) after the defaults"
    )
    operations.add_argument(
        "--decision-log-token-file", metavar="FILE", help="bearer token of the log service"
    )
    operations.add_argument(
        "--bundle-url",
        metavar="URL",
        help="poll the policy bundle from URL as OPA does (ETag, 304, backoff) instead of --policy",
    )
    operations.add_argument("--bundle-token-file", metavar="FILE", help="bundle server token")
    operations.add_argument(
        "--bundle-verification-key",
        metavar="PEM",
        help="public key every polled, watched or shadow bundle must be signed with",
    )
    operations.add_argument(
        "--bundle-min-delay", type=float, default=60.0, metavar="S", help="(default 60)"
    )
    operations.add_argument(
        "--bundle-max-delay", type=float, default=120.0, metavar="S", help="(default 120)"
    )
    operations.add_argument(
        "--watch",
        action="store_true",
        help="re-load the --policy directory (or bundle) when it changes, atomically",
    )
    operations.add_argument(
        "--shadow-bundle",
        metavar="FILE",
        help="decide with this candidate bundle too: log and count disagreements, "
        "answer with the active policy",
    )
    broker = serve.add_argument_group(
        "credential broker (docs/broker.md)",
        "With --signing-key, serve also issues credentials: /v1/nonce, /v1/credentials, "
        "/v1/ear, /.well-known/jwks.json and /v1/revocations (needs --revocations).",
    )
    broker.add_argument("--signing-key", metavar="FILE", help="PEM private key (mode 600)")
    broker.add_argument("--issuer", metavar="URL", help="the iss of every credential")
    broker.add_argument(
        "--credentials", metavar="FILE", help="issued-credential registry (SQLite), shared"
    )
    broker.add_argument("--trust", metavar="FILE", help="trust configuration for evidence")
    broker.add_argument(
        "--admin-token-file",
        metavar="FILE",
        help="admin bearer token for POST /v1/revocations (mode 600; default: the "
        "ATTESTPOLICY_ADMIN_TOKEN environment variable; neither: that route is off)",
    )
    broker.add_argument(
        "--nonce-lifetime",
        type=float,
        default=60.0,
        metavar="S",
        help="seconds a nonce from /v1/nonce stays usable (default 60)",
    )
    from attestpolicy._server_limits import add_limit_arguments

    add_limit_arguments(serve)
    serve.set_defaults(handler=_cmd_serve)

    from attestpolicy._cli_bundle import add_bundle_command

    add_bundle_command(commands)

    from attestpolicy._cli_revoke import add_revoke_command

    add_revoke_command(commands)

    from attestpolicy._cli_replay import add_replay_command

    add_replay_command(commands)

    from attestpolicy._cli_broker import add_credential_command

    add_credential_command(commands)

    demo = commands.add_parser(
        "demo", help="decide the bundled example claim sets and print a table"
    )
    flows = demo.add_mutually_exclusive_group()
    flows.add_argument(
        "--broker",
        action="store_true",
        help="run evidence -> credential -> service -> revocation over HTTP on 127.0.0.1",
    )
    flows.add_argument(
        "--write-evidence",
        metavar="DIR",
        help="write evidence, trust and config made fresh now (valid an hour) into DIR",
    )
    add_format_argument(demo, "pretty")
    demo.set_defaults(handler=_cmd_demo)

    version = commands.add_parser(
        "version", help="print the versions of attestpolicy, its engines and the shipped policy"
    )
    add_format_argument(version, "pretty")
    version.set_defaults(handler=_cmd_version)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    try:
        try:
            args = build_parser().parse_args(argv)
            code: int = args.handler(args)
        finally:  # the last bytes now, so that a closed pipe is caught below, not at exit
            sys.stdout.flush()
    except (UsageError, AttestPolicyError) as exc:  # AttestPolicyError: one no handler expected
        print(f"attestpolicy: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:  # Ctrl-C: the shell's convention, no traceback
        return 130
    except BrokenPipeError:  # the reader went away (``| head``): stop quietly, as Unix tools do
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so that the interpreter's final flush is quiet
        return EXIT_DENY
    return code


def run() -> NoReturn:
    """The ``attestpolicy`` command: :func:`main`, then exit.

    Before exiting, every object is frozen (``gc.freeze``) so that the interpreter's final
    garbage collection does not walk the objects of every imported module: the process ends
    here, and that walk was about 60 ms of a 0.3 s ``decide`` (benchmarks/bench_startup.py).
    Objects are still finalized and ``atexit`` still runs. Only the command line does this:
    :func:`main` leaves a calling process's collector alone.
    """
    code = main()
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    run()
