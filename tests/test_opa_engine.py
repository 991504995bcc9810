"""OPA's Go evaluator in-process (``engine="opa"``): the same decisions as regorus, fail-closed.

Real engines only: regorus and OPA v1.20.2 embedded by ``opa-golib-python-bindings``.
These tests fail when OPA's engine is missing, unless ``ATTESTPOLICY_REGORUS_ONLY=1``.
Decisions are compared between engines and paths, never hard-coded, so they hold while
the policy changes.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import tarfile
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from serving import serve_process

from attestpolicy.bundle import build_bundle
from attestpolicy.claims import ClaimSet, format_timestamp
from attestpolicy.cli import main
from attestpolicy.decision import Decision, decision_from_policy_result
from attestpolicy.engine._inprocess import InProcessEvaluator, make_evaluator
from attestpolicy.engine.local import LocalEvaluator
from attestpolicy.errors import EngineUnavailableError, EvaluatorError, PolicyError
from attestpolicy.pdp import PolicyDecisionPoint
from attestpolicy.policy import PolicySource, default_policy_dir
from attestpolicy.regotest import Outcome, run_tests

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "attestpolicy" / "examples"
CLAIM_FILES = sorted((EXAMPLES / "claims").glob("*.json"))
INSTALL = "pip install --ignore-requires-python opa-golib-python-bindings==0.4.4"

pytestmark = pytest.mark.usefixtures("requires_opa")


def _fields(decision: Decision) -> tuple[Any, ...]:
    return (
        decision.allow,
        decision.ttl_seconds,
        decision.ttl_bound_by,
        decision.valid_until,
        decision.reasons,
    )


def _policy_input(path: Path) -> dict[str, Any]:
    claims = ClaimSet.parse(path.read_text())
    policy_input = claims.to_input()
    policy_input["now"] = format_timestamp(claims.now or datetime.now(UTC))
    return policy_input


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    document: dict[str, Any] = json.loads((EXAMPLES / "config.json").read_text())
    return document


def _policy_dir(tmp_path: Path, body: str) -> Path:
    directory = tmp_path / "policy"
    directory.mkdir()
    (directory / "p.rego").write_text(f"package attestpolicy.v1\n\nimport rego.v1\n\n{body}\n")
    return directory


# --- OpaEvaluator -----------------------------------------------------------------


@pytest.mark.parametrize("claims_file", CLAIM_FILES, ids=lambda path: path.stem)
def test_opa_decides_like_regorus_on_every_example(
    claims_file: Path, config: dict[str, Any]
) -> None:
    source = PolicySource.from_directory()
    opa = make_evaluator("opa", source, config)
    regorus = LocalEvaluator(source, config)
    policy_input = _policy_input(claims_file)
    at = datetime.now(UTC)
    opa_decision = opa.evaluate(policy_input, evaluated_at=at)
    assert not {"engine.error", "engine.undefined"} & set(opa_decision.reason_codes)
    assert _fields(opa_decision) == _fields(regorus.evaluate(policy_input, evaluated_at=at))
    path = "attestpolicy/v1/decision"
    assert opa.evaluate_path(path, policy_input) == regorus.evaluate_path(path, policy_input)


def test_opa_pdp_decides_like_the_regorus_pdp(config: dict[str, Any]) -> None:
    with (
        PolicyDecisionPoint.local(config=config, engine="opa", cache=False) as opa,
        PolicyDecisionPoint.local(config=config, cache=False) as regorus,
    ):
        assert opa.revision.endswith("+opa-0.4.4")
        assert regorus.revision.endswith("+regorus-0.13.0")
        assert opa.revision.split("+")[:2] == regorus.revision.split("+")[:2]
        for path in CLAIM_FILES:
            raw = path.read_text()
            assert _fields(opa.decide(raw)) == _fields(regorus.decide(raw)), path.name


def test_opa_revision_swap_revoke_and_reload(
    config: dict[str, Any], claims: dict[str, Any]
) -> None:
    pdp = PolicyDecisionPoint.local(config=config, engine="opa")
    first = pdp.decide(claims)
    assert first.allow, first.reasons
    assert pdp.revoke(node_id=claims["node"]["id"], reason="stolen") == 1
    assert "node.revoked" in pdp.decide(claims).reason_codes
    evaluator = pdp._evaluator
    assert isinstance(evaluator, InProcessEvaluator)
    assert evaluator.revocations == {"node_ids": {claims["node"]["id"]: "stolen"}}
    assert evaluator.config == config  # the configuration itself is untouched
    # Reloading the same configuration must not lift the revocation (a deny stays a deny).
    revision = pdp.reload(config=config)
    assert revision.endswith("+opa-0.4.4")
    assert "+revocations-" in revision
    assert "node.revoked" in pdp.decide(claims).reason_codes
    assert pdp.lift(node_id=claims["node"]["id"]) is True
    assert pdp.decide(claims).allow
    pdp.close()


def test_revoke_records_the_default_reason(config: dict[str, Any], claims: dict[str, Any]) -> None:
    pdp = PolicyDecisionPoint.local(config=config)
    pdp.revoke(spiffe_id=claims["subject"]["spiffe_id"])
    evaluator = pdp._evaluator
    assert isinstance(evaluator, InProcessEvaluator)
    spiffe_ids = evaluator.revocations["spiffe_ids"]
    assert spiffe_ids[claims["subject"]["spiffe_id"]] == "revoked by PolicyDecisionPoint.revoke"
    decision = pdp.decide(claims)
    assert decision.reason_codes == ("subject.revoked",)
    assert decision.reasons[0].message.endswith("is revoked: revoked by PolicyDecisionPoint.revoke")


def test_opa_builtin_error_is_an_engine_error_deny(tmp_path: Path) -> None:
    policy = _policy_dir(tmp_path, 'decision := {"allow": time.parse_rfc3339_ns(input.now) > 0}')
    evaluator = make_evaluator("opa", PolicySource.from_directory(policy))
    at = datetime.now(UTC)
    decision = evaluator.evaluate({"now": "2026-02-30T00:00:00Z"}, evaluated_at=at)
    assert decision.reason_codes == ("engine.error",)
    assert "day out of range" in decision.reasons[0].message
    assert decision.policy_revision == evaluator.revision
    with pytest.raises(EvaluatorError, match="day out of range"):
        evaluator.evaluate_path("attestpolicy/v1/decision", {"now": "2026-02-30T00:00:00Z"})


def test_opa_undefined_decision_is_an_engine_undefined_deny(tmp_path: Path) -> None:
    policy = _policy_dir(tmp_path, 'decision := {"allow": true} if input.never')
    evaluator = make_evaluator("opa", PolicySource.from_directory(policy))
    decision = evaluator.evaluate({"now": "x"}, evaluated_at=datetime.now(UTC))
    assert decision.reason_codes == ("engine.undefined",)
    assert evaluator.evaluate_path("attestpolicy/v1/decision", {}) == (False, None)


def test_opa_compile_error_fails_at_construction_and_swap(tmp_path: Path) -> None:
    broken = _policy_dir(tmp_path, "decision := nosuchfunction(1)")
    with pytest.raises(PolicyError, match="nosuchfunction"):
        make_evaluator("opa", PolicySource.from_directory(broken))
    evaluator = make_evaluator("opa", PolicySource.from_directory())
    before = evaluator.revision
    with pytest.raises(PolicyError):
        evaluator.reload(PolicySource.from_directory(broken))
    assert evaluator.revision == before


def test_opa_data_paths_of_any_depth(config: dict[str, Any]) -> None:
    evaluator = make_evaluator("opa", PolicySource.from_directory(), config)
    assert evaluator.evaluate_path("attestpolicy/config/limits", None) == (True, config["limits"])
    assert evaluator.evaluate_path("/attestpolicy/config/limits/", {}) == (True, config["limits"])
    assert evaluator.evaluate_path("attestpolicy/config/nope", None) == (False, None)
    # deeper than the fixed queries: the value at depth 8 is indexed in Python
    deep = {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": {"j": 1}}}}}}}}}}
    source = PolicySource(modules=PolicySource.from_directory().modules, revision="r", data=deep)
    deep_evaluator = make_evaluator("opa", source)
    assert deep_evaluator.evaluate_path("a/b/c/d/e/f/g/h/i/j", None) == (True, 1)
    assert deep_evaluator.evaluate_path("a/b/c/d/e/f/g/h/i/x", None) == (False, None)
    assert deep_evaluator.evaluate_path("a/b/c/d/e/f/g/h/i/j/k", None) == (False, None)


def test_unknown_engine_name_is_a_value_error(config: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"unknown engine 'wasm'.*'regorus', 'opa'"):
        PolicyDecisionPoint.local(config=config, engine="wasm")
    with pytest.raises(ValueError, match="unknown engine"):
        PolicyDecisionPoint.from_bundle(ROOT / "bundles" / "attestpolicy.tar.gz", engine="OPA")


_WITHOUT_OPA = "import sys; sys.modules['opa_bindings'] = None\n"


def _python_without_opa(code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", _WITHOUT_OPA + code],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
        cwd=ROOT,
    )


def test_missing_opa_engine_error_says_how_to_install() -> None:
    result = _python_without_opa(
        "from attestpolicy import PolicyDecisionPoint\n"
        "from attestpolicy.errors import EngineUnavailableError, EvaluatorError\n"
        "try:\n"
        "    PolicyDecisionPoint.local(engine='opa')\n"
        "except EngineUnavailableError as exc:\n"
        "    assert isinstance(exc, EvaluatorError) and exc.code == 'engine.unavailable'\n"
        "    print(exc)\n"
    )
    assert result.returncode == 0, result.stderr
    assert INSTALL in result.stdout
    assert issubclass(EngineUnavailableError, EvaluatorError)


def test_cli_without_opa_engine() -> None:
    cli = "from attestpolicy.cli import main; sys.exit(main(sys.argv[1:]))"
    claims = str(EXAMPLES / "claims" / "allow-fully-attested.json")
    config = str(EXAMPLES / "config.json")
    for argv in (
        ["decide", "--claims", claims, "--config", config, "--engine", "opa"],
        ["test", "--engine", "opa"],
        ["test", "--engine", "both"],
        ["serve", "--engine", "opa", "--addr", "127.0.0.1:0"],
    ):
        result = _python_without_opa(f"sys.argv = ['x', *{argv!r}]\n{cli}")
        assert result.returncode == 2, (argv, result.stdout, result.stderr)
        assert INSTALL in result.stderr, argv
        assert "Traceback" not in result.stderr, argv
    result = _python_without_opa(f"sys.argv = ['x', 'test']\n{cli}")
    assert result.returncode == 0, result.stdout + result.stderr
    # on stderr, so that --format json keeps stdout one JSON document
    assert "OPA's engine is not available, testing with regorus only" in result.stderr
    assert INSTALL in result.stderr
    assert "engine: regorus (regorus-" in result.stdout
    assert "engine: opa" not in result.stdout


# --- the Rego test runner and the CLI --------------------------------------------------


def test_shipped_rego_tests_pass_in_opa() -> None:
    opa, regorus = run_tests(engine="opa"), run_tests(engine="regorus")
    assert (opa.engine, regorus.engine) == ("opa", "regorus")
    assert opa.engine_version == "opa-0.4.4"
    assert [r.name for r in opa.results] == [r.name for r in regorus.results]
    failing = [r.line() for r in opa.results if r.outcome is not Outcome.PASS]
    assert not failing, opa.text()
    assert opa.ok


def test_opa_runner_reports_errors_failures_and_load_errors(tmp_path: Path) -> None:
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "data.json").write_text('{"limit": 3}')
    (tmp_path / "t_test.rego").write_text(
        "package t_test\n\nimport rego.v1\n\n"
        'test_error if time.parse_rfc3339_ns("2026-02-30T00:00:00Z") > 0\n\n'
        "test_data if data.cfg.limit == 3\n\n"
        "test_false if data.cfg.limit == 4\n\n"
        "test_undefined if data.cfg.missing\n"
    )
    report = run_tests([tmp_path], engine="opa")
    outcomes = {r.name.rsplit(".", 1)[1]: r.outcome for r in report.results}
    assert outcomes == {
        "test_error": Outcome.ERROR,
        "test_data": Outcome.PASS,
        "test_false": Outcome.FAIL,
        "test_undefined": Outcome.FAIL,
    }
    assert report.text().splitlines()[-3:] == ["PASS: 1/4", "FAIL: 2/4", "ERROR: 1/4"]
    (tmp_path / "bad.rego").write_text("package bad\n\nimport rego.v1\n\nx := nosuchfunction(1)\n")
    broken = run_tests([tmp_path], engine="opa")
    assert not broken.ok
    assert broken.results == ()
    assert any("nosuchfunction" in error for error in broken.load_errors)


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_test_engines(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    for argv, engines in (
        ((), ["regorus", "opa"]),
        (("--engine", "both"), ["regorus", "opa"]),
        (("--engine", "opa"), ["opa"]),
        (("--engine", "regorus"), ["regorus"]),
    ):
        code, out, _ = _cli(capsys, "test", *argv)
        assert code == 0, out
        headers = re.findall(r"^engine: (\w+) \(", out, flags=re.MULTILINE)
        assert headers == engines, argv
        if len(engines) == 2:
            assert out.strip().splitlines()[-1] == "engines: regorus PASS, opa PASS"
    # a test that passes in regorus and errors in OPA: the run fails
    (tmp_path / "d_test.rego").write_text(
        'package d_test\n\nimport rego.v1\n\ntest_sprintf if sprintf("%d", [-1]) == "--1"\n'
    )
    code, out, _ = _cli(capsys, "test", str(tmp_path), "--engine", "both")
    assert code == 2  # as opa test: 2 when a test fails or errors
    assert out.strip().splitlines()[-1] == "engines: regorus PASS, opa FAIL"
    assert _cli(capsys, "test", str(tmp_path), "--engine", "regorus")[0] == 0
    assert _cli(capsys, "test", str(tmp_path), "--engine", "opa")[0] == 2


def test_cli_decide_with_opa(capsys: pytest.CaptureFixture[str]) -> None:
    config = str(EXAMPLES / "config.json")
    for path in CLAIM_FILES:
        outputs = []
        for engine in ("regorus", "opa"):
            code, out, _ = _cli(
                capsys, "decide", "--claims", str(path), "--config", config, "--engine", engine
            )
            document = json.loads(out)
            assert code == (0 if document["allow"] else 1)
            assert document["policy_revision"].endswith(
                f"+{engine}-" + ("0.13.0" if engine == "regorus" else "0.4.4")
            )
            outputs.append(
                {
                    k: document.get(k)
                    for k in ("allow", "ttl_seconds", "ttl_bound_by", "valid_until", "reasons")
                }
            )
        assert outputs[0] == outputs[1], path.name
    code, _, err = _cli(
        capsys,
        "decide",
        "--claims",
        str(CLAIM_FILES[0]),
        "--engine",
        "opa",
        "--remote",
        "http://127.0.0.1:1",
    )
    assert code == 2
    assert "--engine" in err


# --- serve --engine opa ---------------------------------------------------------------


@pytest.fixture
def opa_server(tmp_path: Path) -> Iterator[str]:
    log_path = tmp_path / "serve.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    argv = [
        sys.executable,
        "-m",
        "attestpolicy",
        "serve",
        "--addr",
        "127.0.0.1:0",
        "--config",
        str(EXAMPLES / "config.json"),
        "--workers",
        "2",
        "--engine",
        "opa",
    ]
    with serve_process(argv, cwd=tmp_path, env=env, log_path=log_path) as (_, url):
        yield url


def test_serve_with_opa_answers_the_data_api(opa_server: str, config: dict[str, Any]) -> None:
    regorus = PolicyDecisionPoint.local(config=config, cache=False)
    with requests.Session() as http:
        for _ in range(2):  # two fresh connections: both workers run OPA
            for path in CLAIM_FILES:
                policy_input = _policy_input(path)
                response = http.post(
                    f"{opa_server}/v1/data/attestpolicy/v1/decision?provenance",
                    json={"input": policy_input},
                    timeout=30,
                )
                assert response.status_code == 200, response.text
                body = response.json()
                assert body["provenance"]["version"] == "opa-0.4.4"
                revision = body["provenance"]["bundles"]["attestpolicy"]["revision"]
                assert revision.endswith("+opa-0.4.4")
                at = datetime.now(UTC)
                served = decision_from_policy_result(
                    body["result"], policy_revision="", evaluated_at=at
                )
                expected = regorus.decide(policy_input)
                assert _fields(served) == _fields(expected), path.name
            http.close()
        limits = http.get(f"{opa_server}/v1/data/attestpolicy/config/limits", timeout=30)
        assert limits.json() == {"result": config["limits"]}
        assert http.post(f"{opa_server}/v1/data/no/such/doc", json={"input": {}}).json() == {}


# --- item 8: the bundle, loaded the way OPA loads bundles ----------------------------------


def _bundle_files(blob: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
        return {
            member.name.lstrip("/"): tar.extractfile(member).read()  # type: ignore[union-attr]
            for member in tar.getmembers()
            if member.isfile()
        }


def _directory_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _opa_like_opa_run(*bundles: Mapping[str, bytes]) -> Any:
    """An OpaEngine loaded as ``opa run -b ... -b ...``: modules, data.json at their path."""
    from opa_bindings import OpaEngine

    engine = OpaEngine()
    for files in bundles:
        for name, content in sorted(files.items()):
            if name.endswith(".rego"):
                engine.add_policy(name, content.decode())
            elif name == "data.json" or name.endswith("/data.json"):
                engine.add_data(json.loads(content), ".".join(name.split("/")[:-1]))
    return engine


def _opa_decision(engine: Any, policy_input: dict[str, Any]) -> Decision:
    value = engine.eval_document("attestpolicy.v1.decision", policy_input)
    return decision_from_policy_result(value, policy_revision="", evaluated_at=datetime.now(UTC))


def test_repository_bundles_in_opa_give_the_pdps_decisions() -> None:
    tar_path = ROOT / "bundles" / "attestpolicy.tar.gz"
    config_dir = ROOT / "bundles" / "example-config"
    config_files = _directory_files(config_dir)
    config = json.loads(config_files["attestpolicy/config/data.json"])
    engine = _opa_like_opa_run(_bundle_files(tar_path.read_bytes()), config_files)
    assert engine.eval_document("attestpolicy.config") == config
    pdp = PolicyDecisionPoint.from_bundle(tar_path, config=config, cache=False)
    for path in CLAIM_FILES:
        policy_input = _policy_input(path)
        assert _fields(_opa_decision(engine, policy_input)) == _fields(pdp.decide(policy_input)), (
            path.name
        )
    engine.close()


def test_freshly_built_bundle_in_opa_gives_the_shipped_policys_decisions(
    config: dict[str, Any],
) -> None:
    blob = build_bundle(default_policy_dir())
    config_bundle = {"attestpolicy/config/data.json": json.dumps(config).encode()}
    engine = _opa_like_opa_run(_bundle_files(blob), config_bundle)
    pdp = PolicyDecisionPoint.local(config=config, cache=False)
    opa_pdp = PolicyDecisionPoint.from_bundle(blob, config=config, engine="opa", cache=False)
    for path in CLAIM_FILES:
        policy_input = _policy_input(path)
        expected = _fields(pdp.decide(policy_input))
        assert _fields(_opa_decision(engine, policy_input)) == expected, path.name
        assert _fields(opa_pdp.decide(policy_input)) == expected, path.name
    engine.close()
