"""``decide --explain``: reasons traced to their rules (file:line, METADATA title, values),
checks and TTL terms of an allow, in both engines; built from the policy's own sources.

Expected lines and titles are read from the Rego text here, with plain text searches,
never from the parser the explanation uses.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest

from attestpolicy._explain import (
    OUTSIDE_POLICY,
    Explanation,
    _Instrumentation,
    decide_and_explain,
    explain,
    render_explanation,
)
from attestpolicy._rego_index import PathResolver, PolicyIndex, render_path
from attestpolicy.cli import main
from attestpolicy.config import load_config
from attestpolicy.decision import Decision, Reason
from attestpolicy.errors import PolicyError
from attestpolicy.pdp import PolicyDecisionPoint
from attestpolicy.policy import POLICY_REASON_CODES, PolicySource, default_policy_dir

EXAMPLES = Path(__file__).resolve().parent.parent / "attestpolicy" / "examples"
CONFIG_PATH = EXAMPLES / "config.json"
CLAIMS = sorted((EXAMPLES / "claims").glob("*.json"))
SOURCE = PolicySource.from_directory()
POLICY_FILES = {
    path.relative_to(default_policy_dir()).as_posix(): path.read_text(encoding="utf-8")
    for path in sorted(default_policy_dir().rglob("*.rego"))
    if not path.name.endswith("_test.rego")
}
REASON_HEAD = re.compile(r"^(violation|_invalid) contains |^default decision :=")


@pytest.fixture(scope="module")
def index() -> PolicyIndex:
    return PolicyIndex.from_modules(SOURCE.modules)


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    return load_config(str(CONFIG_PATH))


# --- what the Rego text says, found without the parser ----------------------------------


def codes_in_sources() -> set[str]:
    """Every reason code written in the policy: in a reason object or a METADATA list."""
    codes: set[str] = set()
    for text in POLICY_FILES.values():
        codes |= set(re.findall(r'"code": "([a-z_]+\.[a-z_]+)"', text))
        codes |= set(re.findall(r"^#\s+code: ([a-z_]+\.[a-z_]+)$", text, re.MULTILINE))
        codes |= set(re.findall(r"^#\s+- ([a-z_]+\.[a-z_]+)$", text, re.MULTILINE))
        codes |= set(re.findall(r'\["[a-z_]+", "([a-z_]+\.[a-z_]+)", "[a-z ]+"\]', text))
    return codes


def rule_lines(code: str) -> list[tuple[str, int]]:
    """(file, line) of each reason rule head whose text names ``code``: the head line itself,
    or the nearest head above a body line naming it."""
    found = []
    for file, text in POLICY_FILES.items():
        lines = text.splitlines()
        for number, line in enumerate(lines):
            if f'"{code}"' not in line or line.lstrip().startswith("#"):
                continue
            head = number
            while head >= 0 and not REASON_HEAD.match(lines[head]):
                head -= 1
            if head >= 0 and (file, head + 1) not in found:
                found.append((file, head + 1))
    return found


def title_above(file: str, line: int) -> str | None:
    """The METADATA title of the block just above ``line`` (None without one)."""
    lines = POLICY_FILES[file].splitlines()[: line - 1]
    block = []
    for text in reversed(lines):
        if not text.startswith("#"):
            break
        block.append(text)
    for text in block:
        match = re.match(r"^# title: (.+)$", text)
        if match and "# METADATA" in block:
            return match.group(1)
    return None


def metadata_line_above(file: str, line: int) -> int:
    """The line of the ``# METADATA`` that opens the comment block above ``line``."""
    lines = POLICY_FILES[file].splitlines()
    number = line - 1
    while lines[number - 1].startswith("#") and lines[number - 1] != "# METADATA":
        number -= 1
    assert lines[number - 1] == "# METADATA"
    return number


def first_title(code: str) -> str:
    for file, line in rule_lines(code):
        title = title_above(file, line)
        if title is not None:
            return title
    raise AssertionError(f"no METADATA title for {code}")


# --- the index ----------------------------------------------------------------------------


def test_every_code_in_the_sources_maps_to_a_titled_rule(index: PolicyIndex) -> None:
    written = codes_in_sources()
    assert written >= POLICY_REASON_CODES  # the search above finds the documented codes
    assert "input.invalid" in written
    assert "policy.incomplete" in written
    assert written == index.codes
    for code in sorted(written):
        rules = index.rules_for(code)
        assert rules, code
        expected = rule_lines(code)
        assert sorted((r.rule.file, r.rule.line) for r in rules) == sorted(expected), code
        for reason_rule in rules:
            assert reason_rule.title == first_title(code), code
            source_line = POLICY_FILES[reason_rule.rule.file].splitlines()[
                reason_rule.rule.line - 1
            ]
            assert REASON_HEAD.match(source_line), (code, source_line)


