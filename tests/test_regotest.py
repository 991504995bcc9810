"""The Rego test runner: explanations of failing tests, coverage, --run, and ``attestpolicy
test``'s flags, output formats and exit codes (as ``opa test``), in both engines."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from attestpolicy.cli import main
from attestpolicy.regotest import (
    MAX_EXPLAINED,
    Outcome,
    RegoTestReport,
    RegoTestResult,
    RegoTestSuite,
    default_policy_dir,
    exit_code,
    run_tests,
)

ENGINES = ["regorus", "opa"]

# A policy with a deliberately broken rule: POST needs more than 3 path segments
# where 2 were meant.
AUTHZ = """package authz

import rego.v1

default allow := false

allow if {
	input.method == "GET"
	some role in input.roles
	role == "reader"
}

allow if {
	input.method == "POST"
	"writer" in input.roles
	count(input.path) > 3
}
"""

AUTHZ_TEST = """package authz_test

import rego.v1

import data.authz

test_get_allowed if {
	authz.allow with input as {"method": "GET", "roles": ["viewer", "reader"]}
}

test_post_allowed if {
	req := {"method": "POST", "roles": ["writer"], "path": ["a", "b"]}
	authz.allow with input as req
}

test_locals if {
	x := 5
	y := [1, 2]
	x == count(y) + 1
}

test_iterates if {
	some n in [1, 2, 3]
	n > 5
}

test_missing_document if {
	v := data.authz.nothing
	v == 1
}

test_not_true := 7

