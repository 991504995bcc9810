"""An organisation's rule beside the default policy: the example in
attestpolicy/examples/policies/prod_builder, several policy directories as one policy,
and how the rule composes with the shipped decision rule, in both engines."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import pytest
from hypothesis import HealthCheck, given, settings

from attestpolicy._server_limits import ServerSettingsError
from attestpolicy.claims import ClaimSet
from attestpolicy.cli import main
from attestpolicy.decision import Decision
from attestpolicy.engine.local import LocalEvaluator
from attestpolicy.engine.opa import OpaEvaluator
from attestpolicy.errors import ClaimsError, EngineUnavailableError, PolicyError
from attestpolicy.pdp import PolicyDecisionPoint
from attestpolicy.policy import PolicySource, default_policy_dir
from attestpolicy.regotest import run_tests
from attestpolicy.server import ENV_POLICY_DIR, create_app, run_server
from attestpolicy.testing import strategies

ROOT: Final = Path(__file__).resolve().parent.parent
EXAMPLE: Final = ROOT / "attestpolicy" / "examples" / "policies" / "prod_builder"
DOC: Final = ROOT / "docs" / "custom-policies.md"
CONFIG: Final[dict[str, Any]] = json.loads((EXAMPLE / "config.json").read_text(encoding="utf-8"))
CLAIMS: Final[dict[str, Any]] = json.loads((EXAMPLE / "claims.json").read_text(encoding="utf-8"))
RULE: Final = "acme.prod_builder"
PRODUCTION_BUILDER: Final = CLAIMS["provenance"]["builder_id"]
SHARED_RUNNER: Final = "https://ci.acme.example/builders/shared-runner"
STAGING: Final = "spiffe://acme.example/ns/staging/sa/payments"
PROPERTY: Final = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def _with(document: Mapping[str, Any], **sections: Any) -> dict[str, Any]:
    """A copy of the claim set with sections replaced (None removes one)."""
    copied: dict[str, Any] = json.loads(json.dumps(document))
    for name, value in sections.items():
        if value is None:
            copied.pop(name, None)
        else:
            copied[name] = value
    return copied


def _comparable(decision: Decision) -> dict[str, Any]:
    """A decision without what differs per call or per engine (id, time, revision)."""
    return decision.model_dump(exclude={"decision_id", "evaluated_at", "policy_revision"})


def _breaks_rule(claims: Mapping[str, Any]) -> bool:
    """The rule, stated independently: a workload registered in namespace prod without
    verified provenance from the production builder."""
    workload = CONFIG["workloads"].get(claims["subject"]["spiffe_id"])
    if workload is None or workload["namespace"] != "prod":
        return False
    provenance = claims.get("provenance") or {}
    return not (
        provenance.get("verified") is True and provenance.get("builder_id") == PRODUCTION_BUILDER
    )


def _valid(document: object) -> bool:
    if not isinstance(document, dict) or document.get("now") is None:
        return False
    try:
        ClaimSet.parse(json.loads(json.dumps(document)))
    except ClaimsError:
        return False
    return True


# --- several directories, one policy ----------------------------------------------------


def test_several_directories_load_as_one_policy() -> None:
    shipped = PolicySource.from_directory()
    extended = PolicySource.from_directory([default_policy_dir(), EXAMPLE])
    assert set(extended.modules) == {*shipped.modules, "prod_builder.rego"}
    assert extended.revision != shipped.revision
    assert PolicySource.from_directory([default_policy_dir()]).revision == shipped.revision
    assert PolicySource.from_directory([str(EXAMPLE), default_policy_dir()]).modules.keys() == (
        extended.modules.keys()
    )


def test_a_directory_given_twice_is_loaded_once() -> None:
    twice = PolicySource.from_directory([default_policy_dir(), EXAMPLE, EXAMPLE / "."])
    assert twice == PolicySource.from_directory([default_policy_dir(), EXAMPLE])


def test_two_files_with_one_name_are_refused(tmp_path: Path) -> None:
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "rules.rego").write_text("package attestpolicy.v1\n")
    with pytest.raises(PolicyError, match=r"two policy files are named rules\.rego: .*one.*two"):
        PolicySource.from_directory([tmp_path / "one", tmp_path / "two"])


def test_each_directory_must_hold_a_policy(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="no policy directory given"):
        PolicySource.from_directory([])
    with pytest.raises(PolicyError, match=r"policy directory not found: .*missing"):
        PolicySource.from_directory([default_policy_dir(), tmp_path / "missing"])
    (tmp_path / "only_test.rego").write_text("package x_test\n")
    with pytest.raises(PolicyError, match=r"no \.rego files under"):
        PolicySource.from_directory([default_policy_dir(), tmp_path])


def test_pdp_local_and_reload_take_several_directories() -> None:
    with PolicyDecisionPoint.local(config=CONFIG, cache=False) as pdp:
        shared = _with(CLAIMS, provenance={**CLAIMS["provenance"], "builder_id": SHARED_RUNNER})
        assert pdp.decide(shared).allow  # the shipped policy trusts both builders
        pdp.reload(policy_dir=(default_policy_dir(), EXAMPLE))
        assert pdp.decide(shared).reason_codes == (RULE,)
        pdp.reload(policy_dir=[default_policy_dir()])
        assert pdp.decide(shared).allow


# --- the example's own tests ------------------------------------------------------------


def test_the_examples_rego_tests_pass_beside_the_shipped_ones(engine: str) -> None:
    report = run_tests([default_policy_dir(), EXAMPLE], engine=engine)
    assert report.ok, report.text()
    ours = [result for result in report.results if result.name.startswith("data.acme.")]
    assert len(ours) == 7
    assert any(result.name.startswith("data.attestpolicy.") for result in report.results)


def _pytest(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """pytest in ``directory`` as a user runs it (its pytest.ini; the plugin from the
    installed package)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST_")}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.mark.usefixtures("requires_opa")
