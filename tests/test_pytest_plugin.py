"""The pytest plugin: *_test.rego collected as items in both engines, failures explained,
the settings, and the rego_pdp and claim_set fixtures."""

from __future__ import annotations

import importlib
import json
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

AUTHZ = """package authz

import rego.v1

default allow := false

allow if {
	input.method == "GET"
	"reader" in input.roles
}

allow if {
	input.method == "POST"
	"writer" in input.roles
	count(input.path) > 3
}
"""

# test_post_allowed fails: the POST rule is deliberately broken (> 3 where > 1 was meant).
AUTHZ_TEST = """package authz_test

import rego.v1

import data.authz

test_get_allowed if {
	authz.allow with input as {"method": "GET", "roles": ["reader"]}
}

test_post_allowed if {
	req := {"method": "POST", "roles": ["writer"], "path": ["a", "b"]}
	authz.allow with input as req
}
"""

PYTHON_TEST = """
def test_the_shipped_policy_allows_the_example(rego_pdp, claim_set):
    assert rego_pdp.decide(claim_set()).allow


def test_a_stale_node_is_denied(rego_pdp, claim_set):
    decision = rego_pdp.decide(claim_set(node={"issued_at": "2026-11-22T08:00:00Z"}))
    assert not decision.allow
    assert "node.stale" in [reason.code for reason in decision.reasons]
"""


@pytest.fixture(autouse=True)
def _library_loaded_here() -> None:
    """Import what the fixtures use before pytester's in-process runs: a module first
    imported inside one is dropped after it, and a second copy of a class (Decision)
    would then meet the first in the decision cache."""
    for name in ("attestpolicy.pdp", "attestpolicy.config", "attestpolicy.claims"):
        importlib.import_module(name)


@pytest.fixture
def scratch(pytester: pytest.Pytester) -> pytest.Pytester:
    """A scratch project: a policy, its Rego tests and a pytest file."""
    pytester.makefile(".rego", authz=AUTHZ, authz_test=AUTHZ_TEST)
    pytester.makepyfile(test_decisions=PYTHON_TEST)
    return pytester


@pytest.mark.usefixtures("requires_opa")
def test_a_scratch_project_runs_its_rego_tests_in_both_engines(scratch: pytest.Pytester) -> None:
    # A subprocess, so the plugin comes from the installed entry point, as for a user.
    result = scratch.runpytest_subprocess("-v", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=4, failed=2)
    result.stdout.fnmatch_lines_random(
        [
            "authz_test.rego::test_get_allowed[[]regorus[]] PASSED*",
            "authz_test.rego::test_get_allowed[[]opa[]] PASSED*",
            "authz_test.rego::test_post_allowed[[]regorus[]] FAILED*",
            "authz_test.rego::test_post_allowed[[]opa[]] FAILED*",
            "test_decisions.py::test_the_shipped_policy_allows_the_example PASSED*",
            "test_decisions.py::test_a_stale_node_is_denied PASSED*",
        ]
    )
    # The broken rule's failing expression, with its values, in each engine.
    for engine in ("regorus", "opa"):
        result.stdout.fnmatch_lines(
            [
                f"*data.authz_test.test_post_allowed [[]{engine}[]]*",
                f"data.authz_test.test_post_allowed: FAIL (*ms) in {engine}",
                "authz_test.rego:11: data.authz_test.test_post_allowed is undefined",
                "authz_test.rego:13: authz.allow with input as req",
                '  where req = {"method": "POST", "path": ["a", "b"], "roles": ["writer"]}',
                "  authz.allow: false",
                '    authz.rego:8: input.method == "GET"',
                '      input.method: "POST"',
                "    authz.rego:15: count(input.path) > 3",
                "      count(input.path): 2",
                '      input.path: ["a", "b"]',
            ]
        )
    assert "Traceback" not in result.stdout.str()