test_raises if time.parse_rfc3339_ns("2026-02-30T00:00:00Z") > 0
"""


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def authz(tmp_path: Path) -> Path:
    """A directory with the broken policy and its tests."""
    _write(tmp_path / "authz.rego", AUTHZ)
    _write(tmp_path / "authz_test.rego", AUTHZ_TEST)
    return tmp_path


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    """Each in-process engine (OPA's is required unless ATTESTPOLICY_REGORUS_ONLY=1)."""
    if request.param == "opa":
        request.getfixturevalue("requires_opa")
    name: str = request.param
    return name


def _results(report: RegoTestReport) -> dict[str, RegoTestResult]:
    return {result.name.rpartition(".")[2]: result for result in report.results}


def _run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# --- explanations --------------------------------------------------------------------


def test_a_broken_policy_rule_shows_its_failing_statement_with_values(
    authz: Path, engine: str
) -> None:
    result = _results(run_tests([authz], engine))["test_post_allowed"]
    assert result.outcome is Outcome.FAIL
    assert result.message == "undefined"
    test_file = (authz / "authz_test.rego").as_posix()
    policy = (authz / "authz.rego").as_posix()
    details = result.details()
    assert details[0] == f"{test_file}:11: data.authz_test.test_post_allowed is undefined"
    assert details[1] == f"{test_file}:13: authz.allow with input as req"
    assert details[2] == '  where req = {"method": "POST", "path": ["a", "b"], "roles": ["writer"]}'
    assert details[3] == "  authz.allow: false"
    # Both definitions of allow, each at the statement that does not hold, with values:
    # the local ``req`` replaced by its value when the rule is replayed.
    assert details[4:] == [
        f'    {policy}:8: input.method == "GET"',
        '      input.method: "POST"',
        f"    {policy}:16: count(input.path) > 3",
        "      count(input.path): 2",
        '      input.path: ["a", "b"]',
    ]


def test_an_undefined_test_shows_terms_and_bindings(authz: Path, engine: str) -> None:
    results = _results(run_tests([authz], engine))
    test_file = (authz / "authz_test.rego").as_posix()
    locals_ = results["test_locals"].details()
    assert locals_[1:] == [
        f"{test_file}:19: x == (count(y) + 1)",
        "  x: 5",
        "  count(y) + 1: 3",
        "  count(y): 2",
        "  y: [1, 2]",
    ]
    iterates = results["test_iterates"].details()
    assert iterates[1:] == [f"{test_file}:24: n > 5", "  n: one of 1, 2, 3"]
    missing = results["test_missing_document"].details()
    assert missing[1:] == [
        f"{test_file}:28: v := data.authz.nothing",
        "  data.authz.nothing: undefined",
    ]


def test_explanations_as_json(authz: Path, engine: str) -> None:
    report = run_tests([authz], engine, run="test_post_allowed")
    (entry,) = report.to_json()["tests"]
    assert entry["name"] == "test_post_allowed"
    assert entry["package"] == "data.authz_test"
    assert entry["location"] == {"file": (authz / "authz_test.rego").as_posix(), "row": 11}
    assert entry["outcome"] == "fail"
    assert entry["fail"] is True
    (statement,) = entry["explanation"]["statements"]
    assert statement["expression"] == "authz.allow with input as req"
    assert statement["bindings"] == [
        {"req": {"method": "POST", "path": ["a", "b"], "roles": ["writer"]}}
    ]
    (term,) = statement["terms"]
    assert term["text"] == "authz.allow"
    assert term["values"] == [False]
    causes = term["cause"]["statements"]
    assert [cause["location"]["row"] for cause in causes] == [8, 16]
    assert [cause["bindings"] for cause in causes] == [[], []]  # no local variables there
    assert causes[1]["terms"][0] == {"text": "count(input.path)", "defined": True, "values": [2]}


def test_a_false_value_and_an_error_say_what_and_where(authz: Path, engine: str) -> None:
    results = _results(run_tests([authz], engine))
    test_file = (authz / "authz_test.rego").as_posix()
    not_true = results["test_not_true"]
    assert not_true.outcome is Outcome.FAIL
    assert not_true.details() == [
        f"{test_file}:32: data.authz_test.test_not_true is not true (value: 7)"
    ]
    raised = results["test_raises"]
    assert raised.outcome is Outcome.ERROR
    (first, *_) = raised.details()
    assert first.startswith(f"{test_file}:34: error: ")
    assert "Stack backtrace" not in "\n".join(raised.details())
    assert results["test_get_allowed"].outcome is Outcome.PASS
    assert results["test_get_allowed"].details() == []


def test_an_index_that_cannot_be_built_means_no_values_not_a_guess(tmp_path: Path) -> None:
    # regorus ignores comments, so this loads; the explanation reads METADATA as OPA does.
    _write(
        tmp_path / "m_test.rego",
        "package m_test\n\nimport rego.v1\n\n# METADATA\n# title: [unclosed\n"
        "test_undefined if data.nothing\n",
    )
    (result,) = run_tests([tmp_path], "regorus").results
    assert result.outcome is Outcome.FAIL
    assert result.explanation is not None
    assert result.explanation.statements == ()
    (note,) = result.explanation.notes
    assert note.startswith("no values: ")
    assert "METADATA" in note


def test_every_shipped_test_replays_statement_by_statement() -> None:
    # The replay renders each statement from the syntax tree; on passing tests every
    # prefix must hold, or the renderer changed the meaning of a statement.
    with RegoTestSuite.load([default_policy_dir()], "regorus") as suite:
        assert len(suite.tests) >= 100
        for test in suite.tests:
            explanation = suite.explain(test)
            assert explanation.statements == (), test.name
            assert all("every statement holds" in note for note in explanation.notes), (
                test.name,
                explanation.notes,
            )


@pytest.mark.usefixtures("requires_opa")
def test_shipped_tests_replay_in_opa_too() -> None:
    wanted = {"test_workload_entry_fields_ill_typed", "test_fully_attested_allows"}
    with RegoTestSuite.load([default_policy_dir()], "opa") as suite:
        chosen = [test for test in suite.tests if test.rule in wanted]
        assert chosen
        for test in chosen:
            explanation = suite.explain(test)
            assert explanation.statements == (), test.name
            assert all("every statement holds" in note for note in explanation.notes)


# --- coverage --------------------------------------------------------------------------


def test_coverage_per_file_and_total(authz: Path, engine: str) -> None:
    _write(authz / "other.rego", "package other\n\nimport rego.v1\n\nunused if {\n\tinput.x\n}\n")
    report = run_tests([authz], engine, run="test_get_allowed", coverage=True)
    assert report.coverage is not None
    assert report.coverage.engine == engine
    files = {Path(entry.file).name: entry for entry in report.coverage.files}
    assert set(files) == {"authz.rego", "other.rego"}  # test files are left out
    assert files["other.rego"].covered == frozenset()
    assert 6 in files["other.rego"].not_covered
    authz_file = files["authz.rego"]
    assert {8, 9, 10} <= authz_file.covered  # the GET rule matched
    assert 16 in authz_file.not_covered  # the POST rule's last statement never ran
    assert 0 < authz_file.percent < 100
    total = report.coverage
    assert total.covered_lines == sum(len(entry.covered) for entry in total.files)
    text = report.text(verbose=False)
    assert f"coverage ({engine}):" in text
    row = next(line for line in text.splitlines() if "authz.rego" in line and "%" in line)
    assert re.search(r"\d+\.\d%\s+\d+/\d+\s+not covered: .*16", row)
    assert re.search(r"^\s+total\s+\d+\.\d%\s+\d+/\d+$", text.splitlines()[-1])
    document = report.to_json()["coverage"]
    assert document["engine"] == engine
    entry = next(value for key, value in document["files"].items() if key.endswith("authz.rego"))
    assert entry["covered_lines"] == len(authz_file.covered)
    assert any(span["start"]["row"] <= 16 <= span["end"]["row"] for span in entry["not_covered"])
    assert document["coverage"] == round(total.percent, 2)


def test_no_coverage_unless_asked(authz: Path) -> None:
    report = run_tests([authz], "regorus")
    assert report.coverage is None
    assert "coverage" not in report.to_json()


def test_the_replay_is_not_counted_as_coverage(tmp_path: Path) -> None:
    _write(tmp_path / "p.rego", "package p\n\nimport rego.v1\n\nq if {\n\tinput.a\n\tinput.b\n}\n")
    _write(
        tmp_path / "p_test.rego",
        "package p_test\n\nimport rego.v1\n\ntest_q if data.p.q with input as {}\n",
    )
    report = run_tests([tmp_path], "regorus", coverage=True)
    assert report.results[0].outcome is Outcome.FAIL
    assert report.results[0].explanation is not None
    assert report.coverage is not None
    (entry,) = report.coverage.files
    assert 7 not in entry.covered  # the replay of q's body (under input {}) stops at line 6


# --- selection and exit codes ------------------------------------------------------------


def test_run_selects_by_full_name(authz: Path) -> None:
    report = run_tests([authz], "regorus", run=r"authz_test\.test_(get|post)_")
    assert sorted(_results(report)) == ["test_get_allowed", "test_post_allowed"]
    nothing = run_tests([authz], "regorus", run="no_such_test")
    assert nothing.results == ()
    assert nothing.text() == "no tests matched --run 'no_such_test'\n"
    with pytest.raises(re.error):
        run_tests([authz], "regorus", run="(")


def test_exit_codes_are_opa_tests(authz: Path, tmp_path: Path) -> None:
    passing = run_tests([authz], "regorus", run="test_get_allowed")
    failing = run_tests([authz], "regorus")
    empty = run_tests([authz], "regorus", run="none")
    broken = run_tests([_write(tmp_path / "b" / "x_test.rego", "package x\ntest_x if {\n")])
    assert exit_code([passing]) == 0
    assert exit_code([passing, failing]) == 2
    assert exit_code([empty]) == 1
    assert exit_code([broken, failing]) == 1


# --- the command -----------------------------------------------------------------------


def test_cli_pretty_shows_failures_then_a_summary(
    capsys: pytest.CaptureFixture[str], authz: Path
) -> None:
    code, out, err = _run_cli(capsys, "test", "--engine", "regorus", str(authz))
    assert code == 2
    assert err == ""
    lines = out.splitlines()
    assert lines[0] == "engine: regorus (regorus-0.13.0)"
    assert "data.authz_test.test_get_allowed: PASS" not in out  # only failures without -v
    assert any(
        re.fullmatch(r"data\.authz_test\.test_post_allowed: FAIL \(\d+\.\d{3}ms\)", x)
        for x in lines
    )
    assert "count(input.path): 2" in [line.strip() for line in lines]
    assert out.rstrip().splitlines()[-3:] == ["PASS: 1/7", "FAIL: 5/7", "ERROR: 1/7"]


def test_cli_verbose_lists_every_test_with_its_time(
    capsys: pytest.CaptureFixture[str], authz: Path
) -> None:
    code, out, _ = _run_cli(capsys, "test", "-v", "--engine", "regorus", str(authz))
    assert code == 2
    timed = re.findall(
        r"^data\.authz_test\.(test_\w+): (PASS|FAIL|ERROR) \(\d+\.\d{3}ms\)$", out, re.M
    )
    assert len(timed) == 7
    assert ("test_get_allowed", "PASS") in timed


def test_cli_run_engine_and_exit_0(
    capsys: pytest.CaptureFixture[str], authz: Path, engine: str
) -> None:
    code, out, _ = _run_cli(capsys, "test", "--engine", engine, "--run", "get_allowed$", str(authz))
    assert code == 0
    assert out.splitlines()[0].startswith(f"engine: {engine} (")
    assert "PASS: 1/1" in out


@pytest.mark.usefixtures("requires_opa")
def test_cli_both_engines(capsys: pytest.CaptureFixture[str], authz: Path) -> None:
    code, out, _ = _run_cli(capsys, "test", "--engine", "both", "--run", "post", str(authz))
    assert code == 2
    assert "engine: regorus (" in out
    assert "engine: opa (" in out
    assert out.count("count(input.path): 2") == 2
    assert out.splitlines()[-1] == "engines: regorus FAIL, opa FAIL"


def test_cli_coverage_pretty_and_json(
    capsys: pytest.CaptureFixture[str], authz: Path, engine: str
) -> None:
    code, out, _ = _run_cli(
        capsys, "test", "--engine", engine, "--coverage", "--run", "get", str(authz)
    )
    assert code == 0
    assert f"coverage ({engine}):" in out
    assert re.search(r"authz\.rego\s+\d+\.\d%\s+\d+/\d+\s+not covered: ", out)
    code, out, _ = _run_cli(
        capsys, "test", "--engine", engine, "--coverage", "--format", "json", str(authz)
    )
    assert code == 2
    (report,) = json.loads(out)["engines"]
    files = report["coverage"]["files"]
    assert [Path(name).name for name in files] == ["authz.rego"]
    assert report["coverage"]["covered_lines"] > 0


def test_cli_json_has_every_test_and_the_explanation(
    capsys: pytest.CaptureFixture[str], authz: Path
) -> None:
    code, out, _ = _run_cli(capsys, "test", "--format", "json", "--engine", "regorus", str(authz))
    assert code == 2
    document = json.loads(out)
    assert document["ok"] is False
    (report,) = document["engines"]
    assert report["engine"] == "regorus"
    assert report["summary"] == {"total": 7, "pass": 1, "fail": 5, "error": 1}
    by_name: dict[str, Any] = {test["name"]: test for test in report["tests"]}
    assert by_name["test_get_allowed"]["outcome"] == "pass"
    assert "explanation" not in by_name["test_get_allowed"]
    assert by_name["test_raises"]["error"]["message"]
    post = by_name["test_post_allowed"]["explanation"]["statements"][0]
    assert post["location"]["row"] == 13


def test_cli_bad_regex_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], authz: Path
) -> None:
    code, out, err = _run_cli(capsys, "test", "--run", "(", str(authz))
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("attestpolicy: error: --run '(' is not a valid regular expression")


