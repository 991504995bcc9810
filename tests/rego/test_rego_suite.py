"""The Rego unit tests of the shipped policy pass, and the Rego test runner reports honestly."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from attestpolicy.policy import POLICY_REASON_CODES
from attestpolicy.regotest import Outcome, RegoTestReport, default_policy_dir, run_tests

# The shipped suite has well over this many tests; a drop below means tests were lost.
MIN_TESTS = 100

CONTRACT_CODES = POLICY_REASON_CODES | {"input.invalid", "config.invalid"}


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _outcomes(report: RegoTestReport) -> dict[str, Outcome]:
    return {result.name: result.outcome for result in report.results}


def test_shipped_policy_tests_all_pass() -> None:
    report = run_tests([default_policy_dir()])
    assert not report.load_errors
    failing = [result.line() for result in report.results if result.outcome is not Outcome.PASS]
    assert not failing, report.text()
    total = len(report.results)
    assert total >= MIN_TESTS
    assert report.ok
    assert report.text().splitlines()[-1] == f"PASS: {total}/{total}"
    prefix = "data.attestpolicy.v1_test.test_"
    assert all(result.name.startswith(prefix) for result in report.results)


def test_no_paths_means_the_shipped_policy() -> None:
    assert set(_outcomes(run_tests())) == set(_outcomes(run_tests([default_policy_dir()])))


def test_every_policy_file_has_a_test_file_beside_it() -> None:
    policy_files = [
        path for path in default_policy_dir().rglob("*.rego") if not path.stem.endswith("_test")
    ]
    assert len(policy_files) >= 8
    for path in policy_files:
        assert path.with_name(f"{path.stem}_test.rego").is_file(), path


def test_every_reason_code_is_produced_and_tested() -> None:
    texts = {path: path.read_text() for path in default_policy_dir().rglob("*.rego")}
    policy = "\n".join(text for path, text in texts.items() if not path.stem.endswith("_test"))
    tests = "\n".join(text for path, text in texts.items() if path.stem.endswith("_test"))
    produced = set(re.findall(r'"([a-z_]+\.[a-z_]+)"', policy))
    assert produced >= CONTRACT_CODES
    for code in CONTRACT_CODES:
        assert f'"{code}"' in tests, f"no Rego test names {code}"


def test_runner_reports_pass_fail_and_undefined(tmp_path: Path) -> None:
    _write(
        tmp_path / "demo" / "demo.rego",
        "package demo\n\nimport rego.v1\n\nanswer := 42\n\ntest_not_in_a_test_file if false\n",
    )
    _write(
        tmp_path / "demo" / "demo_test.rego",
        "package demo_test\n\nimport rego.v1\n\n"
        "test_passes if data.demo.answer == 42\n\n"
        "test_fails if data.demo.answer == 41\n\n"
        "test_undefined if data.demo.missing\n\n"
        "test_not_true := 1\n\n"
        "test_function(x) if x\n\n"
        "helper := true\n",
    )
    report = run_tests([tmp_path])
    assert _outcomes(report) == {
        "data.demo_test.test_passes": Outcome.PASS,
        "data.demo_test.test_fails": Outcome.FAIL,
        "data.demo_test.test_undefined": Outcome.FAIL,
        "data.demo_test.test_not_true": Outcome.FAIL,
    }
    assert not report.ok
    lines = report.text().splitlines()
    for name, outcome in (("test_passes", "PASS"), ("test_fails", "FAIL")):
        line = rf"data\.demo_test\.{name}: {outcome} \(\d+\.\d{{3}}ms\)"
        assert any(re.fullmatch(line, text) for text in lines)
    assert lines[-2:] == ["PASS: 1/4", "FAIL: 3/4"]


def test_runner_reports_an_engine_error_and_goes_on(tmp_path: Path) -> None:
    _write(
        tmp_path / "boom_test.rego",
        "package boom_test\n\nimport rego.v1\n\n"
        'test_raises if time.parse_rfc3339_ns("2026-02-30T00:00:00Z") > 0\n\n'
        "test_after_the_error if true\n",
    )
    report = run_tests([tmp_path])
    results = {result.name: result for result in report.results}
    raised = results["data.boom_test.test_raises"]
    assert raised.outcome is Outcome.ERROR
    assert raised.message
    assert "Stack backtrace" not in raised.message
    assert results["data.boom_test.test_after_the_error"].outcome is Outcome.PASS
    assert not report.ok
    text = report.text()
    assert "data.boom_test.test_raises: ERROR (" in text
    assert text.splitlines()[-2:] == ["PASS: 1/2", "ERROR: 1/2"]


def test_runner_reports_a_file_that_does_not_parse(tmp_path: Path) -> None:
    _write(tmp_path / "ok_test.rego", "package ok_test\n\nimport rego.v1\n\ntest_ok if true\n")
    broken = _write(tmp_path / "broken_test.rego", "package broken_test\n\ntest_x if {\n")
    report = run_tests([tmp_path])
    assert report.results == ()
    assert len(report.load_errors) == 1
    assert broken.as_posix() in report.load_errors[0]
    assert "Stack backtrace" not in report.load_errors[0]
    assert not report.ok
    assert "could not be loaded" in report.text()


def test_runner_loads_data_json_at_its_directory_path(tmp_path: Path) -> None:
    _write(tmp_path / "limits" / "strict" / "data.json", '{"max_age": 60}')
    _write(tmp_path / "data.json", '{"top": true}')
    _write(
        tmp_path / "policy" / "data_test.rego",
        "package data_test\n\nimport rego.v1\n\n"
        "test_nested if data.limits.strict.max_age == 60\n\n"
        "test_root if data.top == true\n",
    )
    report = run_tests([tmp_path])
    assert report.ok, report.text()
    assert len(report.results) == 2


def test_runner_rejects_root_data_that_is_not_an_object(tmp_path: Path) -> None:
    _write(tmp_path / "data.json", "[1, 2]")
    _write(tmp_path / "t_test.rego", "package t_test\n\nimport rego.v1\n\ntest_ok if true\n")
    report = run_tests([tmp_path])
    assert not report.ok
    assert "must be a JSON object" in report.load_errors[0]


def test_runner_runs_a_single_file(tmp_path: Path) -> None:
    header = "import rego.v1\n\n"
    single = _write(tmp_path / "one_test.rego", f"package one_test\n\n{header}test_one if true\n")
    _write(tmp_path / "other_test.rego", f"package other_test\n\n{header}test_two if true\n")
    report = run_tests([single])
    assert _outcomes(report) == {"data.one_test.test_one": Outcome.PASS}
    assert report.ok


def test_runner_loads_a_file_given_twice_once(tmp_path: Path) -> None:
    one = _write(
        tmp_path / "one_test.rego", "package one_test\n\nimport rego.v1\n\ntest_one := true\n"
    )
    report = run_tests([tmp_path, one])
    assert _outcomes(report) == {"data.one_test.test_one": Outcome.PASS}


def test_runner_without_tests_is_not_ok(tmp_path: Path) -> None:
    _write(tmp_path / "p.rego", "package p\n\nimport rego.v1\n\nallow := true\n")
    report = run_tests([tmp_path])
    assert report.results == ()
    assert not report.ok
    assert report.text().strip() == "no tests found"


def test_runner_reports_a_missing_path(tmp_path: Path) -> None:
    report = run_tests([tmp_path / "nowhere"])
    assert not report.ok
    assert "no such file or directory" in report.load_errors[0]


# The annotation keys OPA accepts in a METADATA block.
_OPA_ANNOTATION_KEYS = {
    "scope",
    "title",
    "description",
    "related_resources",
    "authors",
    "organizations",
    "schemas",
    "entrypoint",
    "custom",
}


def _metadata_blocks(text: str) -> list[tuple[str, str]]:
    """(YAML of each METADATA comment block, the line that follows it)."""
    blocks: list[tuple[str, str]] = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        if lines[index].strip() == "# METADATA":
            body: list[str] = []
            index += 1
            while index < len(lines) and lines[index].startswith("#"):
                body.append(lines[index][2:] if lines[index].startswith("# ") else "")
                index += 1
            blocks.append(("\n".join(body), lines[index] if index < len(lines) else ""))
        else:
            index += 1
    return blocks


def test_metadata_annotations_are_valid_for_opa() -> None:
    # regorus ignores comments; OPA parses METADATA blocks as YAML and rejects bad ones.
    coded: set[str] = set()
    for path in default_policy_dir().rglob("*.rego"):
        for body, following in _metadata_blocks(path.read_text()):
            annotation = yaml.safe_load(body)
            assert isinstance(annotation, dict), (path, body)
            assert set(annotation) <= _OPA_ANNOTATION_KEYS, (path, annotation)
            assert following.strip(), (path, "METADATA must sit directly above a rule")
            custom = annotation.get("custom") or {}
            if following.startswith(("violation contains", "_invalid contains")):
                codes = custom.get("codes") or [custom.get("code")]
                assert all(isinstance(code, str) for code in codes), (path, following)
                coded.update(codes)
    assert coded >= CONTRACT_CODES