def test_the_plugin_is_the_packages_pytest11_entry_point(pytestconfig: pytest.Config) -> None:
    import attestpolicy.pytest_plugin

    # As pytest loads plugins: from every distribution's entry points (a stale egg-info in
    # the working directory may shadow the installed metadata for entry_points()).
    declared = {
        ep.value
        for dist in metadata.distributions()
        if dist.metadata["Name"] == "attestpolicy"
        for ep in dist.entry_points
        if (ep.group, ep.name) == ("pytest11", "attestpolicy")
    }
    assert declared == {"attestpolicy.pytest_plugin"}
    assert pytestconfig.pluginmanager.get_plugin("attestpolicy") is attestpolicy.pytest_plugin


def test_engines_from_the_option_and_the_ini(scratch: pytest.Pytester) -> None:
    only_regorus = scratch.runpytest("--rego-engines", "regorus", "--collect-only", "-q")
    assert "authz_test.rego::test_get_allowed[regorus]" in only_regorus.stdout.str()
    assert "[opa]" not in only_regorus.stdout.str()
    scratch.makeini("[pytest]\nrego_engines = opa\n")
    only_opa = scratch.runpytest("--collect-only", "-q")
    assert "authz_test.rego::test_post_allowed[opa]" in only_opa.stdout.str()
    assert "[regorus]" not in only_opa.stdout.str()
    bad = scratch.runpytest("--rego-engines", "regorus,wasm")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    bad.stderr.fnmatch_lines(["*rego engines 'regorus,wasm': choose from regorus, opa*"])


def test_opa_items_are_skipped_with_the_install_command_where_opa_is_missing(
    scratch: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "opa_bindings", None)  # import opa_bindings fails
    result = scratch.runpytest("-rs", "-k", "rego")
    result.assert_outcomes(passed=1, failed=1, skipped=2)
    result.stdout.fnmatch_lines(["SKIPPED*pip install --ignore-requires-python*"])


def test_policy_dirs_from_the_ini(pytester: pytest.Pytester) -> None:
    pytester.mkdir("policy")
    (pytester.path / "policy" / "authz.rego").write_text(AUTHZ)
    pytester.mkdir("rego_tests")
    (pytester.path / "rego_tests" / "authz_test.rego").write_text(AUTHZ_TEST)
    without = pytester.runpytest("--rego-engines", "regorus", "-k", "get_allowed")
    without.assert_outcomes(failed=1)  # data.authz is not loaded
    without.stdout.fnmatch_lines(["  authz.allow: undefined"])
    pytester.makeini("[pytest]\nrego_policy_dirs = policy\n")
    with_dirs = pytester.runpytest("--rego-engines", "regorus", "-k", "get_allowed")
    with_dirs.assert_outcomes(passed=1)


def test_the_shipped_policy_from_the_ini(pytester: pytest.Pytester) -> None:
    pytester.makefile(
        ".rego",
        extra_test="""package extra_test

import rego.v1

import data.attestpolicy.v1

test_an_empty_input_is_denied if {
	v1.decision.allow == false with input as {}
}
""",
    )
    without = pytester.runpytest("--rego-engines", "regorus")
    without.assert_outcomes(failed=1)
    pytester.makeini("[pytest]\nrego_shipped_policy = true\n")
    with_shipped = pytester.runpytest("--rego-engines", "regorus")
    with_shipped.assert_outcomes(passed=1)


def test_a_file_that_does_not_parse_is_a_collection_error(pytester: pytest.Pytester) -> None:
    pytester.makefile(".rego", broken_test="package broken_test\n\ntest_x if {\n")
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*ERROR collecting broken_test.rego*", "broken_test.rego:*"])
    assert "Traceback" not in result.stdout.str()


def test_a_policy_that_does_not_load_fails_its_tests_with_the_reason(
    pytester: pytest.Pytester,
) -> None:
    pytester.makefile(".rego", ok_test="package ok_test\n\nimport rego.v1\n\ntest_ok if true\n")
    pytester.makefile(".rego", policy="package policy\n\nallow if {\n")
    result = pytester.runpytest("--rego-engines", "regorus")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["could not load the Rego files:", "policy.rego*"])