def test_a_rules_own_metadata_names_its_code(index: PolicyIndex) -> None:
    for reason_rule in index.reason_rules:
        own = reason_rule.rule.annotation
        if own is not None and reason_rule.literal is not None and own.custom:
            assert reason_rule.literal[0] in own.codes, reason_rule.rule.location


def test_a_second_definition_takes_the_title_of_its_code(index: PolicyIndex) -> None:
    first, second = index.rules_for("image.digest_required")
    assert first.rule.annotation is not None
    assert second.rule.annotation is None
    assert second.title == first.title == "Image digest required"
    assert second.titled_by is first.rule.annotation


def test_paths_follow_rules_functions_and_object_get(index: PolicyIndex) -> None:
    (stale,) = index.rules_for("node.stale")
    resolver = PathResolver(index, stale.rule.file)
    (statement,) = stale.rule.bodies[0].statements
    expression = statement["literal"]["Expr"]["expr"]
    paths = {render_path(path) for path in resolver.paths(expression)}
    assert paths == {
        "input.now",
        "input.node.issued_at",
        "data.attestpolicy.config.limits.max_evidence_age_seconds",
    }
    (unverified,) = index.rules_for("node.unverified")
    (statement,) = unverified.rule.bodies[0].statements
    expression = statement["literal"]["Expr"]["expr"]
    assert {render_path(path) for path in resolver.paths(expression)} == {"input.node.verified"}


def test_metadata_that_is_not_yaml_is_a_policy_error(tmp_path: Path) -> None:
    module = "package p\n\nimport rego.v1\n\n# METADATA\n# title: [unclosed\nallow := true\n"
    with pytest.raises(PolicyError, match=r"a\.rego:5: METADATA is not YAML"):
        PolicyIndex.from_modules({"a.rego": module})


def test_a_module_that_does_not_parse_is_a_policy_error() -> None:
    with pytest.raises(PolicyError, match="failed to parse"):
        PolicyIndex.from_modules({"a.rego": "package p\n\nallow if {\n"})


# --- explanations of the example claim sets ------------------------------------------------


def explained(claims: Path, config: dict[str, Any], engine: str) -> Explanation:
    with PolicyDecisionPoint.local(config=config, engine=engine) as pdp:
        return decide_and_explain(
            pdp, claims.read_bytes(), now=None, source=SOURCE, config=config, engine=engine
        )


@pytest.mark.parametrize("claims", CLAIMS, ids=lambda path: path.stem)
def test_each_example_is_explained_from_its_rules(
    claims: Path, config: dict[str, Any], engine: str
) -> None:
    explanation = explained(claims, config, engine)
    decision = explanation.decision
    assert explanation.engine.startswith(engine)
    assert not explanation.notes
    if not decision.allow:
        assert [r.code for r in explanation.reasons] == list(decision.reason_codes)
        for reason in explanation.reasons:
            assert reason.rule is not None, reason
            assert (reason.rule.file, reason.rule.line) in rule_lines(reason.code)
            assert reason.rule.title == first_title(reason.code)
            assert reason.body, reason
            assert all(
                value.defined or "not " in statement.text
                for statement in reason.body
                for value in statement.values
            )
            assert any(read.path.startswith("input.") for read in reason.reads), reason
        return
    assert not explanation.reasons
    assert len(explanation.checks) == len(PolicyIndex.from_modules(SOURCE.modules).reason_rules)
    assert all(check.passed for check in explanation.checks)
    for check in explanation.checks:
        if check.stopped_at is not None:
            lines = POLICY_FILES[check.rule.file].splitlines()
            assert check.rule.line <= check.stopped_at.line <= len(lines)
    terms = explanation.ttl_terms
    assert [term.name for term in terms] == [term.name for term in decision.ttl_terms or ()]
    (binding,) = [term for term in terms if term.binds]
    assert binding.name == decision.ttl_bound_by
    assert binding.seconds == decision.ttl_seconds == min(term.seconds for term in terms)
    for term in terms:
        assert term.rule is not None
        file, line = term.rule.rsplit(":", 1)
        assert f'"{term.name}"' in POLICY_FILES[file].splitlines()[int(line) - 1]


