"""Issue 10, goals 4 and 7: repeat evidence, trust given as a mapping, the TPM protobuf.

All on the example allow document (real vectors: cosign signature, GCE TPM attestation
with 3 banks of 24 PCRs, EKS PSAT, JWT-SVID) and the example trust configuration, at the
time and with the nonce the examples are built for (attestpolicy/examples/evidence/).

* repeat evidence: the second verification of the same document (a verified-evidence cache
  hit) against the first (a full verification, stored in a fresh cache);
* trust as a mapping against the parsed TrustConfig, on full verifications (the verified
  cache off: the mapping is digested per call, parsed once per revision);
* the go-tpm-tools protobuf decode (protobuf package) as a share of a full verification.

Medians from one run. Run from the repository root:
``.venv/bin/python benchmarks/bench_evidence.py [--quick]``.
"""

from __future__ import annotations

import base64
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from goals import Goal  # noqa: E402  (after the path set-up)

from attestpolicy.evidence.document import load_trust_config  # noqa: E402
from attestpolicy.evidence.node._tpm_protobuf import parse_go_tpm_attestation  # noqa: E402
from attestpolicy.evidence.verify import (  # noqa: E402
    EvidenceReport,
    VerifiedEvidenceCache,
    verify_evidence_report,
)

EXAMPLES = ROOT / "attestpolicy" / "examples"
NOW = "2025-11-24T07:45:00Z"
NONCE = bytes.fromhex("9009")


def _medians_us(operations: dict[str, Callable[[], object]], samples: int) -> dict[str, float]:
    """The median time of each operation in microseconds, measured in turns (one sample of
    each, then the next round), so that the machine's drift falls on all of them alike."""
    for operation in operations.values():
        for _ in range(5):
            operation()
    timings: dict[str, list[int]] = {name: [] for name in operations}
    clock = time.perf_counter_ns
    for _ in range(samples):
        for name, operation in operations.items():
            start = clock()
            operation()
            timings[name].append(clock() - start)
    return {name: statistics.median(values) / 1000 for name, values in timings.items()}


def _inputs() -> tuple[dict[str, Any], dict[str, Any]]:
    document: dict[str, Any] = json.loads(
        (EXAMPLES / "evidence" / "allow-eks-workload.json").read_text()
    )
    trust: dict[str, Any] = json.loads((EXAMPLES / "trust.json").read_text())
    return document, trust


def _verify(document: Any, trust: Any, cache: VerifiedEvidenceCache | bool) -> EvidenceReport:
    report = verify_evidence_report(document, trust, NOW, nonce=NONCE, cache=cache)
    assert not report.problems, report.problems  # never time a failure
    return report


def repeat_evidence(samples: int) -> Goal:
    """Second verification (cache hit) / first (full verification into a fresh cache)."""
    document, _ = _inputs()
    trust = load_trust_config(EXAMPLES / "trust.json")
    raw = json.dumps(document).encode()
    primed = VerifiedEvidenceCache()
    _verify(document, trust, primed)
    _verify(raw, trust, primed)
    times = _medians_us(
        {
            "first": lambda: _verify(document, trust, VerifiedEvidenceCache()),
            "second": lambda: _verify(document, trust, primed),
            "bytes": lambda: _verify(raw, trust, primed),
        },
        samples,
    )
    assert primed.stats().hits >= 2 * samples  # every timed second call was a hit
    return Goal(
        "repeat evidence: second verification / first",
        times["second"] / times["first"],
        0.05,
        detail=(
            f"first {times['first']:.0f} us, second {times['second']:.1f} us (document as a "
            f"dict; as JSON bytes {times['bytes']:.1f} us)"
        ),
    )


def trust_as_mapping(samples: int) -> list[Goal]:
    """Full verifications with the trust configuration as a dict against the parsed one;
    the same on cache hits, where the dict's digest is all that is left."""
    document, trust_data = _inputs()
    trust = load_trust_config(EXAMPLES / "trust.json")
    primed = VerifiedEvidenceCache()
    _verify(document, trust, primed)
    _verify(document, trust_data, primed)
    times = _medians_us(
        {
            "parsed": lambda: _verify(document, trust, False),
            "mapping": lambda: _verify(document, trust_data, False),
            "parsed hit": lambda: _verify(document, trust, primed),
            "mapping hit": lambda: _verify(document, trust_data, primed),
        },
        samples,
    )
    return [
        Goal(
            "trust as dict / parsed trust (full verification)",
            times["mapping"] / times["parsed"],
            1.1,
            detail=f"dict {times['mapping']:.0f} us, parsed {times['parsed']:.0f} us",
        ),
        Goal(
            "trust as dict / parsed trust (verified-evidence cache hit)",
            times["mapping hit"] / times["parsed hit"],
            3.0,
            detail=(
                f"dict {times['mapping hit']:.1f} us, parsed {times['parsed hit']:.1f} us: "
                "the dict is digested on every call (it may have changed)"
            ),
        ),
    ]


def tpm_protobuf(samples: int) -> Goal:
    """The protobuf decode of the GCE attestation as a share of a full verification."""
    document, _ = _inputs()
    trust = load_trust_config(EXAMPLES / "trust.json")
    raw = base64.b64decode(document["node"]["tpm"]["go_tpm_tools_attestation"])
    times = _medians_us(
        {
            "decode": lambda: parse_go_tpm_attestation(raw, "bench"),
            "whole": lambda: _verify(document, trust, False),
        },
        samples,
    )
    return Goal(
        "TPM protobuf decode / full verification",
        times["decode"] / times["whole"],
        0.10,
        detail=(
            f"decode {times['decode']:.0f} us of {times['whole']:.0f} us ({len(raw)} bytes, "
            "3 quotes x 24 PCRs, protobuf package)"
        ),
    )


def goals(quick: bool) -> list[Goal]:
    """Goals 4 and 7 from one run."""
    samples = 40 if quick else 200
    return [repeat_evidence(samples), *trust_as_mapping(samples), tpm_protobuf(samples)]


if __name__ == "__main__":
    for goal in goals(quick="--quick" in sys.argv):
        print(goal.line())
