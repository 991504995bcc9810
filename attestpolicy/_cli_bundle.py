"""``attestpolicy bundle``: build and verify OPA bundles, and regenerate this repository's.

:func:`build_repo_bundles` is repository tooling, not library API: it knows this
repository's layout (``rego/``, ``attestpolicy/examples/config.json``, ``bundles/``).
The bundle package is imported on use, so other commands start without it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from attestpolicy.cli import EXIT_ALLOW, EXIT_DENY, _fail_usage, _read_bytes
from attestpolicy.errors import AttestPolicyError, BundleError

__all__ = ["add_bundle_command", "build_repo_bundles"]


def build_repo_bundles(repo_root: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Regenerate the repository's ``bundles/`` from its sources.

    ``bundles/attestpolicy.tar.gz`` from ``rego/`` and ``bundles/example-config/``
    from ``attestpolicy/examples/config.json`` (validated first). Returns both paths.
    """
    from attestpolicy.bundle import build_bundle, write_config_bundle
    from attestpolicy.bundle._building import write_atomic
    from attestpolicy.config import load_config

    root = Path(repo_root)
    config_path = root / "attestpolicy" / "examples" / "config.json"
    if not config_path.is_file():
        raise BundleError(f"example configuration not found: {config_path}")
    config = load_config(config_path)
    policy_bundle = root / "bundles" / "attestpolicy.tar.gz"
    write_atomic(policy_bundle, build_bundle(root / "rego"))
    config_dir = write_config_bundle(config, root / "bundles" / "example-config")
    return policy_bundle, config_dir


def _cmd_build(args: argparse.Namespace) -> int:
    from attestpolicy.bundle import build_bundle, write_config_bundle
    from attestpolicy.config import load_config
    from attestpolicy.policy import default_policy_dir

    try:
        if args.config is not None:
            if args.out is None:
                _fail_usage("--config needs --out DIR (the configuration bundle's directory)")
            out_dir = write_config_bundle(
                load_config(args.config), args.out, revision=args.revision
            )
            print(f"wrote configuration bundle {out_dir}")
            return EXIT_ALLOW
        if args.out is None:
            if not (Path.cwd() / "rego").is_dir():
                _fail_usage("run from the repository root, or give --out PATH")
            tar_path, config_dir = build_repo_bundles(Path.cwd())
            print(f"wrote {tar_path} and {config_dir}")
            return EXIT_ALLOW
        key = _read_bytes(args.signing_key, "signing key") if args.signing_key else None
        bundle = build_bundle(
            Path(args.policy) if args.policy else default_policy_dir(),
            revision=args.revision,
            signing_key=key,
            signing_alg=args.signing_alg,
            key_id=args.key_id,
        )
    except AttestPolicyError as exc:
        _fail_usage(str(exc))
    try:
        Path(args.out).write_bytes(bundle)
    except OSError as exc:
        _fail_usage(f"cannot write {args.out}: {exc.strerror or exc}")
    print(f"wrote {args.out} ({len(bundle)} bytes)")
    return EXIT_ALLOW


def _cmd_verify(args: argparse.Namespace) -> int:
    from attestpolicy.bundle import load_bundle

    key = _read_bytes(args.verification_key, "verification key")
    if not Path(args.bundle).exists():
        _fail_usage(f"no such bundle: {args.bundle}")
    try:
        loaded = load_bundle(Path(args.bundle), verification_key=key, require_signature=True)
    except AttestPolicyError as exc:
        print(f"attestpolicy: bundle rejected [{exc.code}]: {exc}", file=sys.stderr)
        return EXIT_DENY
    summary = {
        "verified": True,
        "revision": loaded.revision,
        "roots": list(loaded.manifest.roots),
        "files": len(loaded.files),
    }
    print(json.dumps(summary, indent=2))
    return EXIT_ALLOW


def _cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from attestpolicy._server_limits import ServerLimits
    from attestpolicy.bundle import BundleServer, load_token
    from attestpolicy.server import parse_addr, uvicorn_config

    key = _read_bytes(args.verification_key, "verification key") if args.verification_key else None
    try:
        host, port = parse_addr(args.addr)
        token = load_token(args.token_file)
        app = BundleServer(args.directory, token=token, verification_key=key)
    except (AttestPolicyError, ValueError) as exc:
        _fail_usage(str(exc))
    config = uvicorn_config(app, ServerLimits(), host=host, port=port, log_level="info")
    print(
        f"serving the bundles of {args.directory} at /bundles/<name>"
        + (" (bearer token required)" if token else ""),
        file=sys.stderr,
    )
    uvicorn.Server(config).run()
    return EXIT_ALLOW


def add_bundle_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``bundle build``, ``bundle verify`` and ``bundle serve`` to the command line."""
    bundle = commands.add_parser("bundle", help="build, verify or serve OPA bundles")
    actions = bundle.add_subparsers(dest="bundle_command", required=True, metavar="ACTION")
    build = actions.add_parser(
        "build",
        help="build the policy bundle",
        description=(
            "Without --out: regenerate bundles/attestpolicy.tar.gz and bundles/example-config/ "
            "in the repository (run from its root). With --out: write one bundle to PATH. "
            "With --config FILE --out DIR: validate the whole configuration and write it as a "
            "directory bundle serving data.attestpolicy.config (an invalid one: exit 2)."
        ),
    )
    build.add_argument("--out", metavar="PATH", help="write the bundle here")
    build.add_argument(
        "--config", metavar="FILE", help="build a configuration bundle from this JSON file"
    )
    build.add_argument("--policy", metavar="DIR", help="Rego policy directory (default: shipped)")
    build.add_argument("--signing-key", metavar="PEM", help="private key to sign the bundle with")
    build.add_argument("--signing-alg", default="RS256", help="JWT algorithm (default RS256)")
    build.add_argument("--key-id", metavar="ID", help="keyid to put in the signature")
    build.add_argument("--revision", help="manifest revision (default: content hash)")
    build.set_defaults(handler=_cmd_build)
    verify = actions.add_parser(
        "verify",
        help="verify a signed bundle (exit 0 verified, 1 rejected)",
        description="Verify a bundle's signature and file hashes as OPA does.",
    )
    verify.add_argument("bundle", metavar="PATH", help="bundle .tar.gz or directory")
    verify.add_argument("--verification-key", required=True, metavar="PEM", help="public key (PEM)")
    verify.set_defaults(handler=_cmd_verify)
    serve = actions.add_parser(
        "serve",
        help="serve a directory of bundles to OPA and attestpolicy pollers",
        description=(
            "Serve every *.tar.gz under DIR at /bundles/<path> (also without the .tar.gz "
            "suffix, OPA's default resource for a bundle of that name), with strong ETags "
            "(If-None-Match -> 304), GET /health, and a clear 404 for anything else. "
            "Replace bundle files atomically (write, then rename). docs/operations.md shows "
            "the matching OPA configuration."
        ),
    )
    serve.add_argument("directory", metavar="DIR", help="directory of built bundles")
    serve.add_argument(
        "--addr", default="127.0.0.1:8282", help="host:port to listen on (default 127.0.0.1:8282)"
    )
    serve.add_argument(
        "--token-file",
        metavar="FILE",
        help="require this bearer token (mode 600; default: the ATTESTPOLICY_BUNDLE_TOKEN "
        "environment variable; neither: no token required)",
    )
    serve.add_argument(
        "--verification-key",
        metavar="PEM",
        help="serve only bundles signed by this key (others: 500, logged)",
    )
    serve.set_defaults(handler=_cmd_serve)
