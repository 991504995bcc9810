"""The configuration document: validated at load time, errors name the field."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from attestpolicy.config import (
    MAX_CONFIG_BYTES,
    MAX_LISTED_PROBLEMS,
    config_schema,
    load_config,
    validate_config,
)
from attestpolicy.errors import ConfigError


def test_example_config_is_valid(example_config: dict[str, Any]) -> None:
    assert validate_config(example_config) == example_config


@pytest.mark.parametrize(
    ("mutate", "where"),
    [
        (lambda c: c.pop("limits"), "limits"),
        (lambda c: c["limits"].update(min_ttl_seconds=0), "limits.min_ttl_seconds"),
        (lambda c: c["limits"].update(default_ttl_seconds=1.5), "limits.default_ttl_seconds"),
        (lambda c: c["limits"].update(clock_skew_seconds=-1), "limits.clock_skew_seconds"),
        (
            lambda c: c["limits"].update(max_evidence_age_seconds=True),
            "limits.max_evidence_age_seconds",
        ),
        (
            lambda c: c["audiences"]["vault"].update(max_ttl_seconds="60"),
            "audiences.vault.max_ttl_seconds",
        ),
        (lambda c: c.update(trusted_signers=[{"issuer": "i"}]), "trusted_signers"),
        (lambda c: c["trusted_signers"].update(keys={}), "trusted_signers.keys"),
        (lambda c: c["trusted_signers"]["issuers"].update(i="a*"), "trusted_signers.issuers.i"),
        (
            lambda c: c["trusted_signers"]["issuers"].update(i=["a?b"]),
            "trusted_signers.issuers.i.0",
        ),
        (
            lambda c: c["trusted_signers"]["issuers"].update(i=["ok", "a[bc]"]),
            "trusted_signers.issuers.i.1",
        ),
        (lambda c: c["trusted_signers"]["issuers"].update(i=[""]), "trusted_signers.issuers.i.0"),
        (lambda c: c["trusted_signers"].update(key_ids=["k"]), "trusted_signers.key_ids"),
        (lambda c: c.update(trusted_builders=["b"]), "trusted_builders"),
        (lambda c: c["trusted_builders"].update(b=True), "trusted_builders.b"),
        (
            lambda c: c["workloads"].update({"not-a-spiffe-id": {}}),
            "workloads.not-a-spiffe-id.[key]",
        ),
        (
            lambda c: c["node_baselines"].update(tpm={"pcr.sha256.0": "XYZ"}),
            "node_baselines.tpm.pcr.sha256.0",
        ),
        (lambda c: c["revoked"].update(node_ids="node-1"), "revoked.node_ids"),
        (lambda c: c["revoked"].update(node_ids=["node-1"]), "revoked.node_ids"),
        (lambda c: c["revoked"]["node_ids"].update({"node-1": 1}), "revoked.node_ids.node-1"),
        (lambda c: c["limits"].update(min_ttl_seconds=60.5), "limits.min_ttl_seconds"),
        (lambda c: c.update(trusted_signer=[]), "trusted_signer"),
    ],
)
def test_invalid_configs_name_the_field(
    example_config: dict[str, Any], mutate: Any, where: str
) -> None:
    config = copy.deepcopy(example_config)
    mutate(config)
    with pytest.raises(ConfigError) as info:
        validate_config(config)
    assert f"at {where}:" in str(info.value)
    assert info.value.code == "config.invalid"


def test_workload_require_only_known_classes(example_config: dict[str, Any]) -> None:
    config = copy.deepcopy(example_config)
    workload = next(iter(config["workloads"].values()))
    workload["require"] = ["image", "firmware"]
    with pytest.raises(ConfigError, match="require"):
        validate_config(config)


def test_key_id_signers_accepted(example_config: dict[str, Any]) -> None:
    config = copy.deepcopy(example_config)
    config["trusted_signers"] = {"key_ids": {"sha256:" + "ab" * 32: "release key"}}
    validate_config(config)


def test_null_sections_and_fields_are_absent(example_config: dict[str, Any]) -> None:
    config = copy.deepcopy(example_config)
    config.update(trusted_signers=None, revoked={"node_ids": None}, node_baselines=None)
    workload = next(iter(config["workloads"].values()))
    workload.update(require=None, source_repo=None, image_digests=None)
    assert validate_config(config) == config


def test_integral_float_seconds_are_integers(example_config: dict[str, Any]) -> None:
    config = copy.deepcopy(example_config)
    config["limits"]["default_ttl_seconds"] = 900.0
    validate_config(config)


def test_load_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read configuration"):
        load_config(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_config(bad)
    big = tmp_path / "big.json"
    big.write_text(json.dumps({"x": "a" * 1025}))
    with pytest.raises(ConfigError, match="larger than 1024 bytes"):
        load_config(big, max_bytes=1024)
    assert MAX_CONFIG_BYTES >= 64 * 1024 * 1024  # a fleet of 100k workloads is ~42 MB
    listed = tmp_path / "list.json"
    listed.write_text("[]")
    with pytest.raises(ConfigError, match="JSON object"):
        load_config(listed)


def test_every_problem_is_reported_at_once(example_config: dict[str, Any]) -> None:
    config = copy.deepcopy(example_config)
    config["limits"]["min_ttl_seconds"] = 0
    config["trusted_signers"]["issuers"]["i"] = ["a?b"]
    config["limts"] = {}
    with pytest.raises(ConfigError) as info:
        validate_config(config)
    lines = str(info.value).splitlines()
    assert lines[0] == "invalid configuration, 3 problems:"
    assert sorted(line.strip().partition(":")[0] for line in lines[1:]) == [
        "at limits.min_ttl_seconds",
        "at limts",
        "at trusted_signers.issuers.i.0",
    ]
    assert "Value error" not in str(info.value)  # the validator's own words, no prefix
    assert "subject patterns may use no glob syntax" in str(info.value)


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda c: c.update(limts={}), "at limts: unknown key 'limts' (did you mean 'limits'?)"),
        (
            lambda c: c["audiences"]["vault"].update(ttl=3),
            "at audiences.vault.ttl: unknown key 'ttl' (allowed: max_ttl_seconds)",
        ),
        (
            lambda c: next(iter(c["workloads"].values())).update(namespce="x"),
            "namespce: unknown key 'namespce' (did you mean 'namespace'?)",
        ),
        (
            lambda c: c["revoked"].update(nodes={}),
            "at revoked.nodes: unknown key 'nodes' (did you mean 'node_ids'?)",
        ),
        (
            lambda c: c.update(zzz=1),
            "at zzz: unknown key 'zzz' (allowed: audiences, limits, node_baselines, revoked, "
            "trusted_builders, trusted_signers, workloads)",
        ),
    ],
)
def test_unknown_keys_are_named_with_the_keys_allowed_there(
    example_config: dict[str, Any], mutate: Any, expected: str
) -> None:
    config = copy.deepcopy(example_config)
    mutate(config)
    with pytest.raises(ConfigError) as info:
        validate_config(config)
    assert expected in str(info.value)


def test_a_long_list_of_problems_is_cut(example_config: dict[str, Any]) -> None:
    config = copy.deepcopy(example_config)
    config.update({f"unknown{i}": 1 for i in range(MAX_LISTED_PROBLEMS + 7)})
    with pytest.raises(ConfigError) as info:
        validate_config(config)
    lines = str(info.value).splitlines()
    assert lines[0] == f"invalid configuration, {MAX_LISTED_PROBLEMS + 7} problems:"
    assert len(lines) == 1 + MAX_LISTED_PROBLEMS + 1
    assert lines[-1].strip() == "... and 7 more"


def test_yaml_configuration(tmp_path: Path, example_config: dict[str, Any]) -> None:
    for name in ("config.yaml", "config.yml", "config"):
        path = tmp_path / name
        path.write_text(yaml.safe_dump(example_config))
        assert load_config(path) == example_config
    # a .yaml file holding JSON is YAML too (JSON is a subset)
    (tmp_path / "json.yaml").write_text(json.dumps(example_config))
    assert load_config(tmp_path / "json.yaml") == example_config


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("limits: {}\nlimits: {}\n", "not valid YAML: duplicate key 'limits'"),
        ("a: &x [1]\nb: *x\n", "not valid YAML: YAML aliases are not allowed"),
        ("limits: [\n", "not valid YAML"),
        ("- 1\n", "configuration must be a JSON object, got list"),
        ("[" * 50_000 + "]" * 50_000, "not valid YAML: nested too deeply"),
        (
            "limits:\n  max_evidence_age_seconds: .nan\n  clock_skew_seconds: 2026-01-01\n"
            "  min_ttl_seconds: 1\n  default_ttl_seconds: 10\ntrusted_builders: {1: x}\n",
            "3 problems",
        ),
    ],
)
def test_yaml_configuration_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(path)


def test_json_is_read_strictly_whatever_the_name(tmp_path: Path) -> None:
    path = tmp_path / "config.conf"
    path.write_text('{"limits": {}, "limits": {}}')
    with pytest.raises(ConfigError, match="not valid JSON: duplicate member 'limits'"):
        load_config(path)


def test_config_schema_matches_the_examples() -> None:
    schema = config_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    examples = Path(__file__).resolve().parent.parent / "attestpolicy" / "examples"
    for name in ("config.json", "evidence-config.json"):
        validator.validate(json.loads((examples / name).read_text()))
    bad = json.loads((examples / "config.json").read_text())
    bad["limits"]["min_ttl_seconds"] = 0  # the bounds are JSON Schema keywords
    assert not validator.is_valid(bad)
    assert not validator.is_valid(bad | {"limts": {}})
