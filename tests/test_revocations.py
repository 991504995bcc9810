"""Runtime revocations: kept apart from the configuration, in memory or in a SQLite store
shared by processes; a reload never lifts them, a restart never resurrects a revoked value."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from attestpolicy import PolicyDecisionPoint
from attestpolicy.cli import main
from attestpolicy.config import load_config
from attestpolicy.errors import ConfigError
from attestpolicy.revocations import (
    SCHEMA_VERSION,
    RevocationError,
    RevocationStore,
    check_pairs,
)

KEY_ID = "sha256:4f0c7b9d1e2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4"


@pytest.fixture
def key_signed(
    claims: dict[str, Any], example_config: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Claims whose image is signed with a trusted key (no keyless identity)."""
    config = json.loads(json.dumps(example_config))
    config["trusted_signers"]["key_ids"] = {KEY_ID: "release key"}
    claims["image"]["signatures"] = [{"verified": True, "key_id": KEY_ID}]
    return claims, config


def test_a_reload_of_the_same_configuration_does_not_lift_a_revocation(
    key_signed: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    claims, config = key_signed
    pdp = PolicyDecisionPoint.local(config=config)
    assert pdp.decide(claims).allow
    pdp.revoke(signer_subject=KEY_ID, reason="leaked")
    assert pdp.decide(claims).reason_codes == ("image.untrusted_signer",)
    pdp.reload(config=config)  # deny -> allow before: reload rebuilt the revoked map
    assert pdp.decide(claims).reason_codes == ("image.untrusted_signer",)
    assert pdp.lift(signer_subject=KEY_ID) is True
    assert pdp.decide(claims).allow


def test_revocations_in_a_store_survive_a_restart(
    tmp_path: Path, claims: dict[str, Any], example_config: dict[str, Any]
) -> None:
    store = tmp_path / "revocations.db"
    first = PolicyDecisionPoint.local(config=example_config, revocations=store)
    assert first.decide(claims).allow
    first.revoke(node_id=claims["node"]["id"], reason="stolen")
    first.close()
    restarted = PolicyDecisionPoint.local(config=example_config, revocations=store)
    decision = restarted.decide(claims)
    assert decision.reason_codes == ("node.revoked",)
    assert decision.reasons[0].message.endswith("is revoked: stolen")
    restarted.lift(node_id=claims["node"]["id"])
    assert PolicyDecisionPoint.local(config=example_config, revocations=store).decide(claims).allow


def test_a_revocation_by_another_process_reaches_a_cached_allow(
    tmp_path: Path, claims: dict[str, Any], example_config: dict[str, Any]
) -> None:
    """`attestpolicy revoke` in another process: this PDP's next decision denies, although
    its cache holds the allow (the revocations' revision is part of the cache key)."""
    store = tmp_path / "revocations.db"
    pdp = PolicyDecisionPoint.local(config=example_config, revocations=store)
    assert pdp.decide(claims).allow
    assert pdp.decide(claims).allow
    stats = pdp.cache_stats()
    assert stats is not None
    assert stats.hits == 1
    digest = claims["image"]["digest"]
    result = subprocess.run(
        [sys.executable, "-m", "attestpolicy", "revoke", "--store", str(store),
         "--image-digest", digest, "--reason", "CVE-2026-1"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"revoked": 1, "revocations": 1, "store": str(store)}
    decision = pdp.decide(claims)
    assert decision.reason_codes == ("image.revoked",)
    assert decision.reasons[0].message == f"image {digest} is revoked: CVE-2026-1"


def test_store_add_keeps_the_first_reason_and_lift_counts(tmp_path: Path) -> None:
    with RevocationStore(tmp_path / "r.db") as store:
        assert store.add([("node_ids", "n1"), ("node_ids", "n2")], "first") == 2
        assert store.add([("node_ids", "n1")], "second") == 0
        assert store.snapshot() == {"node_ids": {"n1": "first", "n2": "first"}}
        assert store.lift([("node_ids", "n1"), ("spiffe_ids", "spiffe://x/y")]) == 1
        assert store.snapshot() == {"node_ids": {"n2": "first"}}


def test_store_changes_are_seen_by_another_connection(tmp_path: Path) -> None:
    with RevocationStore(tmp_path / "r.db") as reader, RevocationStore(tmp_path / "r.db") as writer:
        reader.snapshot()
        assert not reader.changed()
        writer.add([("spiffe_ids", "spiffe://a/b")], "x")
        assert reader.changed()
        assert reader.snapshot() == {"spiffe_ids": {"spiffe://a/b": "x"}}
        assert not reader.changed()


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        ([], "no value"),
        ([("signer", "x")], "unknown revocation member 'signer'"),
        ([("node_ids", "")], "non-empty string"),
        ([("node_ids", 7)], "non-empty string"),
        ([("node_ids", "x" * 4097)], "at most 4096"),
        (["node_ids"], r"\(member, value\) pair"),
    ],
)
def test_bad_pairs_are_refused(pairs: list[Any], message: str) -> None:
    with pytest.raises(RevocationError, match=message):
        check_pairs(pairs)


