"""attestpolicy replay: recorded decisions decided again with a candidate, at their logged time.

The logs are written by the decision logger (DecisionLogger, FileSink, its masks) of a
real PolicyDecisionPoint deciding the example claim sets; the candidates are bundles built
with ``attestpolicy bundle build`` (signed with a key made here) and a configuration, run
through ``attestpolicy.cli.main`` and the library.
"""

from __future__ import annotations

import base64
import copy
import gzip
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from attestpolicy._demo_evidence import fresh_evidence
from attestpolicy.bundle import BUNDLE_ROOTS, CONFIG_ROOTS, build_bundle
from attestpolicy.cli import main
from attestpolicy.decisionlog import (
    DEFAULT_MASKS,
    REDACTED,
    DecisionLogger,
    Erase,
    FileSink,
    MaskRule,
    Upsert,
)
from attestpolicy.engine.local import LocalEvaluator
from attestpolicy.pdp import PolicyDecisionPoint
from attestpolicy.policy import DECISION_PATH, PolicySource, default_policy_dir
from attestpolicy.replay import (
    LogLine,
    Outcome,
    compare,
    load_candidate,
    read_decision_log,
    recorded_outcome,
    replay,
)

EXAMPLES = Path(__file__).resolve().parents[1] / "attestpolicy" / "examples"
RELEASE = "https://github.com/example-org/payments-api/.github/workflows/release.yml@refs/tags/"
REVOKED_SIGNER = RELEASE + "v1.4.2"
"""The signer the narrowing candidate revokes (it signed most example images)."""
COSIGN_SIGNATURE = "dev.cosignproject.cosign/signature"
LIFTED_SIGNER = RELEASE + "v1.2.0"
"""The signer the example configuration revokes and the widening candidate no longer does."""


# --- the recorded log ------------------------------------------------------------------------


def _claim_sets() -> list[dict[str, Any]]:
    """Every example claim set, and variants: another release tag (unaffected by the
    revocation), the same claims a minute later (a cache hit), a revoked signer."""
    claim_sets = [json.loads(path.read_text()) for path in sorted(EXAMPLES.glob("claims/*.json"))]
    allow = json.loads((EXAMPLES / "claims" / "allow-fully-attested.json").read_text())
    other_tag = copy.deepcopy(allow)
    other_tag["image"]["signatures"][0]["subject"] = RELEASE + "v1.4.3"
    later = copy.deepcopy(allow)
    later["now"] = "2026-11-22T10:01:00Z"
    revoked = copy.deepcopy(allow)
    revoked["image"]["signatures"][0]["subject"] = LIFTED_SIGNER
    return [*claim_sets, other_tag, later, later, revoked]


def write_log(
    path: Path,
    config: dict[str, Any],
    claim_sets: Sequence[object],
    masks: Sequence[MaskRule] = DEFAULT_MASKS,
) -> Path:
    """Decide ``claim_sets`` with the shipped policy and ``config``; the decision logger
    writes each decision to ``path``."""
    logger = DecisionLogger(FileSink(path, max_bytes=None), masks=masks, close_timeout=60)
    with logger, PolicyDecisionPoint.local(config=config) as pdp:
        pdp.add_observer(logger)
        for claims in claim_sets:
            pdp.decide(claims)  # type: ignore[arg-type]  # a claim set, or bytes that are not
    stats = logger.stats()
    assert (stats.written, stats.dropped, stats.failed) == (len(claim_sets), 0, 0)
    return path


def events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    config = json.loads((EXAMPLES / "config.json").read_text())
    claim_sets = [*_claim_sets(), b"{not a claim set"]  # the last: no input to log
    return write_log(tmp_path_factory.mktemp("logs") / "decisions.log", config, claim_sets)


# --- candidates --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A bundle signing key and its public key (PEM files)."""
    directory = tmp_path_factory.mktemp("keys")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private, public = directory / "signing.pem", directory / "verification.pem"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


@pytest.fixture(scope="module")
def candidate_bundle(tmp_path_factory: pytest.TempPathFactory, keys: tuple[Path, Path]) -> Path:
    """The shipped policy as a signed bundle, built by ``attestpolicy bundle build``."""
    out = tmp_path_factory.mktemp("bundle") / "candidate.tar.gz"
    code = main(
        ["bundle", "build", "--out", str(out), "--signing-key", str(keys[0]), "--revision", "c1"]
    )
    assert code == 0
    return out