def test_a_false_value_and_an_engine_error(pytester: pytest.Pytester) -> None:
    pytester.makefile(
        ".rego",
        odd_test="""package odd_test

import rego.v1

test_not_true := 7

test_raises if time.parse_rfc3339_ns("2026-02-30T00:00:00Z") > 0
""",
    )
    result = pytester.runpytest("--rego-engines", "regorus")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines_random(
        [
            "odd_test.rego:5: data.odd_test.test_not_true is not true (value: 7)",
            "odd_test.rego:7: error: *",
        ]
    )


def test_items_have_the_rule_location(scratch: pytest.Pytester) -> None:
    collected, _ = scratch.inline_genitems("--rego-engines", "regorus")
    items = [item for item in collected if item.nodeid.startswith("authz_test.rego")]
    assert [item.nodeid for item in items] == [
        "authz_test.rego::test_get_allowed[regorus]",
        "authz_test.rego::test_post_allowed[regorus]",
    ]
    path, line, name = items[1].reportinfo()
    assert (str(path).endswith("authz_test.rego"), line, name) == (
        True,
        10,
        "data.authz_test.test_post_allowed [regorus]",
    )


# --- fixtures -----------------------------------------------------------------------------


@pytest.mark.usefixtures("requires_opa")
def test_rego_pdp_in_both_engines_and_with_a_config(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
import json
from importlib import resources

import pytest


@pytest.mark.parametrize("rego_pdp", ["regorus", "opa"], indirect=True)
def test_engines(rego_pdp, claim_set):
    assert rego_pdp.decide(claim_set()).allow


EXAMPLE = resources.files("attestpolicy") / "examples" / "config.json"
CONFIG = {**json.loads(EXAMPLE.read_text()), "workloads": {}}


@pytest.mark.parametrize("rego_pdp", [{"config": CONFIG}], indirect=True)
def test_a_config_without_workloads_denies(rego_pdp, claim_set):
    decision = rego_pdp.decide(claim_set())
    assert [reason.code for reason in decision.reasons] == ["subject.unregistered"]
"""
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)


def test_rego_config_and_rego_claims_from_the_ini(pytester: pytest.Pytester) -> None:
    examples = Path(__file__).resolve().parent.parent / "attestpolicy" / "examples"
    config = json.loads((examples / "config.json").read_text())
    config["workloads"] = {}
    pytester.makefile(".json", config=json.dumps(config))
    stale = (examples / "claims" / "deny-stale-node.json").as_posix()
    pytester.makepyfile(
        """
def test_uses_the_ini(rego_pdp, claim_set):
    assert claim_set().node.id.startswith("tpm-ek:")
    codes = {reason.code for reason in rego_pdp.decide(claim_set()).reasons}
    assert codes == {"node.stale", "subject.unregistered"}
"""
    )
    pytester.makeini(f"[pytest]\nrego_config = config.json\nrego_claims = {stale}\n")
    pytester.runpytest().assert_outcomes(passed=1)
    pytester.makeini("[pytest]\nrego_config = config.json other.json\n")
    bad = pytester.runpytest()
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    bad.stderr.fnmatch_lines(["*rego_config: one file, not 2*"])


def test_claim_set_overrides(pytester: pytest.Pytester) -> None:
    issued = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)
    pytester.makepyfile(
        f"""
import datetime

import pytest

from attestpolicy import ClaimSet, Request
from attestpolicy.errors import ClaimsError


def test_overrides(claim_set):
    base = claim_set()
    assert isinstance(base, ClaimSet)
    assert base.node is not None and base.runtime is not None
    changed = claim_set(
        node={{"issued_at": datetime.datetime.fromisoformat("{issued.isoformat()}")}},
        runtime=None,
        request=Request(audience="db"),
    )
    assert changed.node.issued_at == datetime.datetime.fromisoformat("{issued.isoformat()}")
    assert changed.node.kind == base.node.kind  # merged, not replaced
    assert changed.runtime is None
    assert changed.request.audience == "db"
    assert claim_set(base=changed).to_input() == changed.to_input()


def test_an_invalid_override_raises(claim_set):
    with pytest.raises(ClaimsError):
        claim_set(node={{"verified": "yes"}})
"""
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=2)