def test_cli_no_tests_matched_exit_1(capsys: pytest.CaptureFixture[str], authz: Path) -> None:
    code, out, _ = _run_cli(capsys, "test", "--engine", "regorus", "--run", "nothing", str(authz))
    assert code == 1
    assert "no tests matched --run 'nothing'" in out
    code, out, _ = _run_cli(
        capsys, "test", "--engine", "regorus", "--run", "nothing", "--format", "json", str(authz)
    )
    assert code == 1
    (report,) = json.loads(out)["engines"]
    assert report["tests"] == []


def test_cli_load_error_exit_1(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    _write(tmp_path / "broken_test.rego", "package broken_test\n\ntest_x if {\n")
    code, out, _ = _run_cli(capsys, "test", "--engine", "regorus", str(tmp_path))
    assert code == 1
    assert "could not be loaded" in out


def test_a_run_explains_a_bounded_number_of_failures(tmp_path: Path) -> None:
    rules = "\n".join(f"test_{n} if data.nothing_{n}" for n in range(MAX_EXPLAINED + 2))
    _write(tmp_path / "many_test.rego", f"package many_test\n\nimport rego.v1\n\n{rules}\n")
    results = run_tests([tmp_path], "regorus").results
    explained = [r for r in results if r.explanation is not None and r.explanation.statements]
    assert len(explained) == MAX_EXPLAINED
    (note,) = results[-1].details()[1:]
    assert note.startswith(f"not explained: a run explains its first {MAX_EXPLAINED} ")


def test_a_rule_defined_in_two_files_is_replayed_with_each_files_imports(
    tmp_path: Path, engine: str
) -> None:
    _write(tmp_path / "lib.rego", "package lib\n\nimport rego.v1\n\nx := 1\n\ny := 2\n")
    _write(
        tmp_path / "a.rego",
        "package p\n\nimport rego.v1\n\nimport data.lib as l\n\nallow if {\n\tl.x == 2\n}\n",
    )
    _write(
        tmp_path / "b.rego",
        "package p\n\nimport rego.v1\n\nimport data.lib as k\n\nallow if {\n\tk.y == 3\n}\n",
    )
    _write(
        tmp_path / "p_test.rego", "package p_test\n\nimport rego.v1\n\ntest_allow if data.p.allow\n"
    )
    (result,) = run_tests([tmp_path], engine).results
    details = result.details()
    assert details[1:] == [
        f"{(tmp_path / 'p_test.rego').as_posix()}:5: data.p.allow",
        "  data.p.allow: undefined",
        f"    {(tmp_path / 'a.rego').as_posix()}:8: l.x == 2",
        "      l.x: 1",
        f"    {(tmp_path / 'b.rego').as_posix()}:8: k.y == 3",
        "      k.y: 2",
    ]
