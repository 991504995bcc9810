"""Masks: OPA's erase/upsert semantics on nested paths and arrays, the mask file format and
its errors, and the default masks for attestation material."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from decisionlog.helpers import read_log

from attestpolicy import ClaimSet, PolicyDecisionPoint
from attestpolicy._demo_evidence import fresh_evidence
from attestpolicy.decisionlog import (
    ATTESTATION_MATERIAL_FIELDS,
    DEFAULT_MASKS,
    REDACTED,
    AttestationMaterial,
    DecisionLogConfigError,
    DecisionLogEvent,
    DecisionLogger,
    Erase,
    FileSink,
    MaskConfigError,
    MaskRule,
    Upsert,
    load_masks,
    parse_masks,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "attestpolicy" / "examples"
SIGNATURE = "dev.cosignproject.cosign/signature"


def _event() -> dict[str, Any]:
    return {
        "decision_id": "d",
        "input": {
            "user": {"name": "bob", "password": "passw0rd", "keys": ["k0", "k1", "k2"]},
            "items": [{"id": 1, "secret": "s1"}, {"id": 2, "secret": "s2"}],
            "a/b": "slash",
            "text": "plain",
        },
        "result": {"allow": True, "token": "t"},
    }


def _apply(
    *rules: MaskRule, event: dict[str, Any] | None = None
) -> tuple[Any, list[str], list[str]]:
    event = _event() if event is None else event
    erased: list[str] = []
    masked: list[str] = []
    for rule in rules:
        rule.apply(event, erased, masked)
    return event, erased, masked


def test_erase_nested_members_and_array_elements() -> None:
    event, erased, masked = _apply(
        Erase("/input/user/password"),
        Erase("/input/items/0/secret"),
        Erase("/input/user/keys/1"),
        Erase("/result/token"),
        Erase("/input/a%2Fb"),
    )
    assert event["input"]["user"] == {"name": "bob", "keys": ["k0", "k2"]}  # later ones move up
    assert event["input"]["items"] == [{"id": 1}, {"id": 2, "secret": "s2"}]
    assert "a/b" not in event["input"]
    assert event["result"] == {"allow": True}
    assert erased == [
        "/input/user/password",
        "/input/items/0/secret",
        "/input/user/keys/1",
        "/result/token",
        "/input/a%2Fb",
    ]
    assert masked == []


def test_erase_of_nothing_changes_nothing_and_is_not_listed() -> None:
    original = _event()
    event, erased, _ = _apply(
        Erase("/input/user/missing"),
        Erase("/input/user/keys/3"),  # past the end
        Erase("/input/user/keys/x"),  # not an index
        Erase("/input/text/inner"),  # through a string
        Erase("/input/missing/deeper"),
    )
    assert event == original
    assert erased == []


def test_erase_the_whole_input_or_result() -> None:
    event, erased, _ = _apply(Erase("/input"), Erase("/result"))
    assert "input" not in event
    assert "result" not in event
    assert erased == ["/input", "/result"]
    assert DecisionLogEvent.model_fields["input"].default is None
    _, again, _ = _apply(Erase("/input"), event={"decision_id": "d"})
    assert again == []  # no input: nothing erased


def test_upsert_nested_creating_objects_and_in_arrays() -> None:
    event, erased, masked = _apply(
        Upsert("/input/user/password", REDACTED),
        Upsert("/input/new/deep/field", {"x": [1, 2]}),
        Upsert("/input/items/1/secret", None),
        Upsert("/input/user/keys/0", "K"),
        Upsert("/result/allow", "hidden"),
    )
    assert event["input"]["user"]["password"] == REDACTED
    assert event["input"]["new"] == {"deep": {"field": {"x": [1, 2]}}}
    assert event["input"]["items"][1] == {"id": 2, "secret": None}
    assert event["input"]["user"]["keys"] == ["K", "k1", "k2"]
    assert event["result"]["allow"] == "hidden"
    assert masked == [
        "/input/user/password",
        "/input/new/deep/field",
        "/input/items/1/secret",
        "/input/user/keys/0",
        "/result/allow",
    ]
    assert erased == []


def test_upsert_where_it_cannot_reach_changes_nothing() -> None:
    original = _event()
    event, _, masked = _apply(
        Upsert("/input/user/keys/9", "x"),  # past the end of an array
        Upsert("/input/items/x/secret", "x"),  # not an index
        Upsert("/input/text/inner", "x"),  # through a string
    )
    assert event == original
    assert masked == []
    _, _, none = _apply(Upsert("/input/x", 1), event={"input": ["not", "an", "object"]})
    assert none == []
    _, _, absent = _apply(Upsert("/input/x", 1), event={"decision_id": "d"})
    assert absent == []


def test_upsert_of_the_whole_input_and_a_fresh_value_per_event() -> None:
    shared = {"kept": ["a"]}
    rule = Upsert("/input", shared)
    first, _, masked = _apply(rule)
    assert first["input"] == {"kept": ["a"]}
    assert masked == ["/input"]
    first["input"]["kept"].append("changed")
    second, _, _ = _apply(rule)
    assert second["input"] == {"kept": ["a"]}  # events never share the value
    shared["kept"].append("after")
    assert _apply(rule)[0]["input"] == {"kept": ["a"]}  # copied when the rule was made


def test_an_erase_then_an_upsert_lists_both() -> None:
    event, erased, masked = _apply(
        Erase("/input/user/password"), Upsert("/input/user/password", "*")
    )
    assert event["input"]["user"]["password"] == "*"
    assert (erased, masked) == (["/input/user/password"], ["/input/user/password"])


def test_parse_masks_reads_opa_rules() -> None:
    rules = parse_masks(
        [
            "/input/password",
            {"op": "remove", "path": "/input/ssn"},
            {"op": "upsert", "path": "/input/name", "value": "**REDACTED**"},
        ]
    )
    assert rules == (
        Erase("/input/password"),
        Erase("/input/ssn"),
        Upsert("/input/name", "**REDACTED**"),
    )


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"mask": []}, "must be a JSON array"),
        ([7], "mask 0: a mask is a pointer string or an object"),
        (["/input/a", ""], "mask 1: a mask path must be a non-empty string"),
        (["input/a"], "must start with '/'"),
        (["/data/a"], "must start with /input or /result"),
        (["/nd_builtin_cache/x"], "no nd_builtin_cache"),
        (["/input/%zz"], "invalid percent escape"),
        (["/input/%ff"], "not UTF-8"),
        ([{"op": "erase", "path": "/input/a"}], "op must be one of 'remove', 'upsert'"),
        ([{"path": "/input/a"}], "op must be one of"),
        ([{"op": "remove"}], "needs a path"),
        ([{"op": "remove", "path": "/input/a", "value": 1}], "takes no value"),
        ([{"op": "upsert", "path": "/input/a"}], "needs a value"),
        ([{"op": "upsert", "path": 5, "value": 1}], "non-empty string"),
        ([{"op": "remove", "path": "/input/a", "extra": 1}], "unknown member"),
    ],
)
def test_malformed_masks_are_typed_errors(document: object, message: str) -> None:
    with pytest.raises(MaskConfigError, match=message) as caught:
        parse_masks(document)
    assert isinstance(caught.value, DecisionLogConfigError)
    assert isinstance(caught.value, ValueError)
    assert caught.value.code == "decisionlog.invalid_mask"


def test_python_rules_are_checked_when_made() -> None:
    with pytest.raises(MaskConfigError, match="not JSON"):
        Upsert("/input/a", {1, 2})
    with pytest.raises(MaskConfigError, match="not JSON"):
        Upsert("/input/a", float("nan"))
    with pytest.raises(MaskConfigError, match="must start with /input"):
        Erase("/labels/id")
    with pytest.raises(MaskConfigError, match="not one string"):
        AttestationMaterial(fields="nonce")  # type: ignore[arg-type]
    with pytest.raises(MaskConfigError, match="at least one field or token name"):
        AttestationMaterial(fields=frozenset(), tokens=frozenset())
    with pytest.raises(MaskConfigError, match="non-empty string"):
        AttestationMaterial(tokens=frozenset({""}))


def test_load_masks_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "masks.json"
    path.write_text(json.dumps(["/input/a", {"op": "upsert", "path": "/result/b", "value": 0}]))
    assert load_masks(path) == (Erase("/input/a"), Upsert("/result/b", 0))
    with pytest.raises(MaskConfigError, match="cannot read the mask file"):
        load_masks(tmp_path / "missing.json")
    path.write_text('["/input/a",')
    with pytest.raises(MaskConfigError, match=r"masks\.json: not valid JSON"):
        load_masks(path)
    path.write_text('["/input/a", "/input/a"]')  # repeated rules are fine
    assert len(load_masks(path)) == 2
    path.write_text('{"a": 1, "a": 2}')
    with pytest.raises(MaskConfigError, match="duplicate member"):
        load_masks(path)
    path.write_text('["/input/a", {"op": "upsert", "path": "/input/b"}]')
    with pytest.raises(MaskConfigError, match=r"masks\.json: mask 1: an 'upsert' mask needs"):
        load_masks(path)


# --- the defaults ---------------------------------------------------------------------


def _defaults(document: Any) -> tuple[Any, list[str], list[str]]:
    return _apply(*DEFAULT_MASKS, event={"input": copy.deepcopy(document)})


@pytest.mark.parametrize("path", sorted((EXAMPLES / "claims").glob("*.json")), ids=lambda p: p.stem)
def test_the_defaults_leave_claim_sets_whole(path: Path) -> None:
    claims = ClaimSet.parse(path.read_text()).to_input()
    event, erased, masked = _defaults(claims)
    assert event["input"] == claims  # decide()'s input stays replayable
    assert (erased, masked) == ([], [])


def _jws_signature(token: str) -> str:
    return token.rsplit(".", 1)[1]


def test_the_defaults_erase_fresh_evidence_material() -> None:
    fresh = fresh_evidence(svid="x509")
    document = fresh.document
    cosign = document["image"]["cosign"][0]
    material = [
        cosign["signature"]["annotations"][SIGNATURE],
        document["provenance"]["dsse"]["envelope"]["signatures"][0]["sig"],
        document["runtime"]["x509_svid"]["chain"],
        _jws_signature(document["runtime"]["psat"]["token"]),
    ]
    event, erased, masked = _defaults(document)
    text = json.dumps(event)
    assert all(value not in text for value in material)
    assert "/input/image/cosign/0/signature" in erased
    assert "/input/provenance/dsse/envelope/signatures/0/sig" in erased
    assert "/input/runtime/x509_svid/chain" in erased
    assert masked == ["/input/runtime/psat/token"]
    header_and_payload = document["runtime"]["psat"]["token"].rsplit(".", 1)[0]
    assert event["input"]["runtime"]["psat"]["token"] == f"{header_and_payload}.{REDACTED}"
    assert event["input"]["image"]["cosign"][0]["manifest"] == cosign["manifest"]  # not material
    jwt = fresh_evidence(svid="jwt").document
    event, _, masked = _defaults(jwt)
    assert "/input/runtime/jwt_svid/token" in masked
    assert _jws_signature(jwt["runtime"]["jwt_svid"]["token"]) not in json.dumps(event)


@pytest.mark.parametrize(
    "path", sorted((EXAMPLES / "evidence").glob("*.json")), ids=lambda p: p.stem
)
def test_the_defaults_erase_real_evidence_material(path: Path) -> None:
    document = json.loads(path.read_text())
    node = document.get("node", {})
    material = [json.dumps(cosign["signature"]) for cosign in document["image"].get("cosign", [])]
    if "tpm" in node:
        material.append(json.dumps(node["tpm"]["go_tpm_tools_attestation"]))
    runtime = document.get("runtime", {})
    tokens = [runtime[kind]["token"] for kind in ("jwt_svid", "psat") if kind in runtime]
    material.extend(_jws_signature(token) for token in tokens)
    assert material
    event, erased, masked = _defaults(document)
    text = json.dumps(event)
    assert all(value not in text for value in material)
    assert len(masked) == len(tokens)
    assert erased


def test_the_defaults_find_material_anywhere_and_match_names_loosely() -> None:
    document = {
        "deep": [{"wrapper": {"NONCE": "n1", "Certificate": "c1"}}],
        "annotations": {"dev.sigstore.cosign/chain": "pem", "other/keep": "k"},
        "token": "opaque-secret",
        "id_token": None,
        "nonce_verified": True,
        "signatures": [{"verified": True, "issuer": "i"}],
    }
    event, erased, masked = _defaults(document)
    assert event["input"] == {
        "deep": [{"wrapper": {}}],
        "annotations": {"other/keep": "k"},
        "id_token": None,
        "nonce_verified": True,
        "signatures": [{"verified": True, "issuer": "i"}],
    }
    assert sorted(erased) == sorted(
        [
            "/input/deep/0/wrapper/NONCE",
            "/input/deep/0/wrapper/Certificate",
            "/input/annotations/dev.sigstore.cosign%2Fchain",
            "/input/token",  # not a JWS: erased whole
        ]
    )
    assert masked == []


def test_applies_to_says_whether_a_rule_would_change_the_event() -> None:
    event = _event()
    assert Erase("/input/user/keys/2").applies_to(event)
    assert not Erase("/input/user/keys/3").applies_to(event)
    assert not Erase("/input/text/inner").applies_to(event)
    assert not Erase("/input/x").applies_to({"result": {}})
    assert Upsert("/input/anything/new", 1).applies_to(event)
    assert not Upsert("/input/x", 1).applies_to({"input": [1]})
    assert Upsert("/input", 1).applies_to({"input": [1]})
    assert not AttestationMaterial().applies_to(event)
    assert AttestationMaterial(fields=frozenset({"SECRET"})).applies_to(event)
    assert event == _event()  # only read
    custom = AttestationMaterial(fields=ATTESTATION_MATERIAL_FIELDS | {"password"})
    masked_event, erased, _ = _apply(custom)
    assert erased == ["/input/user/password"]
    assert "password" not in masked_event["input"]["user"]


def test_masks_change_copies_never_the_callers_input_or_another_observers(
    tmp_path: Path, claims: dict[str, Any], example_config: dict[str, Any]
) -> None:
    class Recorder:
        def __init__(self) -> None:
            self.inputs: list[Any] = []

        def on_decision(self, record: Any) -> None:
            self.inputs.append(record.policy_input)

    recorder = Recorder()
    log = tmp_path / "log.jsonl"
    given = {"nonce": "n", "inner": {"signature": "s"}}
    masks = (*DEFAULT_MASKS, Erase("/input/runtime/pod"), Upsert("/input/subject/x", 1))
    with (
        DecisionLogger(FileSink(log), masks=masks) as logger,
        PolicyDecisionPoint.local(config=example_config) as pdp,
    ):
        pdp.add_observer(logger)
        pdp.add_observer(recorder)
        pdp.decide(claims)
        pdp.decide(claims)
        logger.log_query("p", given, given, revision="", eval_ns=None)
        assert logger.flush(10)
    assert given == {"nonce": "n", "inner": {"signature": "s"}}
    expected = ClaimSet.parse(claims).to_input()
    assert [read() for read in recorder.inputs] == [expected, expected]  # miss and hit
    miss, hit, query = read_log(log)
    assert "pod" not in miss["input"]["runtime"]
    assert "pod" not in hit["input"]["runtime"]
    assert query["input"] == {"inner": {}, "subject": {"x": 1}}  # the upsert made its way
    assert query["result"] == given  # the defaults look at the input only


def test_masks_apply_before_the_sink_and_user_masks_add_to_the_defaults(
    tmp_path: Path, claims: dict[str, Any], example_config: dict[str, Any]
) -> None:
    mask_file = tmp_path / "masks.json"
    mask_file.write_text(
        json.dumps(
            [
                "/input/runtime/pod",
                {"op": "upsert", "path": "/input/subject/spiffe_id", "value": "**REDACTED**"},
                {"op": "remove", "path": "/result/revocable"},
            ]
        )
    )
    fresh = fresh_evidence()
    log = tmp_path / "log.jsonl"
    masks = (*DEFAULT_MASKS, *load_masks(mask_file))
    with (
        DecisionLogger(FileSink(log), masks=masks) as logger,
        PolicyDecisionPoint.local(config=example_config) as pdp,
    ):
        pdp.add_observer(logger)
        decision = pdp.decide(claims)
        logger.log_query(
            "attestpolicy/v1/decision", fresh.document, {"allow": True}, revision="", eval_ns=1
        )
    decided, queried = read_log(log)
    assert decision.allow
    assert decided["erased"] == ["/input/runtime/pod", "/result/revocable"]
    assert decided["masked"] == ["/input/subject/spiffe_id"]
    assert "pod" not in decided["input"]["runtime"]
    assert decided["input"]["subject"]["spiffe_id"] == "**REDACTED**"
    assert "revocable" not in decided["result"]
    assert DecisionLogEvent.model_validate(decided).input_altered  # replay refuses it
    text = log.read_text()
    assert fresh.document["image"]["cosign"][0]["signature"]["annotations"][SIGNATURE] not in text
    assert "/input/image/cosign/0/signature" in queried["erased"]


def test_no_masks_logs_everything(tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"
    with DecisionLogger(FileSink(log), masks=()) as logger:
        logger.log_query("p", {"nonce": "n"}, None, revision="", eval_ns=None)
    (event,) = read_log(log)
    assert event["input"] == {"nonce": "n"}
    with pytest.raises(DecisionLogConfigError, match="MaskRule"):
        DecisionLogger(FileSink(log), masks=["/input/a"])  # type: ignore[list-item]
