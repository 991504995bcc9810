"""The evidence document and trust configuration formats: loading, limits and errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from attestpolicy.errors import ConfigError, EvidenceError, PolicyError
from attestpolicy.evidence.document import (
    MAX_EVIDENCE_BYTES,
    MAX_TRUST_BYTES,
    NODE_KINDS,
    EvidenceDocument,
    load_evidence_document,
    load_trust_config,
)
from attestpolicy.evidence.image.cosign import CosignEvidence

EXAMPLES = Path(__file__).resolve().parents[2] / "attestpolicy" / "examples"
ALLOW = EXAMPLES / "evidence" / "allow-eks-workload.json"
TRUST = EXAMPLES / "trust.json"


def document() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(ALLOW.read_text())
    return data


def trust_mapping() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(TRUST.read_text())
    return data


def encode(data: Any) -> bytes:
    return json.dumps(data).encode()


def malformed(field: str, source: Path | str | bytes, part: str | None = None) -> None:
    with pytest.raises(EvidenceError) as info:
        load_evidence_document(source)
    assert (info.value.code, info.value.field) == ("evidence.malformed", field), info.value
    if part is not None:
        assert part in info.value.detail, info.value.detail


def config_error(source: Path | str | bytes, *parts: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_trust_config(source)
    assert info.value.code == "config.invalid"
    for part in parts:
        assert part in str(info.value), str(info.value)
    return info.value


# --- evidence documents -------------------------------------------------------------------


def test_a_document_loads_from_a_path_a_string_path_and_bytes() -> None:
    from_path = load_evidence_document(ALLOW)
    assert load_evidence_document(str(ALLOW)) == from_path
    assert load_evidence_document(ALLOW.read_bytes()) == from_path
    assert from_path.version == 1
    assert from_path.request.audience == "vault"
    assert from_path.node is not None
    assert from_path.node.kind == "tpm"


def test_image_entries_take_the_sections_reference() -> None:
    parsed = load_evidence_document(ALLOW)
    assert parsed.image is not None
    assert [entry.reference for entry in parsed.image.cosign] == [parsed.image.reference]
    data = document()
    data["image"]["cosign"][0]["reference"] = data["image"]["reference"]  # the same: accepted
    assert load_evidence_document(encode(data)) == parsed


def test_an_image_entry_naming_another_reference_is_malformed() -> None:
    data = document()
    data["image"]["cosign"][0]["reference"] = "192.168.64.2:5000/other@sha256:" + "0" * 64
    malformed("image", encode(data), "another reference")


@pytest.mark.parametrize("version", [2, 0, "1", True, 1.0, None])
def test_only_version_1_is_accepted(version: object) -> None:
    data = document()
    data["version"] = version
    malformed("version", encode(data))


def test_a_missing_version_is_malformed() -> None:
    data = document()
    del data["version"]
    malformed("version", encode(data))


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ((), "extra"),
        (("request",), "request.extra"),
        (("image",), "image.extra"),
        (("node",), "node.extra"),
        (("node", "tpm"), "node.tpm.extra"),
        (("runtime",), "runtime.extra"),
        (("runtime", "attestor"), "runtime.attestor.extra"),
    ],
)
def test_unknown_fields_are_malformed(path: tuple[str, ...], field: str) -> None:
    data = document()
    target = data
    for part in path:
        target = target[part]
    target["extra"] = 1
    malformed(field, encode(data), "Extra inputs")


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        (("request", "audience"), 5, "request.audience"),
        (("request", "audience"), "", "request.audience"),
        (("request", "requested_ttl_seconds"), "900", "request.requested_ttl_seconds"),
        (("request", "requested_ttl_seconds"), 0, "request.requested_ttl_seconds"),
        (("image", "reference"), ["x"], "image.reference"),
        (("image", "cosign"), {"manifest": "x"}, "image.cosign"),
        (("node", "tpm", "collected_at"), 5, "node.tpm.collected_at"),
        (("node", "tpm", "collected_at"), "2025-11-24T07:44:00", "node.tpm.collected_at"),
        (("runtime", "jwt_svid", "token"), None, "runtime.jwt_svid.token"),
        (("runtime", "attestor", "namespace"), "Not_A_Name", "runtime.attestor.namespace"),
        (("runtime",), [], "runtime"),
        (("node",), "tpm", "node"),
    ],
)
def test_wrong_types_are_malformed(path: tuple[str, ...], value: object, field: str) -> None:
    data = document()
    target = data
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    malformed(field, encode(data))


@pytest.mark.parametrize("part", ["request", "runtime"])
def test_required_parts_are_malformed_when_missing(part: str) -> None:
    data = document()
    del data[part]
    malformed(part, encode(data), "Field required")


def test_two_node_kinds_are_malformed() -> None:
    data = document()
    psat = data["runtime"]["psat"]
    data["node"]["k8s_psat"] = psat
    malformed("node", encode(data), "exactly one node evidence kind")


def test_a_node_section_without_evidence_is_malformed() -> None:
    data = document()
    data["node"] = {}
    malformed("node", encode(data), "got 0")


def test_every_node_kind_is_a_node_section_field() -> None:
    fields = EvidenceDocument.model_json_schema()["$defs"]["NodeSection"]["properties"]
    assert tuple(fields) == NODE_KINDS


def test_too_many_signatures_are_malformed() -> None:
    data = document()
    data["image"]["cosign"] = data["image"]["cosign"] * 33
    malformed("image.cosign", encode(data))


def test_an_unknown_key_is_named_safely_in_the_error() -> None:
    data = document()
    data["runtime"]["attestor"]["x\r\nforged: log line" + "y" * 200] = 1
    with pytest.raises(EvidenceError) as info:
        load_evidence_document(encode(data))
    field = info.value.field
    assert field is not None
    assert field.startswith("runtime.attestor.x\\r\\nforged: log line")
    assert field.endswith("...")
    assert field.isprintable()
    assert len(field) < 100


@pytest.mark.parametrize(
    ("raw", "part"),
    [
        (b"{", "not valid JSON"),
        (b"", "not valid JSON"),
        (b'{"version": 1, "version": 1}', "duplicate member"),
        (b'{"version": NaN}', "NaN"),
        (b'{"version": 1, "request": {"audience": "\\ud800"}}', "not valid JSON"),
        (b"\xff\xfe{}", "not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),
    ],
)
def test_invalid_json_is_malformed(raw: bytes, part: str) -> None:
    malformed("(document)", raw, part)


@pytest.mark.parametrize("value", [[], "document", 1, None])
def test_a_document_that_is_not_an_object_is_malformed(value: object) -> None:
    malformed("(document)", encode(value), "JSON object")


def test_an_oversized_document_is_malformed(tmp_path: Path) -> None:
    data = document()
    data["request"]["audience"] = "a" * MAX_EVIDENCE_BYTES
    raw = encode(data)
    malformed("(document)", raw, "byte limit")
    big = tmp_path / "big.json"
    big.write_bytes(raw)
    malformed("(document)", big, "byte limit")


def test_an_unreadable_document_is_malformed(tmp_path: Path) -> None:
    malformed("(document)", tmp_path / "missing.json", "cannot read")
    malformed("(document)", tmp_path, "cannot read")


def test_the_json_schema_lets_image_entries_leave_out_the_reference() -> None:
    schema = EvidenceDocument.model_json_schema()
    assert "reference" not in schema["$defs"]["CosignEvidence"]["required"]
    assert "reference" not in schema["$defs"]["SigstoreBundleEvidence"].get("required", [])
    assert schema["$defs"]["ImageSection"]["required"] == ["reference"]
    assert "reference" in CosignEvidence.model_json_schema()["required"]  # standalone: required


# --- trust configurations -------------------------------------------------------------------


def test_the_trust_configuration_loads_from_json_and_yaml(tmp_path: Path) -> None:
    from_json = load_trust_config(TRUST)
    assert load_trust_config(str(TRUST)) == from_json
    assert load_trust_config(TRUST.read_bytes()) == from_json
    as_yaml = yaml.safe_dump(trust_mapping(), sort_keys=False)
    assert "-----BEGIN PUBLIC KEY-----" in as_yaml
    path = tmp_path / "trust.yaml"
    path.write_text(as_yaml)
    assert load_trust_config(path) == from_json
    assert load_trust_config(as_yaml.encode()) == from_json


def test_a_hand_written_yaml_trust_configuration(tmp_path: Path) -> None:
    pem = trust_mapping()["image"]["cosign"]["public_keys"][0]
    indented = "".join(f"        {line}\n" for line in pem.splitlines())
    text = (
        "version: 1\n"
        "image:\n"
        "  cosign:\n"
        "    public_keys:\n"
        f"      - |\n{indented}"
        "runtime:\n"
        "  attestor:\n"
        "    require_binding: true  # facts only count when a PSAT binds them\n"
    )
    loaded = load_trust_config(text.encode())
    assert loaded.image.cosign is not None
    assert loaded.image.cosign.public_keys == (pem,)
    assert loaded.runtime.attestor.require_binding is True
    assert loaded.node.tpm is None


def test_an_empty_trust_configuration_trusts_nothing() -> None:
    empty = load_trust_config(b"version: 1\n")
    assert empty.image.cosign is None
    assert empty.image.sigstore is None
    assert empty.provenance is None
    assert all(getattr(empty.node, kind) is None for kind in type(empty.node).model_fields)
    assert empty.runtime.jwt_svid is None
    assert empty.runtime.x509_svid is None
    assert empty.runtime.psat is None
    assert empty.runtime.attestor.require_binding is False


def test_config_errors_are_the_policy_authors_not_evidence_errors() -> None:
    error = config_error(b"version: 2\n", "version")
    assert isinstance(error, PolicyError)
    assert not isinstance(error, EvidenceError)


@pytest.mark.parametrize("version", ["2", "'1'", "true", "1.0", "null"])
def test_trust_version_must_be_1(version: str) -> None:
    config_error(f"version: {version}\n".encode(), "version")


@pytest.mark.parametrize(
    ("change", "parts"),
    [
        (lambda t: t.update(extra=1), ("at extra", "Extra inputs")),
        (lambda t: t["runtime"]["psat"].update(extra=1), ("runtime.psat.extra",)),
        (lambda t: t["node"]["tpm"].update(ca_certificates="x"), ("node.tpm.ca_certificates",)),
        (
            lambda t: t["image"]["cosign"].update(public_keys=["not a key"]),
            ("image.cosign",),
        ),
        (lambda t: t["runtime"]["jwt_svid"].update(audiences=[]), ("runtime.jwt_svid.audiences",)),
        (
            lambda t: t["runtime"]["jwt_svid"].update(bundles={"Not A Domain": {"keys": []}}),
            ("runtime.jwt_svid.bundles",),
        ),
        (lambda t: t["runtime"]["attestor"].update(require_binding="yes"), ("require_binding",)),
    ],
)
def test_invalid_trust_names_the_field(
    change: Callable[[dict[str, Any]], None], parts: tuple[str, ...]
) -> None:
    data = trust_mapping()
    change(data)
    config_error(encode(data), *parts)


def test_yaml_aliases_are_refused() -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(8)
    )
    config_error(f"version: 1\n{bomb}".encode(), "aliases are not allowed")


def test_yaml_duplicate_keys_are_refused() -> None:
    config_error(b"version: 1\nruntime: {}\nruntime: {}\n", "duplicate key 'runtime'")
    config_error(b'{"version": 1, "version": 1}', "duplicate key 'version'")


@pytest.mark.parametrize(
    ("raw", "part"),
    [
        (b"version: [1\n", "not valid JSON or YAML"),
        (b"\xff\xfe\x00", "not valid JSON or YAML"),
        (b"- version: 1\n", "must be a JSON object"),
        (b"", "must be a JSON object"),
        (b"[" * 100_000, "not valid JSON or YAML"),
    ],
)
def test_invalid_trust_documents(raw: bytes, part: str) -> None:
    config_error(raw, part)


def test_an_oversized_trust_configuration_is_refused(tmp_path: Path) -> None:
    raw = b"version: 1\n" + b"#" * MAX_TRUST_BYTES
    config_error(raw, "larger than")
    path = tmp_path / "trust.yaml"
    path.write_bytes(raw)
    config_error(path, "larger than")


def test_an_unreadable_trust_configuration_is_refused(tmp_path: Path) -> None:
    config_error(tmp_path / "missing.yaml", "cannot read")