def _config(change: str) -> dict[str, Any]:
    config: dict[str, Any] = json.loads((EXAMPLES / "config.json").read_text())
    signers = config["revoked"]["signer_subjects"]
    if change == "revoke":
        signers[REVOKED_SIGNER] = "the release runner was compromised"
    elif change == "lift":
        del signers[LIFTED_SIGNER]
    return config


@pytest.fixture(scope="module")
def configs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("configs")
    paths = {}
    for change in ("same", "revoke", "lift"):
        paths[change] = directory / f"{change}.json"
        paths[change].write_text(json.dumps(_config(change)))
    return paths


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["replay", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    code, out, _ = run(capsys, *argv, "--format", "json")
    report: dict[str, Any] = json.loads(out)
    return code, report


def replayable(path: Path) -> list[dict[str, Any]]:
    """The logged events that have an input (all but the unreadable claim set)."""
    return [event for event in events(path) if "input" in event]


def _signers(event: dict[str, Any]) -> set[str]:
    image = event.get("input", {}).get("image") or {}
    return {signature.get("subject") for signature in image.get("signatures", [])}


# --- the done-when: revoking one signer --------------------------------------------------------


def test_revoking_one_signer_reports_exactly_the_affected_decisions(
    capsys: pytest.CaptureFixture[str],
    recorded: Path,
    candidate_bundle: Path,
    keys: tuple[Path, Path],
    configs: dict[str, Path],
    engine: str,
) -> None:
    logged = replayable(recorded)
    affected = {e["decision_id"] for e in logged if REVOKED_SIGNER in _signers(e)}
    allowed = {e["decision_id"] for e in logged if e["result"]["allow"]}
    assert affected & allowed  # a real mix: affected allows and denies, unaffected allows
    assert affected - allowed
    assert allowed - affected

    code, report = run_json(
        capsys,
        *("--logs", str(recorded), "--bundle", str(candidate_bundle)),
        *("--verification-key", str(keys[1]), "--config", str(configs["revoke"])),
        *("--engine", engine),
    )

    assert code == 0
    assert not report["widening"]
    assert report["replayed"] == len(logged)
    assert report["not_replayable"]["by_reason"] == {"input.absent": 1}
    changes = report["changes"]
    assert {c["decision_id"] for c in changes} == affected
    assert not report["changes_truncated"]
    narrowed = {c["decision_id"] for c in changes if c["change"] == "allow_to_deny"}
    assert narrowed == affected & allowed
    assert report["counts"] == {
        "unchanged": len(logged) - len(affected),
        "allow_to_deny": len(affected & allowed),
        "deny_to_allow": 0,
        "reasons_changed": len(affected - allowed),
        "ttl_changed": 0,
    }
    assert report["by_reason"]["allow_to_deny"] == {
        "image.untrusted_signer": len(affected & allowed)
    }
    assert report["by_reason"]["reasons_changed"] == {
        "+image.untrusted_signer": len(affected - allowed)
    }
    for change in changes:  # every change: the revoked signer, and only that reason added
        assert set(change["after"]["reasons"]) - set(change["before"]["reasons"]) == {
            "image.untrusted_signer"
        }
    api = "spiffe://prod.example.com/ns/payments/sa/api"
    assert report["by_workload"][api]["allow_to_deny"] == len(affected & allowed)
    assert report["candidate_revision"].startswith("c1+config-")
    assert f"+{engine}-" in report["candidate_revision"]
    assert report["recorded_revisions"]  # the revision each decision was logged with


def test_the_candidate_bundle_may_carry_its_configuration(
    capsys: pytest.CaptureFixture[str], recorded: Path, tmp_path: Path
) -> None:
    bundle = tmp_path / "with-config.tar.gz"
    bundle.write_bytes(
        build_bundle(
            default_policy_dir(),
            roots=(*BUNDLE_ROOTS, *CONFIG_ROOTS),
            data={"attestpolicy": {"config": _config("revoke")}},
        )
    )
    code, carried = run_json(capsys, "--logs", str(recorded), "--bundle", str(bundle))
    assert code == 0
    affected = {e["decision_id"] for e in events(recorded) if REVOKED_SIGNER in _signers(e)}
    assert {c["decision_id"] for c in carried["changes"]} == affected

    # --config replaces the configuration the bundle carries
    same = tmp_path / "same.json"
    same.write_text(json.dumps(_config("same")))
    code, replaced = run_json(
        capsys, "--logs", str(recorded), "--bundle", str(bundle), "--config", str(same)
    )
    assert (code, replaced["changes"]) == (0, [])


def test_the_same_policy_changes_nothing_at_the_logged_time(
    capsys: pytest.CaptureFixture[str], recorded: Path, configs: dict[str, Path]
) -> None:
    # The example evidence is from 2026-11-22 with a five-minute freshness limit: decided
    # at any other time (the wall clock), every allow would be a deny.
    code, report = run_json(capsys, "--logs", str(recorded), "--config", str(configs["same"]))
    assert code == 0
    assert report["counts"]["unchanged"] == report["replayed"] == len(replayable(recorded))
    assert report["changes"] == []
    assert report["warnings"] == []


# --- widening ----------------------------------------------------------------------------------


def test_a_widening_candidate_exits_1_unless_allowed(
    capsys: pytest.CaptureFixture[str],
    recorded: Path,
    candidate_bundle: Path,
    keys: tuple[Path, Path],
    configs: dict[str, Path],
) -> None:
    argv = (
        *("--logs", str(recorded), "--bundle", str(candidate_bundle)),
        *("--verification-key", str(keys[1]), "--config", str(configs["lift"])),
    )
    code, report = run_json(capsys, *argv)
    assert code == 1
    widened = [e["decision_id"] for e in events(recorded) if LIFTED_SIGNER in _signers(e)]
    assert report["widening"]
    assert [c["decision_id"] for c in report["changes"]] == widened
    assert report["counts"]["deny_to_allow"] == 1
    assert report["by_reason"]["deny_to_allow"] == {"image.untrusted_signer": 1}

    code, out, err = run(capsys, *argv)
    assert code == 1
    assert "WIDENING" in out
    assert "--allow-widening" in err

    code, report = run_json(capsys, *argv, "--allow-widening")
    assert (code, report["counts"]["deny_to_allow"]) == (0, 1)


def test_the_table_names_the_changes(
    capsys: pytest.CaptureFixture[str], recorded: Path, configs: dict[str, Path]
) -> None:
    code, out, _ = run(capsys, "--logs", str(recorded), "--config", str(configs["revoke"]))
    assert code == 0
    assert "allow -> deny, by the candidate's reason code" in out
    assert "image.untrusted_signer" in out
    assert "spiffe://prod.example.com/ns/payments/sa/api" in out
    assert "WIDENING" not in out
    first = events(recorded)[0]
    assert f"{recorded}:1 {first['decision_id']}" in out


# --- what is not replayed ---------------------------------------------------------------------


_WITH_PROVENANCE = sum("provenance" in claims for claims in _claim_sets())
_MASKINGS: list[tuple[tuple[MaskRule, ...], dict[str, int], str]] = [
    ((Erase("/input/provenance"),), {"input.erased": _WITH_PROVENANCE}, "/input/provenance"),
    ((Upsert("/input/runtime/pod", REDACTED),), {"input.masked": -1}, "/input/runtime/pod"),
    ((Erase("/input"),), {"input.erased": -1}, "/input"),
    ((Upsert("/result/allow", True),), {"result.masked": -1}, "/result/allow"),
]


@pytest.mark.parametrize(("masks", "expected", "pointer"), _MASKINGS)
def test_masked_and_erased_records_are_not_replayable(
    capsys: pytest.CaptureFixture[str],
    configs: dict[str, Path],
    tmp_path: Path,
    masks: tuple[MaskRule, ...],
    expected: dict[str, int],
    pointer: str,
) -> None:
    claim_sets = _claim_sets()
    log = write_log(tmp_path / "masked.log", _config("same"), claim_sets, (*DEFAULT_MASKS, *masks))
    (reason, count), *_ = expected.items()
    count = len(claim_sets) if count < 0 else count  # -1: every record

    code, report = run_json(capsys, "--logs", str(log), "--config", str(configs["revoke"]))

    assert code == 0
    assert report["not_replayable"]["by_reason"] == {reason: count}
    assert report["replayed"] == len(claim_sets) - count
    touched = [e for e in events(log) if pointer in (*e.get("erased", ()), *e.get("masked", ()))]
    records = report["not_replayable"]["records"]
    assert [r["decision_id"] for r in records] == [e["decision_id"] for e in touched]
    assert records[0]["detail"] == f"masking changed {pointer}"
    assert records[0]["where"] == f"{log}:{events(log).index(touched[0]) + 1}"


def test_a_decision_without_an_input_is_not_replayable(
    capsys: pytest.CaptureFixture[str], recorded: Path, configs: dict[str, Path]
) -> None:
    inputless = [e for e in events(recorded) if "input" not in e]
    assert len(inputless) == 1  # the unreadable claim set: denied before the policy ran
    code, report = run_json(capsys, "--logs", str(recorded), "--config", str(configs["same"]))
    assert code == 0
    assert report["not_replayable"]["by_reason"] == {"input.absent": 1}
    (record,) = report["not_replayable"]["records"]
    assert record["decision_id"] == inputless[0]["decision_id"]
    assert record["where"] == f"{recorded}:{len(events(recorded))}"


def test_other_paths_are_skipped_and_bad_lines_counted_with_their_numbers(
    capsys: pytest.CaptureFixture[str], recorded: Path, configs: dict[str, Path], tmp_path: Path
) -> None:
    first = events(recorded)[0]
    log = tmp_path / "mixed.log"
    lines = [
        json.dumps(first),
        "{not json",
        "",
        json.dumps({"decision_id": "q1", "path": "attestpolicy/v1", "input": {}, "result": {}}),
        "[1, 2]",
        json.dumps({"hello": "world"}),
        json.dumps({"decision_id": "q2", "query": "data.x = y", "input": {}}),
        json.dumps({**first, "path": "data.attestpolicy.v1.decision"}),
        json.dumps({**first, "decision_id": "d\u00e9j\u00e0"})[:-1],  # cut short
    ]
    log.write_text("\n".join(lines) + "\n")

    code, report = run_json(capsys, "--logs", str(log), "--config", str(configs["same"]))

    assert code == 0
    assert report["events"] == 8  # the blank line is not an event
    assert report["replayed"] == 2  # the first, and the same event under OPA's dotted path
    assert report["other_paths"] == {
        "count": 2,
        "by_path": {"(ad-hoc query)": 1, "attestpolicy/v1": 1},
    }
    unreadable = report["unreadable"]
    assert unreadable["count"] == 4
    assert [line["where"] for line in unreadable["lines"]] == [f"{log}:{n}" for n in (2, 5, 6, 9)]
    assert "not JSON" in unreadable["lines"][0]["error"]
    assert "not a JSON object" in unreadable["lines"][1]["error"]
    assert "not a decision-log event" in unreadable["lines"][2]["error"]


def test_an_undefined_or_failed_recorded_decision_is_a_deny() -> None:
    assert recorded_outcome(None, defined=False) == Outcome(False, ("engine.undefined",))
    assert recorded_outcome(None, defined=False, error=True) == Outcome(False, ("engine.error",))
    allow = {"allow": True, "reasons": [], "ttl_seconds": 600}
    assert recorded_outcome(allow) == Outcome(True, (), 600)
    malformed: tuple[object, ...] = (
        [],
        {"allow": "yes"},
        {"allow": False, "reasons": [{"message": "x"}]},
    )
    for bad in malformed:
        with pytest.raises(ValueError, match="result"):
            recorded_outcome(bad)
    deny = Outcome(False, ("a",))
    assert compare(deny, Outcome(False, ("a",))) == "unchanged"
    assert compare(deny, Outcome(False, ("b",))) == "reasons_changed"
    assert compare(Outcome(True, (), 60), Outcome(True, (), 30)) == "ttl_changed"
    assert compare(Outcome(True, (), 60), deny) == "allow_to_deny"
    assert compare(deny, Outcome(True, (), 60)) == "deny_to_allow"


# --- logs as files ----------------------------------------------------------------------------


def test_gzip_logs_and_rotated_files_are_read_in_order(
    capsys: pytest.CaptureFixture[str], recorded: Path, configs: dict[str, Path], tmp_path: Path
) -> None:
    compressed = tmp_path / "decisions.log.1.gz"
    compressed.write_bytes(gzip.compress(recorded.read_bytes()))
    truncated = tmp_path / "decisions.log.2.gz"
    whole = gzip.compress(recorded.read_bytes())
    truncated.write_bytes(whole[: len(whole) // 2])  # a copy cut short
    count = len(replayable(recorded))

    code, report = run_json(
        capsys,
        *("--logs", str(compressed), "--logs", str(recorded), "--logs", str(truncated)),
        *("--config", str(configs["revoke"]), "--list", "2"),
    )

    assert code == 0
    assert count * 2 <= report["replayed"] < count * 3
    assert report["changes"][0]["where"] == f"{compressed}:1"
    assert len(report["changes"]) == 2
    assert report["changes_truncated"]
    assert report["unreadable"]["count"] == 1
    assert "cannot be read further" in report["unreadable"]["lines"][0]["error"]


def test_a_line_longer_than_the_limit_is_skipped_not_held(tmp_path: Path) -> None:
    log = tmp_path / "long.log"
    event = {"decision_id": "a", "path": "x"}
    log.write_bytes(
        json.dumps(event).encode() + b"\n" + b"x" * 5000 + b"\n" + json.dumps(event).encode()
    )
    lines = list(read_decision_log(log, max_line_bytes=1000))
    assert [(line.number, line.error is None) for line in lines] == [
        (1, True),
        (2, False),
        (3, True),
    ]
    assert lines[1].error == "line longer than 1000 bytes"


# --- usage errors -----------------------------------------------------------------------------


def test_usage_errors_exit_2(
    capsys: pytest.CaptureFixture[str],
    recorded: Path,
    candidate_bundle: Path,
    keys: tuple[Path, Path],
    configs: dict[str, Path],
    tmp_path: Path,
) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    wrong_key = tmp_path / "wrong.pem"
    wrong_key.write_bytes(
        other.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    unsigned = tmp_path / "unsigned.tar.gz"
    assert main(["bundle", "build", "--out", str(unsigned)]) == 0
    capsys.readouterr()
    log, bundle, config = str(recorded), str(candidate_bundle), str(configs["revoke"])
    cases = {
        "cannot read decision log": ("--logs", str(tmp_path / "nope.log"), "--config", config),
        "Is a directory": ("--logs", str(tmp_path), "--config", config),
        "bundle.signature": ("--logs", log, "--bundle", bundle, "--config", config),
        "signature": (
            *("--logs", log, "--bundle", bundle, "--config", config),
            *("--verification-key", str(wrong_key)),
        ),
        "no .signatures.json": (
            *("--logs", log, "--bundle", str(unsigned), "--config", config),
            *("--verification-key", str(keys[1])),
        ),
        "has no configuration": ("--logs", log, "--bundle", str(unsigned)),
        "applies to --bundle": (
            *("--logs", log, "--config", config, "--verification-key", str(keys[1])),
        ),
        "no such bundle": ("--logs", log, "--bundle", str(tmp_path / "x.tar.gz")),
        "cannot read configuration": ("--logs", log, "--config", str(tmp_path / "c.json")),
        "no such revocation store": (
            *("--logs", log, "--config", config, "--revocations", str(tmp_path / "r.db")),
        ),
        "--list must be >= 0": ("--logs", log, "--config", config, "--list", "-1"),
    }
    for expected, argv in cases.items():
        code, out, err = run(capsys, *argv)
        assert (code, out) == (2, ""), expected
        assert expected in err, (expected, err)


def test_runtime_revocations_of_a_store_apply_to_the_candidate(
    capsys: pytest.CaptureFixture[str], recorded: Path, configs: dict[str, Path], tmp_path: Path
) -> None:
    store = tmp_path / "revocations.db"
    assert main(["revoke", "--store", str(store), "--signer", REVOKED_SIGNER]) == 0
    capsys.readouterr()
    code, with_store = run_json(
        capsys,
        "--logs",
        str(recorded),
        "--config",
        str(configs["same"]),
        "--revocations",
        str(store),
    )
    code_config, with_config = run_json(
        capsys, "--logs", str(recorded), "--config", str(configs["revoke"])
    )
    assert code == code_config == 0
    assert with_store["counts"] == with_config["counts"]
    assert with_store["counts"]["allow_to_deny"] > 0


# --- the library ------------------------------------------------------------------------------


def _inputs(path: Path) -> Iterator[dict[str, Any]]:
    yield from events(path)


def test_replay_from_python_with_a_pdp_or_an_evaluator(recorded: Path) -> None:
    config = _config("revoke")
    with PolicyDecisionPoint.local(config=config) as pdp:
        by_pdp = replay(_inputs(recorded), pdp)
    evaluator = LocalEvaluator(PolicySource.from_directory(), config)
    by_evaluator = replay(_inputs(recorded), evaluator, max_listed=0)
    assert by_pdp.counts == by_evaluator.counts
    assert by_pdp.counts["allow_to_deny"] > 0
    assert by_evaluator.changes == ()
    assert by_pdp.changes[0].where == "1"  # events handed over in Python: their position
    assert not by_pdp.widening
    with pytest.raises(ValueError, match="max_listed"):
        replay([], pdp, max_listed=-1)


def test_an_opa_fleet_log_is_replayed_too(tmp_path: Path) -> None:
    """OPA's own events: the raw decision document as the result, no extras, an
    undefined decision without a result, and other paths."""
    config = _config("same")
    evaluator = LocalEvaluator(PolicySource.from_directory(), config)
    claims = _claim_sets()
    lines = []
    for number, claim_set in enumerate(claims):
        defined, value = evaluator.evaluate_path(DECISION_PATH, claim_set)
        assert defined
        lines.append(
            {
                "labels": {"id": "opa-1", "version": "1.20.2"},
                "decision_id": f"opa-{number}",
                "path": DECISION_PATH,
                "input": claim_set,
                "result": value,
                "requested_by": "10.0.0.1:51234",
                "timestamp": "2026-11-22T10:00:00.000000000Z",
            }
        )
    lines.append({"decision_id": "opa-undefined", "path": DECISION_PATH, "input": claims[0]})
    lines.append({"decision_id": "opa-other", "path": "system/health", "result": True})
    no_now = {key: value for key, value in claims[0].items() if key != "now"}
    lines.append({"decision_id": "opa-no-now", "path": DECISION_PATH, "input": no_now})
    report = replay(
        (LogLine("opa.log", n, event=e) for n, e in enumerate(lines, 1)),
        load_candidate(config=_config("revoke")).evaluator,
    )
    affected = {e["decision_id"] for e in lines if REVOKED_SIGNER in _signers(e)} - {"opa-no-now"}
    # the undefined one was a deny (engine.undefined): replayed, now denied for its reasons
    assert {c.decision_id for c in report.changes} == affected
    assert report.other_paths == {"system/health": 1}
    assert report.not_replayable == {"input.no_now": 1}
    undefined = next(c for c in report.changes if c.decision_id == "opa-undefined")
    assert undefined.before == Outcome(False, ("engine.undefined",))


def test_a_candidate_reading_the_clock_is_flagged(tmp_path: Path) -> None:
    policy = tmp_path / "rego"
    for name, text in PolicySource.from_directory().modules.items():
        (policy / name).parent.mkdir(parents=True, exist_ok=True)
        (policy / name).write_text(text)
    clock = policy / "attestpolicy" / "v1" / "clock.rego"
    clock.write_text(
        "package attestpolicy.v1\n\n# time.now_ns() in a comment is not a call\n"
        "_clock := time.now_ns()\n"
    )
    with load_candidate(policy_dir=policy, config=_config("same")) as candidate:
        assert len(candidate.warnings) == 1
        assert "time.now_ns (attestpolicy/v1/clock.rego)" in candidate.warnings[0]
    with load_candidate(config=_config("same")) as shipped:
        assert shipped.warnings == ()


def test_evidence_decisions_replay_with_their_evidence_problems(tmp_path: Path) -> None:
    """A decide_evidence deny carries the evidence problems beside the policy's reasons
    (the event's evidence_failures): replayed, they are kept, so nothing changes by itself."""
    fresh = fresh_evidence()
    tampered = copy.deepcopy(fresh.document)
    annotations = tampered["image"]["cosign"][0]["signature"]["annotations"]
    signature = bytearray(base64.b64decode(annotations[COSIGN_SIGNATURE]))
    signature[-1] ^= 0x01
    annotations[COSIGN_SIGNATURE] = base64.b64encode(signature).decode()
    log = tmp_path / "evidence.log"
    logger = DecisionLogger(FileSink(log), close_timeout=60)
    with logger, PolicyDecisionPoint.local(config=fresh.config) as pdp:
        pdp.add_observer(logger)
        allowed = pdp.decide_evidence(fresh.document, fresh.trust)
        denied = pdp.decide_evidence(tampered, fresh.trust)
        pdp.decide_evidence({"version": 99}, fresh.trust)  # no claims: no input
    assert allowed.allow
    assert "evidence.signature_invalid" in denied.reason_codes

    same = replay(read_decision_log(log), load_candidate(config=fresh.config).evaluator)
    assert same.counts == {"unchanged": 2}
    assert same.not_replayable == {"input.absent": 1}

    revoking = copy.deepcopy(fresh.config)
    revoking.setdefault("revoked", {}).setdefault("signer_subjects", {})[fresh.signer_key_id] = (
        "key leaked"
    )
    report = replay(read_decision_log(log), load_candidate(config=revoking).evaluator)
    assert report.counts == {"unchanged": 1, "allow_to_deny": 1}
    (change,) = report.changes
    assert change.decision_id == allowed.decision_id
    assert change.after.reason_codes == ("image.untrusted_signer",)