def test_the_docs_commands_run_the_example_in_a_copy(tmp_path: Path) -> None:
    """The shell block of docs/custom-policies.md, as written, in an empty directory: the
    example copied out of the package, its Rego tests beside the shipped ones in both
    engines, a decision with both --policy directories, and pytest with the plugin (the
    Rego tests in both engines, the fixed cases and both properties)."""
    (script,) = _blocks("sh")
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "engines: regorus PASS, opa PASS" in result.stdout
    assert '"allow": true' in result.stdout
    passed = re.findall(r"^(\S+) PASSED", result.stdout, flags=re.MULTILINE)
    rego = [name for name in passed if name.startswith("prod_builder_test.rego::")]
    assert len(rego) == 14
    assert {name.rsplit("[", 1)[1] for name in rego} == {"regorus]", "opa]"}
    assert {name.split("::")[1] for name in passed if name.startswith("test_prod")} == {
        "test_production_builder_is_allowed",
        "test_shared_runner_is_denied_in_prod",
        "test_staging_takes_the_shared_runner",
        "test_no_allow_with_a_violation",
        "test_same_decision_in_both_engines",
    }


@pytest.mark.usefixtures("requires_opa")
def test_a_broken_copy_of_the_rule_fails_its_tests_and_its_property(tmp_path: Path) -> None:
    copy = shutil.copytree(EXAMPLE, tmp_path / "acme-policy")
    rule = copy / "prod_builder.rego"
    rule.write_text(rule.read_text().replace('{"prod"}', '{"production"}'))
    result = _pytest(copy, "-k", "not same_decision")
    assert result.returncode == 1, result.stdout
    for engine in ("regorus", "opa"):
        assert f"test_other_trusted_builder_is_denied_in_prod[{engine}]" in result.stdout
    assert "where decision = " in result.stdout  # the failing expression's values
    assert "FAILED test_prod_builder.py::test_no_allow_with_a_violation" in result.stdout
    assert re.search("Falsifying example|Failing test case", result.stdout)  # its input


# --- composition with the shipped decision rule, in both engines ------------------------


@pytest.fixture(scope="module")
def evaluators() -> Iterator[dict[tuple[str, str], LocalEvaluator | OpaEvaluator]]:
    """The shipped policy and the extended one, each in regorus and in OPA's engine."""
    sources = {
        "shipped": PolicySource.from_directory(),
        "extended": PolicySource.from_directory([default_policy_dir(), EXAMPLE]),
    }
    made: dict[tuple[str, str], LocalEvaluator | OpaEvaluator] = {}
    for name, source in sources.items():
        made[name, "regorus"] = LocalEvaluator(source, CONFIG)
        try:
            made[name, "opa"] = OpaEvaluator(source, CONFIG)
        except EngineUnavailableError as exc:  # as tests/conftest.py's opa_required()
            if os.environ.get("ATTESTPOLICY_REGORUS_ONLY") != "1":
                pytest.fail(str(exc))
            pytest.skip(str(exc))
    yield made
    for evaluator in made.values():
        evaluator.close()