def test_the_right_one_of_two_rules_with_one_code(config: dict[str, Any], engine: str) -> None:
    tag_only = explained(EXAMPLES / "claims" / "deny-tag-only.json", config, engine)
    (digest,) = [r for r in tag_only.reasons if r.code == "image.digest_required"]
    assert digest.rule is not None
    first, second = rule_lines("image.digest_required")
    assert (digest.rule.file, digest.rule.line) == first  # no digest at all: the first rule
    claims = json.loads((EXAMPLES / "claims" / "allow-fully-attested.json").read_text())
    claims["image"]["reference"] = "registry.example.com/payments/api:v1.4.2"  # not pinned
    with PolicyDecisionPoint.local(config=config, engine=engine) as pdp:
        unpinned = decide_and_explain(
            pdp, json.dumps(claims), now=None, source=SOURCE, config=config, engine=engine
        )
    (digest,) = [r for r in unpinned.reasons if r.code == "image.digest_required"]
    assert digest.rule is not None
    assert (digest.rule.file, digest.rule.line) == second
    assert digest.rule.title == first_title("image.digest_required")


def test_a_code_computed_in_the_body(config: dict[str, Any], engine: str) -> None:
    claims = json.loads((EXAMPLES / "claims" / "allow-fully-attested.json").read_text())
    claims["runtime"]["namespace"] = "default"
    with PolicyDecisionPoint.local(config=config, engine=engine) as pdp:
        explanation = decide_and_explain(
            pdp, json.dumps(claims), now=None, source=SOURCE, config=config, engine=engine
        )
    (reason,) = explanation.reasons
    assert reason.code == "runtime.namespace_mismatch"
    assert reason.rule is not None
    assert [(reason.rule.file, reason.rule.line)] == rule_lines("runtime.namespace_mismatch")
    values = {v.expression: v.value for s in reason.body for v in s.values if v.defined}
    assert values["running"] == "default"
    assert values["expected"] == "payments"
    assert values["code"] == "runtime.namespace_mismatch"
    reads = {read.path: read for read in reason.reads}
    assert reads["input.runtime.namespace"].value == "default"


def test_values_and_reads_of_a_stale_node(config: dict[str, Any], engine: str) -> None:
    explanation = explained(EXAMPLES / "claims" / "deny-stale-node.json", config, engine)
    claims = json.loads((EXAMPLES / "claims" / "deny-stale-node.json").read_text())
    (reason,) = explanation.reasons
    (statement,) = reason.body
    values = {value.expression: value.value for value in statement.values}
    max_age = config["limits"]["max_evidence_age_seconds"]
    assert values["_limits.max_age_ns"] == max_age * 1_000_000_000
    assert values["_now_ns - _node_issued_ns"] > values["_limits.max_age_ns"]
    reads = {read.path: read.value for read in reason.reads}
    assert reads == {
        "input.now": claims["now"],
        "input.node.issued_at": claims["node"]["issued_at"],
        "data.attestpolicy.config.limits.max_evidence_age_seconds": max_age,
    }


def test_a_revoked_signer_is_read_by_its_key(config: dict[str, Any], engine: str) -> None:
    explanation = explained(EXAMPLES / "claims" / "deny-untrusted-signer.json", config, engine)
    (reason,) = explanation.reasons
    reads = {read.path: read for read in reason.reads}
    revoked = reads[
        "data.attestpolicy.config.revoked.signer_subjects[input.image.signatures[_].key_id]"
    ]
    assert revoked.present is False  # key_id is null: no entry is looked up
    assert reads["input.image.signatures[_].subject"].value == [
        json.loads((EXAMPLES / "claims" / "deny-untrusted-signer.json").read_text())["image"][
            "signatures"
        ][0]["subject"]
    ]


def test_both_engines_explain_alike(config: dict[str, Any], requires_opa: None) -> None:
    def stable(explanation: Explanation) -> dict[str, Any]:
        document = explanation.to_json()
        document.pop("decision")
        document["explanation"].pop("engine")
        return document

    for claims in CLAIMS:
        assert stable(explained(claims, config, "regorus")) == stable(
            explained(claims, config, "opa")
        ), claims.name


def test_a_check_that_stopped_names_the_statement(config: dict[str, Any]) -> None:
    explanation = explained(EXAMPLES / "claims" / "allow-fully-attested.json", config, "regorus")
    (unregistered,) = [c for c in explanation.checks if c.codes == ("subject.unregistered",)]
    assert unregistered.stopped_at is not None
    assert unregistered.stopped_at.text == "_workload == null"
    (workload,) = unregistered.stopped_at.values
    claims = json.loads((EXAMPLES / "claims" / "allow-fully-attested.json").read_text())
    assert workload.value == config["workloads"][claims["subject"]["spiffe_id"]]
    (stale,) = [c for c in explanation.checks if c.codes == ("node.stale",)]
    assert stale.stopped_at is not None
    assert stale.stopped_at.line == rule_lines("node.stale")[0][1] + 1


