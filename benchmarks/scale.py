"""Decision time against the size of the configuration, in regorus and in OPA's engine.

Run from the repository root::

    .venv/bin/python benchmarks/scale.py            # full run
    .venv/bin/python benchmarks/scale.py --quick    # fewer iterations
    .venv/bin/python benchmarks/run.py --scale      # the same table, after run.py's

The claim set is a realistic allow (image + provenance + TPM node with 24 measurements +
runtime, allow-fully-attested.json) for spiffe://prod.example.com/ns/payments/sa/api, a
workload present in every configuration. Each configuration is the example
configuration (attestpolicy/examples/config.json) grown in one direction: 10, 1k, 10k
or 100k workloads; 100k revoked image digests; 100k revoked node ids; 10 or 1,000
trusted signers spread over issuers as a fleet has them. Both engines are built once
per configuration; the timed operation is the raw evaluation of the decision rule
(regorus: ``set_input`` + ``eval_rule``; OPA: ``eval_document``, which includes its
ctypes and JSON marshaling). The configuration and the example are timed in
interleaved rounds and the ratio is of the medians: the target is every ratio <= 1.5.
Nothing is asserted; machines are shared and noisy.
"""

from __future__ import annotations

import argparse
import copy
import functools
import gc
import hashlib
import importlib
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import regorus

ROOT: Final = Path(__file__).resolve().parent.parent
EXAMPLES: Final = ROOT / "attestpolicy" / "examples"
sys.path.insert(0, str(ROOT))

from attestpolicy.claims import ClaimSet  # noqa: E402  (after the path set-up)
from attestpolicy.policy import PolicySource  # noqa: E402

DECISION_RULE: Final = "data.attestpolicy.v1.decision"
SUBJECT: Final = "spiffe://prod.example.com/ns/payments/sa/api"
GITHUB: Final = "https://token.actions.githubusercontent.com"


# --- configurations ---------------------------------------------------------------


def _hex(seed: str) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()


def example_config() -> dict[str, Any]:
    """The example configuration (attestpolicy/examples/config.json)."""
    config: dict[str, Any] = json.loads((EXAMPLES / "config.json").read_text())
    return config


def with_workloads(total: int) -> dict[str, Any]:
    """The example configuration with ``total`` workloads (its own ones included)."""
    config = example_config()
    workloads = config["workloads"]
    for index in range(total - len(workloads)):
        workloads[f"spiffe://prod.example.com/ns/team-{index}/sa/service-{index}"] = {
            "namespace": f"team-{index}",
            "service_account": f"service-{index}",
            "source_repo": f"https://github.com/example-org/service-{index}",
            "image_digests": [f"sha256:{_hex(f'image-{index}')}"],
            "require": ["image", "provenance", "node", "runtime"],
            "max_ttl_seconds": 3600,
        }
    return config


def with_revoked(member: str, total: int, value: Callable[[int], str]) -> dict[str, Any]:
    """The example configuration with ``total`` entries in revoked.<member>."""
    config = example_config()
    revoked = config.setdefault("revoked", {}).setdefault(member, {})
    for index in range(total - len(revoked)):
        revoked[value(index)] = f"revoked in incident {index}"
    return config


def with_signers(total: int, issuers: int) -> dict[str, Any]:
    """``total`` trusted keyless signers spread evenly over ``issuers`` OIDC issuers.

    The claim set's issuer (GitHub Actions) is one of them, with its share of patterns:
    its two real patterns and synthetic ones for other repositories (listed first, so
    the matching pattern is among the last tried).
    """
    config = example_config()
    github = config["trusted_signers"]["issuers"][GITHUB]
    per_issuer = total // issuers
    table: dict[str, list[str]] = {
        GITHUB: [
            f"https://github.com/example-org/repo-{i}/.github/workflows/release.yml@refs/tags/*"
            for i in range(per_issuer - len(github))
        ]
        + github
    }
    for issuer in range(issuers - 1):
        table[f"https://oidc.cluster-{issuer}.example.com"] = [
            f"system:serviceaccount:ci-{issuer}:builder-{i}" for i in range(per_issuer)
        ]
    config["trusted_signers"]["issuers"] = table
    return config


def configurations() -> list[tuple[str, Callable[[], dict[str, Any]]]]:
    return [
        ("10 workloads", lambda: with_workloads(10)),
        ("1k workloads", lambda: with_workloads(1_000)),
        ("10k workloads", lambda: with_workloads(10_000)),
        ("100k workloads", lambda: with_workloads(100_000)),
        (
            "100k revoked image digests",
            lambda: with_revoked("image_digests", 100_000, lambda i: f"sha256:{_hex(f'r{i}')}"),
        ),
        (
            "100k revoked node ids",
            lambda: with_revoked("node_ids", 100_000, lambda i: f"tpm-ek:sha256:{_hex(f'n{i}')}"),
        ),
        ("10 signers / 3 issuers", _signers_10),
        ("1,000 signers / 100 issuers", lambda: with_signers(1_000, 100)),
    ]


def _signers_10() -> dict[str, Any]:
    """10 trusted signers: 4 patterns for GitHub Actions, 3 for each of two other issuers."""
    config = with_signers(9, 3)
    config["trusted_signers"]["issuers"][GITHUB].insert(
        0, "https://github.com/example-org/tools/.github/workflows/release.yml@refs/tags/*"
    )
    return config


def claims_input() -> dict[str, Any]:
    """The realistic allow, as the PDP passes it to the engine."""
    text = (EXAMPLES / "claims" / "allow-fully-attested.json").read_text()
    return ClaimSet.parse(text).to_input()