def _decide(
    evaluators: Mapping[tuple[str, str], LocalEvaluator | OpaEvaluator], document: Any
) -> tuple[Decision, Decision]:
    """(shipped, extended) decisions, after checking each is the same in both engines."""
    now = datetime.now(UTC)
    decisions = {
        key: evaluator.evaluate(document, evaluated_at=now) for key, evaluator in evaluators.items()
    }
    for policy in ("shipped", "extended"):
        regorus, opa = decisions[policy, "regorus"], decisions[policy, "opa"]
        assert _comparable(regorus) == _comparable(opa), policy
    return decisions["shipped", "regorus"], decisions["extended", "regorus"]


def _assert_composes(shipped: Decision, extended: Decision, fires: bool) -> None:
    """The rule adds its reason when it fires and changes nothing else."""
    if not fires:
        assert _comparable(extended) == _comparable(shipped)
        return
    assert not extended.allow
    assert sorted(extended.reason_codes) == sorted([*shipped.reason_codes, RULE])
    assert [r for r in extended.reasons if r.code != RULE] == list(shipped.reasons)
    assert (extended.ttl_seconds, extended.ttl_bound_by, extended.valid_until) == (0, None, None)
    assert (extended.ttl_terms, extended.revocable) == ((), ())


@pytest.mark.parametrize(
    ("claims", "fires"),
    [
        pytest.param(CLAIMS, False, id="prod, production builder"),
        pytest.param(
            _with(CLAIMS, provenance={**CLAIMS["provenance"], "builder_id": SHARED_RUNNER}),
            True,
            id="prod, shared runner",
        ),
        pytest.param(_with(CLAIMS, provenance=None), True, id="prod, no provenance"),
        pytest.param(
            _with(CLAIMS, provenance={**CLAIMS["provenance"], "verified": False}),
            True,
            id="prod, unverified provenance",
        ),
        pytest.param(
            _with(
                CLAIMS,
                subject={"spiffe_id": STAGING},
                provenance={**CLAIMS["provenance"], "builder_id": SHARED_RUNNER},
            ),
            False,
            id="staging, shared runner",
        ),
        pytest.param(_with(CLAIMS, image=None), False, id="prod, missing required image"),
        pytest.param(
            _with(CLAIMS, image=None, provenance=None), True, id="prod, nothing but the subject"
        ),
    ],
)
def test_the_rule_adds_its_reason_and_changes_nothing_else(
    evaluators: Mapping[tuple[str, str], LocalEvaluator | OpaEvaluator],
    claims: dict[str, Any],
    fires: bool,
) -> None:
    assert _breaks_rule(claims) is fires
    shipped, extended = _decide(evaluators, claims)
    _assert_composes(shipped, extended, fires)


@PROPERTY
@given(claims=strategies.claim_sets(config=CONFIG))
def test_on_any_claim_set_the_rule_only_adds_its_reason(
    evaluators: Mapping[tuple[str, str], LocalEvaluator | OpaEvaluator], claims: dict[str, Any]
) -> None:
    """No allow with a violation, an allow unchanged (TTL, valid_until, ttl_terms,
    revocable), the same decisions in both engines."""
    shipped, extended = _decide(evaluators, claims)
    _assert_composes(shipped, extended, _breaks_rule(claims))


@PROPERTY
@given(document=strategies.raw_inputs(config=CONFIG))
def test_on_raw_input_the_rule_adds_nothing_to_an_invalid_input(
    evaluators: Mapping[tuple[str, str], LocalEvaluator | OpaEvaluator], document: Any
) -> None:
    shipped, extended = _decide(evaluators, document)
    if _valid(document):
        _assert_composes(shipped, extended, _breaks_rule(document))
    else:
        assert not extended.allow
        assert _comparable(extended) == _comparable(shipped)