def test_values_that_do_not_load_leave_the_rules(
    config: dict[str, Any], engine: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = _Instrumentation._showable

    def broken(self: _Instrumentation, *args: Any) -> list[str]:
        shown = real(self, *args)
        return [*shown, "1 +"] if shown else shown  # not Rego: the module does not load

    monkeypatch.setattr(_Instrumentation, "_showable", broken)
    explanation = explained(EXAMPLES / "claims" / "deny-stale-node.json", config, engine)
    (reason,) = explanation.reasons
    assert reason.rule is not None
    assert [(reason.rule.file, reason.rule.line)] == rule_lines("node.stale")
    assert reason.body
    assert all(not statement.values for statement in reason.body)
    (note,) = explanation.notes
    assert note.startswith("the values of the rules' expressions could not be evaluated")


def test_a_reason_from_outside_the_policy(config: dict[str, Any]) -> None:
    with PolicyDecisionPoint.local(config=config) as pdp:
        explanation = decide_and_explain(
            pdp, b"{not json", now=None, source=SOURCE, config=config, engine="regorus"
        )
    (reason,) = explanation.reasons
    assert reason.code == "input.invalid"
    assert reason.rule is None
    assert reason.note == OUTSIDE_POLICY
    engine_failure = Decision.deny("engine.error", "policy evaluation failed: boom")
    claims = json.loads((EXAMPLES / "claims" / "allow-fully-attested.json").read_text())
    (reason,) = explain(
        engine_failure, claims, source=SOURCE, config=config, engine="regorus"
    ).reasons
    assert reason.rule is None


# --- a policy of one's own ---------------------------------------------------------------------

CUSTOM = """package custom.v1

import rego.v1

# METADATA
# title: Production needs a builder
# custom:
#   code: custom.builder
violation contains {"code": "custom.builder", "message": sprintf("%s needs a builder", [ns])} if {
	ns := object.get(input.runtime, "namespace", null)
	ns == "prod"
	not input.provenance.builder_id
}

violation contains {"code": code, "message": "no title here"} if {
	some code in data.custom.extra
}

decision := {"allow": false, "ttl_seconds": 0, "reasons": sort([r | some r in violation]),
	"ttl_bound_by": null, "valid_until": null, "ttl_terms": [], "revocable": []} if {
	count(violation) > 0
}
"""


def test_a_custom_policy_explained(tmp_path: Path, engine: str) -> None:
    (tmp_path / "custom.rego").write_text(CUSTOM)
    source = PolicySource(
        modules={"custom.rego": CUSTOM},
        revision="test",
        data={"custom": {"extra": ["custom.extra"]}},
    )
    index = PolicyIndex.from_modules(source.modules)
    titled, untitled = index.reason_rules
    assert titled.codes == ("custom.builder",)
    assert untitled.codes == ()  # neither a literal nor a METADATA code
    decision = Decision(
        allow=False,
        ttl_seconds=0,
        reasons=(
            Reason(code="custom.builder", message="prod needs a builder"),
            Reason(code="custom.extra", message="no title here"),
        ),
    )
    explanation = explain(
        decision,
        {"runtime": {"namespace": "prod"}, "provenance": {}},
        source=source,
        config=None,
        engine=engine,
    )
    builder, extra = explanation.reasons
    assert builder.rule is not None
    assert (builder.rule.line, builder.rule.title) == (9, "Production needs a builder")
    assert {read.path for read in builder.reads} == {
        "input.runtime",  # object.get reads the object, then its namespace
        "input.runtime.namespace",
        "input.provenance.builder_id",
    }
    assert extra.rule is not None
    assert (extra.rule.line, extra.rule.title) == (15, None)
    assert "(no METADATA title), custom.rego:15" in render_explanation(explanation, "pretty")


# --- the command ------------------------------------------------------------------------------


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("fmt", ["json", "pretty", "table"])
def test_decide_explain_in_each_format(
    capsys: pytest.CaptureFixture[str], fmt: str, engine: str
) -> None:
    claims = EXAMPLES / "claims" / "deny-measurement-mismatch.json"
    code, out, err = run(
        capsys,
        *("decide", "--claims", str(claims), "--config", str(CONFIG_PATH)),
        *("--explain", "--format", fmt, "--engine", engine),
    )
    assert code == 1, err
    ((file, line),) = rule_lines("node.measurement_mismatch")
    title = first_title("node.measurement_mismatch")
    if fmt == "json":
        document = json.loads(out)
        assert document["decision"]["allow"] is False
        (reason,) = document["explanation"]["reasons"]
        assert reason["rule"] == {
            "file": file,
            "line": line,
            "title": title,
            "titled_at": f"{file}:{metadata_line_above(file, line)}",
        }
        assert document["explanation"]["engine"].startswith(engine)
    else:
        assert (f"{title}, {file}:{line}" if fmt == "pretty" else f"{file}:{line}") in out
        assert "node.measurement_mismatch" in out
        assert title in out


def test_decide_explain_an_allow(capsys: pytest.CaptureFixture[str]) -> None:
    claims = EXAMPLES / "claims" / "allow-ttl-bound-by-evidence.json"
    code, out, _ = run(
        capsys, "decide", "--claims", str(claims), "--config", str(CONFIG_PATH), "--explain"
    )
    assert code == 0
    document = json.loads(out)
    ttl = document["explanation"]["ttl"]
    assert ttl["bound_by"] == "evidence_expiry" == document["decision"]["ttl_bound_by"]
    assert ttl["valid_until"] == document["decision"]["valid_until"]
    (binding,) = [term for term in ttl["terms"] if term["binds"]]
    assert binding["seconds"] == document["decision"]["ttl_seconds"]
    assert all(check["passed"] for check in document["explanation"]["checks"])
    code, out, _ = run(
        capsys,
        *("decide", "--claims", str(claims), "--config", str(CONFIG_PATH)),
        *("--explain", "--format", "pretty"),
    )
    assert "<- binds" in out
    assert "checks passed (" in out


def test_explain_usage_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    claims = str(EXAMPLES / "claims" / "allow-fully-attested.json")
    code, out, err = run(
        capsys, "decide", "--claims", claims, "--remote", "http://127.0.0.1:9", "--explain"
    )
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1
    assert "--explain" in err
    assert "Traceback" not in err
    broken = tmp_path / "policy" / "p.rego"
    broken.parent.mkdir()
    broken.write_text(
        "package attestpolicy.v1\n\nimport rego.v1\n\n# METADATA\n# title: [x\n"
        "default decision := {}\n"
    )
    code, out, err = run(
        capsys,
        *("decide", "--claims", claims, "--config", str(CONFIG_PATH)),
        *("--policy", str(broken.parent), "--explain"),
    )
    assert code == 2
    assert err.count("\n") == 1
    assert "METADATA is not YAML" in err


def test_explaining_does_not_change_the_decision(config: dict[str, Any]) -> None:
    for claims in CLAIMS:
        with PolicyDecisionPoint.local(config=config, cache=False) as pdp:
            plain = pdp.decide(claims.read_bytes())
            explained_decision = decide_and_explain(
                pdp, claims.read_bytes(), now=None, source=SOURCE, config=config, engine="regorus"
            ).decision
        keep = ("allow", "ttl_seconds", "reasons", "ttl_bound_by", "valid_until", "ttl_terms")
        assert {k: getattr(plain, k) for k in keep} == {
            k: getattr(explained_decision, k) for k in keep
        }
    assert copy.deepcopy(config) == config


ORGANISATION_RULE = """package attestpolicy.v1

import rego.v1

# METADATA
# title: Payments needs provenance
# custom:
#   code: org.payments_provenance
violation contains {"code": "org.payments_provenance", "message": "payments needs provenance"} if {
	_field(_runtime, "namespace") == "payments"
	_provenance == null
}
"""


def test_explain_with_several_policy_directories(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, engine: str
) -> None:
    (tmp_path / "org").mkdir()
    (tmp_path / "org" / "org.rego").write_text(ORGANISATION_RULE)
    claims = json.loads((EXAMPLES / "claims" / "allow-fully-attested.json").read_text())
    del claims["provenance"]
    claims_path = tmp_path / "claims.json"
    claims_path.write_text(json.dumps(claims))
    code, out, err = run(
        capsys,
        *("decide", "--claims", str(claims_path), "--config", str(CONFIG_PATH)),
        *("--policy", str(default_policy_dir()), "--policy", str(tmp_path / "org")),
        *("--explain", "--engine", engine),
    )
    assert code == 1, err
    reasons = {r["code"]: r for r in json.loads(out)["explanation"]["reasons"]}
    assert set(reasons) == {"evidence.missing", "org.payments_provenance"}
    assert reasons["org.payments_provenance"]["rule"] == {
        "file": "org.rego",
        "line": 9,
        "title": "Payments needs provenance",
        "titled_at": "org.rego:5",
    }
    assert {read["path"] for read in reasons["org.payments_provenance"]["reads"]} == {
        "input.provenance",
        "input.runtime",  # _field's argument
        "input.runtime.namespace",
    }