# --- engines ----------------------------------------------------------------------


class RegorusDecider:
    def __init__(self, source: PolicySource, config: dict[str, Any]) -> None:
        self.engine = regorus.Engine()
        for name, text in source.modules.items():
            self.engine.add_policy(name, text)
        self.engine.add_data({"attestpolicy": {"config": config}})

    def __call__(self, policy_input: dict[str, Any]) -> Any:
        self.engine.set_input(policy_input)
        return self.engine.eval_rule(DECISION_RULE)


class OpaDecider:
    def __init__(self, source: PolicySource, config: dict[str, Any]) -> None:
        opa = importlib.import_module("opa_bindings")
        self.engine = opa.OpaEngine()
        for name, text in source.modules.items():
            self.engine.add_policy(name, text)
        self.engine.add_data(config, path="attestpolicy.config")

    def __call__(self, policy_input: dict[str, Any]) -> Any:
        return self.engine.eval_document("attestpolicy.v1.decision", policy_input)

    def close(self) -> None:
        self.engine.close()


def opa_available() -> bool:
    try:
        importlib.import_module("opa_bindings")
    except ImportError:
        return False
    return True


# --- timing -----------------------------------------------------------------------


@dataclass(frozen=True)
class Timing:
    p50_us: float
    p99_us: float


def _percentiles(samples: list[int]) -> Timing:
    samples = sorted(samples)
    return Timing(
        samples[len(samples) // 2] / 1000,
        samples[min(len(samples) - 1, int(len(samples) * 0.99))] / 1000,
    )


def interleaved(
    base: Callable[[], Any], other: Callable[[], Any], samples: int, rounds: int = 10
) -> tuple[Timing, Timing]:
    """Time ``base`` and ``other`` in alternating rounds (drift hits both alike)."""
    clock = time.perf_counter_ns
    for _ in range(20):
        base()
        other()
    base_samples: list[int] = []
    other_samples: list[int] = []
    per_round = max(1, samples // rounds)
    for _ in range(rounds):
        for operation, sink in ((base, base_samples), (other, other_samples)):
            for _ in range(per_round):
                start = clock()
                operation()
                sink.append(clock() - start)
    return _percentiles(base_samples), _percentiles(other_samples)


@dataclass(frozen=True)
class ScaleRow:
    name: str
    engine: str
    base: Timing
    timing: Timing

    @property
    def ratio(self) -> float:
        return self.timing.p50_us / self.base.p50_us


def run(samples: int, *, verbose: bool = True) -> list[ScaleRow]:
    """Every configuration in each engine, against the example configuration."""
    source = PolicySource.from_directory()
    policy_input = claims_input()
    engines: list[tuple[str, Callable[[PolicySource, dict[str, Any]], Any]]] = [
        ("regorus", RegorusDecider)
    ]
    if opa_available():
        engines.append(("opa", OpaDecider))
    elif verbose:
        print("  (opa_bindings not installed: OPA's engine skipped)")
    base_config = example_config()
    bases = {name: make(source, base_config) for name, make in engines}
    expected = bases["regorus"](policy_input)
    assert expected["allow"], expected
    rows: list[ScaleRow] = []
    for label, build in configurations():
        config = build()
        for name, make in engines:
            started = time.perf_counter()
            decider = make(source, copy.deepcopy(config) if name == "regorus" else config)
            loaded = time.perf_counter() - started
            decision = decider(policy_input)
            assert decision == expected, (label, name, decision)
            base_timing, timing = interleaved(
                functools.partial(bases[name], policy_input),
                functools.partial(decider, policy_input),
                samples,
            )
            rows.append(ScaleRow(label, name, base_timing, timing))
            if verbose:
                print(
                    f"  {label:<30} {name:<8} p50 {timing.p50_us:8.1f} us"
                    f"  x{rows[-1].ratio:5.2f}  (engine built in {loaded:.1f} s)",
                    flush=True,
                )
            if isinstance(decider, OpaDecider):
                decider.close()
            del decider
            gc.collect()
        del config
        gc.collect()
    for base in bases.values():
        if isinstance(base, OpaDecider):
            base.close()
    return rows


def print_scale_table(rows: list[ScaleRow]) -> None:
    """One aligned table: each configuration, each engine, p50/p99 and the ratio."""
    print(
        "\ndecision time vs configuration size (realistic allow; ratio = p50 / p50 of the"
        " example configuration, measured interleaved; target <= 1.5)"
    )
    width = max(len(row.name) for row in rows)
    header = f"  {'configuration'.ljust(width)}  {'engine':<8}  {'p50 us':>8}  {'p99 us':>8}"
    print(header + f"  {'example p50':>11}  {'ratio':>6}")
    for row in rows:
        flag = "" if row.ratio <= 1.5 else "  > 1.5"
        print(
            f"  {row.name.ljust(width)}  {row.engine:<8}  {row.timing.p50_us:>8.1f}"
            f"  {row.timing.p99_us:>8.1f}  {row.base.p50_us:>11.1f}  {row.ratio:>6.2f}{flag}"
        )
    print(
        "  signers: 10 = 4 GitHub Actions patterns + 3 for each of 2 other issuers;"
        " 1,000 = 10 patterns for each of 100 issuers (GitHub Actions among them)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations")
    args = parser.parse_args(argv)
    samples = 600 if args.quick else 3000
    print(f"attestpolicy scale benchmark ({'quick' if args.quick else 'full'}), {samples} samples")
    print_scale_table(run(samples))
    return 0


if __name__ == "__main__":
    sys.exit(main())