def test_a_store_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    RevocationStore(path).close()
    with sqlite3.connect(path) as connection:
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(RevocationError, match="newer than"):
        RevocationStore(path)


def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    path.write_bytes(b"not sqlite" * 100)
    with pytest.raises(RevocationError, match="unusable"):
        RevocationStore(path)


def test_pdp_revoke_checks_its_arguments(example_config: dict[str, Any]) -> None:
    pdp = PolicyDecisionPoint.local(config=example_config)
    with pytest.raises(ValueError, match="at least one value"):
        pdp.revoke()
    with pytest.raises(TypeError, match="node_id value must be a non-empty string"):
        pdp.revoke(node_id="")
    with pytest.raises(TypeError, match="reason must be a string"):
        pdp.revoke(node_id="n", reason=None)  # type: ignore[arg-type]


def test_a_config_with_two_revoked_blocks_is_refused(tmp_path: Path) -> None:
    """A duplicate key silently kept the last block, dropping a revocation."""
    path = tmp_path / "config.json"
    path.write_text(
        '{"limits": {"max_evidence_age_seconds": 300, "clock_skew_seconds": 30,'
        ' "min_ttl_seconds": 60, "default_ttl_seconds": 900},'
        ' "revoked": {"node_ids": {"n1": "stolen"}}, "revoked": {}}'
    )
    with pytest.raises(ConfigError, match="duplicate"):
        load_config(path)


def test_cli_revoke_usage_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["revoke", "--store", str(tmp_path / "r.db")]) == 2
    assert "name at least one value" in capsys.readouterr().err
    (tmp_path / "bad.db").write_bytes(b"x" * 200)
    assert main(["revoke", "--store", str(tmp_path / "bad.db"), "--node-id", "n"]) == 2
    assert "unusable" in capsys.readouterr().err
    assert main(["revoke", "--store", str(tmp_path / "r.db"), "--key-id", "k", "--lift"]) == 0
    assert json.loads(capsys.readouterr().out)["lifted"] == 0


def test_serve_workers_share_the_store_and_a_restart_keeps_it(
    tmp_path: Path, claims: dict[str, Any]
) -> None:
    """`serve --workers 2 --revocations FILE`: `attestpolicy revoke` reaches every worker on
    its next decision, and a restarted server still denies."""
    import requests
    from serving import serve_cli

    store = tmp_path / "revocations.db"
    config = Path(__file__).resolve().parent.parent / "attestpolicy" / "examples" / "config.json"
    args = ("--workers", "2", "--config", str(config), "--revocations", str(store))
    path = "/v1/data/attestpolicy/v1/decision"

    def decisions(url: str, count: int) -> set[bool]:
        """``count`` decisions, each on a new connection, so both workers answer."""
        answers = (
            requests.post(url + path, json={"input": claims}, timeout=10).json()
            for _ in range(count)
        )
        return {answer["result"]["allow"] for answer in answers}

    with serve_cli(tmp_path, *args) as (_, url):
        assert decisions(url, 6) == {True}
        assert main(["revoke", "--store", str(store), "--node-id", claims["node"]["id"]]) == 0
        assert decisions(url, 12) == {False}
    with serve_cli(tmp_path, *args) as (_, url):
        assert decisions(url, 4) == {False}


def test_revoking_adds_to_the_engine_and_lifting_rebuilds_it(
    claims: dict[str, Any], example_config: dict[str, Any]
) -> None:
    """A revocation is merged into this thread's engine (no rebuild, no configuration
    copy: revoke() costs the revocation's size); a lift builds the engine anew."""
    from attestpolicy.engine._inprocess import InProcessEvaluator

    pdp = PolicyDecisionPoint.local(config=example_config, cache=False)
    evaluator = pdp._evaluator
    assert isinstance(evaluator, InProcessEvaluator)
    engine = evaluator._engine_for(evaluator._state)
    config_data = evaluator._state.data
    pdp.revoke(node_id="tpm-ek-other", reason="x")
    pdp.revoke(node_id=claims["node"]["id"], reason="stolen")
    assert pdp.decide(claims).reason_codes == ("node.revoked",)
    assert evaluator._engine_for(evaluator._state) is engine
    assert evaluator._state.data is config_data
    pdp.lift(node_id=claims["node"]["id"])
    assert pdp.decide(claims).allow
    assert evaluator._engine_for(evaluator._state) is not engine
