"""The configuration document: validated at load time, errors name the field."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from attestpolicy.config import MAX_CONFIG_BYTES, load_config, validate_config
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