def test_an_invalid_configuration_is_only_config_invalid() -> None:
    """The rule reads the workload entry only once the configuration part is valid."""
    broken = {**CONFIG, "limits": {**CONFIG["limits"], "min_ttl_seconds": 0}}
    source = PolicySource.from_directory([default_policy_dir(), EXAMPLE])
    evaluator = LocalEvaluator(source, broken)
    try:
        claims = _with(CLAIMS, provenance=None)
        decision = evaluator.evaluate(claims, evaluated_at=datetime.now(UTC))
    finally:
        evaluator.close()
    assert decision.reason_codes == ("config.invalid",)


# --- the command line and the server ----------------------------------------------------


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_decide_takes_policy_twice(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    shared = tmp_path / "shared.json"
    shared.write_text(
        json.dumps(_with(CLAIMS, provenance={**CLAIMS["provenance"], "builder_id": SHARED_RUNNER}))
    )
    config = str(EXAMPLE / "config.json")
    both = ("--policy", str(default_policy_dir()), "--policy", str(EXAMPLE))
    code, out, _ = _cli(capsys, "decide", *both, "--config", config, "--claims", str(shared))
    assert code == 1
    assert [reason["code"] for reason in json.loads(out)["reasons"]] == [RULE]
    code, out, _ = _cli(
        capsys, "decide", *both, "--config", config, "--claims", str(EXAMPLE / "claims.json")
    )
    assert code == 0
    code, _, _ = _cli(capsys, "decide", "--config", config, "--claims", str(shared))
    assert code == 0  # the shipped policy alone


def test_decide_with_clashing_policy_files_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    copy = shutil.copytree(EXAMPLE, tmp_path / "copy")
    argv = ["decide", "--policy", str(EXAMPLE), "--policy", str(copy)]
    config = str(EXAMPLE / "config.json")
    code, _, err = _cli(capsys, *argv, "--config", config, "--claims", str(EXAMPLE / "claims.json"))
    assert code == 2
    assert "two policy files are named prod_builder.rego" in err
    assert "Traceback" not in err


def test_evaluate_and_serve_take_policy_twice() -> None:
    from attestpolicy.cli import build_parser

    parser = build_parser()
    twice = ["--policy", "a", "--policy", "b"]
    evaluate = parser.parse_args(["evaluate", "--evidence", "e", "--trust", "t", *twice])
    assert evaluate.policy == ["a", "b"]
    assert parser.parse_args(["serve", *twice]).policy == ["a", "b"]
    assert parser.parse_args(["decide", "--claims", "c"]).policy is None


def test_the_server_workers_load_every_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    """What run_server hands its workers: the directories, joined by os.pathsep."""
    joined = os.pathsep.join([str(default_policy_dir()), str(EXAMPLE)])
    monkeypatch.setenv(ENV_POLICY_DIR, joined)
    monkeypatch.setenv("ATTESTPOLICY_SERVE_CONFIG", str(EXAMPLE / "config.json"))
    app = create_app()
    evaluator = app.state.evaluator
    try:
        shared = _with(CLAIMS, provenance=None)
        decision = evaluator.evaluate(shared, evaluated_at=datetime.now(UTC))
    finally:
        evaluator.close()
    assert decision.reason_codes == (RULE,)


def test_run_server_refuses_a_directory_it_cannot_pass_on(tmp_path: Path) -> None:
    odd = tmp_path / f"a{os.pathsep}b"
    shutil.copytree(EXAMPLE, odd)
    with pytest.raises(ServerSettingsError, match="may not contain"):
        run_server("127.0.0.1:0", policy_dir=[default_policy_dir(), odd])


# --- the documentation ------------------------------------------------------------------


def _blocks(language: str) -> list[str]:
    text = DOC.read_text(encoding="utf-8")
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.DOTALL)


def test_the_docs_show_the_example_as_it_is() -> None:
    """Every Python and Rego block of docs/custom-policies.md is an excerpt of the example
    files, so what the docs show is what the tests above run."""
    python = (EXAMPLE / "test_prod_builder.py").read_text(encoding="utf-8")
    rego = "\n".join(path.read_text(encoding="utf-8") for path in sorted(EXAMPLE.glob("*.rego")))
    assert _blocks("python")
    assert _blocks("rego")
    for block in _blocks("python"):
        assert block in python, block
    for block in _blocks("rego"):
        assert block in rego, block
