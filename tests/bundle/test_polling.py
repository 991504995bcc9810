"""Bundle polling and hot reload over real HTTP on 127.0.0.1, and the local watcher.

A real :class:`BundleServer` (behind a recorder that counts its requests) serves signed
bundles of the shipped policy (revision r1: the example claims are allowed) and of the
shipped policy plus a module that denies everything (r2: ``policy.frozen``), built with
keys made at test time.
"""

from __future__ import annotations

import functools
import random
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from bundle.bundle_fleet import (
    CLAIMS,
    CONFIG,
    FROZEN_CODE,
    build,
    bundle_server,
    frozen_policy_dir,
    replace_file,
    tamper,
    wait_for,
)
from bundle.helpers import REPO, pem
from cryptography.hazmat.primitives.asymmetric import rsa
from serving import BackgroundServer

from attestpolicy import BundleError, Decision, PolicyDecisionPoint
from attestpolicy.bundle import (
    BundleLimits,
    BundlePoller,
    BundleStatus,
    BundleWatcher,
    EvaluatorActivator,
    build_bundle,
    load_bundle,
    status_document,
)
from attestpolicy.bundle._polling import RETRY_BASE_DELAY, retry_delay
from attestpolicy.engine._inprocess import InProcessEvaluator, make_evaluator


@dataclass(frozen=True)
class Bundles:
    r1: bytes
    r2: bytes
    r1_unsigned: bytes
    r2_other_key: bytes
    public_pem: bytes


@pytest.fixture(scope="module")
def bundles(
    tmp_path_factory: pytest.TempPathFactory,
    rsa_key: rsa.RSAPrivateKey,
    other_rsa_key: rsa.RSAPrivateKey,
) -> Bundles:
    frozen = frozen_policy_dir(tmp_path_factory.mktemp("policies"))
    return Bundles(
        r1=build("r1", rsa_key),
        r2=build("r2", rsa_key, frozen_dir=frozen),
        r1_unsigned=build("r1", None),
        r2_other_key=build("r2", other_rsa_key, frozen_dir=frozen),
        public_pem=pem(rsa_key.public_key()),
    )


@pytest.fixture
def served(tmp_path: Path, bundles: Bundles) -> Path:
    """The served directory, holding r1 as attestpolicy.tar.gz."""
    directory = tmp_path / "served"
    directory.mkdir()
    (directory / "attestpolicy.tar.gz").write_bytes(bundles.r1)
    return directory


def _allowed_with(decision: Decision, revision: str) -> bool:
    return decision.allow and decision.policy_revision.startswith(f"{revision}+")


def _frozen_with(decision: Decision, revision: str) -> bool:
    return (
        not decision.allow
        and decision.reason_codes == (FROZEN_CODE,)
        and decision.policy_revision.startswith(f"{revision}+")
    )


class Activations:
    """An ``on_activation`` hook that records what it hears (Metrics.bundle_activation's
    signature)."""

    def __init__(self) -> None:
        self.seen: list[bool] = []

    def __call__(self, ok: bool) -> None:
        self.seen.append(ok)


Parts = tuple[EvaluatorActivator, Activations, list[BundlePoller]]


@contextmanager
def _parts(engine: str) -> Iterator[Parts]:
    activator = EvaluatorActivator(lambda source: make_evaluator(engine, source, CONFIG))
    pollers: list[BundlePoller] = []
    yield activator, Activations(), pollers
    for poller in pollers:
        poller.close()


@pytest.fixture
def poller_parts() -> Iterator[Parts]:
    """An activator (regorus), an activation recorder, and a list of pollers to close."""
    with _parts("regorus") as parts:
        yield parts


@pytest.fixture
def engine_parts(engine: str) -> Iterator[Parts]:
    """:func:`poller_parts` with each engine: for the tests where Rego decides."""
    with _parts(engine) as parts:
        yield parts


def _poller(
    parts: Parts,
    url: str,
    **options: Any,
) -> BundlePoller:
    activator, activations, pollers = parts
    poller = BundlePoller(url, on_bundle=activator, on_activation=activations, **options)
    pollers.append(poller)
    return poller


def _decide(evaluator: InProcessEvaluator) -> Decision:
    return PolicyDecisionPoint(evaluator, cache=None).decide(CLAIMS)


# --- a decision point polling a bundle server ----------------------------------------------


def test_hot_swap_is_seen_in_decisions_and_status(
    engine: str, served: Path, bundles: Bundles
) -> None:
    activations = Activations()
    with bundle_server(served) as (url, recorder):
        pdp = PolicyDecisionPoint.from_bundle(
            url=f"{url}/bundles/attestpolicy",
            verification_key=bundles.public_pem,
            config=CONFIG,
            engine=engine,
            poll_interval=0.05,
            on_activation=activations,
        )
        with pdp:
            first = pdp.decide(CLAIMS)
            assert _allowed_with(first, "r1"), first
            assert _allowed_with(pdp.decide(CLAIMS), "r1")
            stats = pdp.cache_stats()
            assert stats is not None
            assert stats.hits == 1
            status = pdp.bundle_status()
            assert status is not None
            assert status.active_revision == "r1"
            assert not status.failed
            activated_at = status.last_successful_activation
            wait_for(lambda: 304 in recorder.statuses())  # polled again: not modified

            replace_file(served / "attestpolicy.tar.gz", bundles.r2)
            wait_for(lambda: pdp.revision.startswith("r2+"))
            after = pdp.decide(CLAIMS)  # never the cached r1 allow
            assert _frozen_with(after, "r2"), after
            status = pdp.bundle_status()
            assert status is not None
            assert status.active_revision == "r2"
            assert status.last_successful_activation is not None
            assert activated_at is not None
            assert status.last_successful_activation > activated_at
            document = status_document([status])
            assert document["bundles"]["attestpolicy"]["active_revision"] == "r2"
            assert document["plugins"] == {"bundle": {"state": "OK"}}
            assert activations.seen == [True, True]
            # the bundle is fetched again only when it changed: the rest are 304s
            assert recorder.statuses().count(200) == 2
            assert set(recorder.statuses()) == {200, 304}
            assert recorder.statuses()[0] == 200
        assert not _bundle_threads()


def _bundle_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("attestpolicy-bundle-")]


def test_no_decision_mixes_revisions_while_bundles_swap(
    engine: str, served: Path, bundles: Bundles
) -> None:
    """Deciding threads race the swaps: every decision is wholly r1 (allow) or wholly r2
    (frozen deny), never a revision with the other's answer, with and without the cache."""
    with bundle_server(served) as (url, _):
        for cache in (True, False):
            pdp = PolicyDecisionPoint.from_bundle(
                url=f"{url}/bundles/attestpolicy",
                verification_key=bundles.public_pem,
                config=CONFIG,
                engine=engine,
                poll_interval=0.01,
                cache=cache,
            )
            with pdp:
                mixed, seen = _race_swaps(pdp, served / "attestpolicy.tar.gz", bundles)
            assert not mixed, mixed[:3]
            assert seen == {"r1", "r2"}


def _decides_with(pdp: PolicyDecisionPoint, revision: str) -> bool:
    return pdp.revision.startswith(f"{revision}+")


def _race_swaps(
    pdp: PolicyDecisionPoint, path: Path, bundles: Bundles
) -> tuple[list[Decision], set[str]]:
    """Decide on three threads while r2, r1, r2... are swapped in; the decisions that are
    neither an r1 allow nor an r2 frozen deny, and the revisions seen."""
    stop = threading.Event()
    mixed: list[Decision] = []
    seen: set[str] = set()

    def decide_until_stopped() -> None:
        while not stop.is_set():
            decision = pdp.decide(CLAIMS)
            seen.add(decision.policy_revision.split("+", 1)[0])
            if not (_allowed_with(decision, "r1") or _frozen_with(decision, "r2")):
                mixed.append(decision)

    threads = [threading.Thread(target=decide_until_stopped) for _ in range(3)]
    for thread in threads:
        thread.start()
    for revision, content in [("r2", bundles.r2), ("r1", bundles.r1)] * 2:
        replace_file(path, content)
        wait_for(functools.partial(_decides_with, pdp, revision))
    stop.set()
    for thread in threads:
        thread.join()
    return mixed, seen


def test_first_bundle_never_comes_from_bundle_raises(bundles: Bundles) -> None:
    """Fail closed: no decision point without a verified policy."""
    with BackgroundServer(_status_app(503)) as server:
        url = f"{server.url}/bundles/attestpolicy"
    with pytest.raises(BundleError) as raised:  # nothing listens there any more
        PolicyDecisionPoint.from_bundle(
            url=url, verification_key=bundles.public_pem, config=CONFIG, wait=0.5
        )
    assert raised.value.code == "bundle.unavailable"
    assert "no bundle activated from" in str(raised.value)
    assert "request failed" in str(raised.value)
    wait_for(lambda: not _bundle_threads())


def test_first_bundle_unsigned_or_tampered_is_never_activated(
    served: Path, bundles: Bundles
) -> None:
    for content, message in (
        (bundles.r1_unsigned, "a signature is required"),
        (tamper(bundles.r1), "digest mismatch"),
        (bundles.r2_other_key, "does not verify"),
    ):
        replace_file(served / "attestpolicy.tar.gz", content)
        with bundle_server(served) as (url, _), pytest.raises(BundleError) as raised:
            PolicyDecisionPoint.from_bundle(
                url=f"{url}/bundles/attestpolicy",
                verification_key=bundles.public_pem,
                config=CONFIG,
                poll_interval=0.05,
                wait=0.5,
            )
        assert raised.value.code == "bundle.unavailable"
        assert message in str(raised.value)


def test_from_bundle_arguments_are_checked(served: Path) -> None:
    url = "http://127.0.0.1:9/bundles/attestpolicy"
    cases: list[tuple[dict[str, Any], str]] = [
        ({}, "needs a bundle"),
        ({"bundle": served, "poll_interval": 1}, "need url= or watch=True"),
        ({"url": url, "bundle": served}, "not both"),
        ({"url": url, "poll_interval": 1, "min_delay": 1, "max_delay": 2}, "not both"),
        ({"url": url, "min_delay": 1}, "both min_delay and max_delay"),
        ({"url": url, "min_delay": 2, "max_delay": 1}, "max_delay must be >= min_delay"),
        ({"url": "ftp://host/x"}, "http or https"),
        ({"url": "http://user:pw@host/x"}, "must not carry credentials"),
        ({"url": url, "token": "a b\nc"}, "one line"),
        ({"bundle": served, "watch": True, "token": "t" * 20}, "apply to url="),
        ({"bundle": b"bytes", "watch": True}, "not both"),
        ({"url": url, "wait": -1}, "wait must be finite and >= 0"),
    ]
    for arguments, message in cases:
        with pytest.raises(ValueError, match=message):
            PolicyDecisionPoint.from_bundle(config=CONFIG, **arguments)
    assert not _bundle_threads()


# --- the poller, one attempt at a time ---------------------------------------------------


def test_tampered_bundle_is_refused_and_the_last_good_one_kept(
    engine: str,
    served: Path,
    bundles: Bundles,
    engine_parts: Parts,
) -> None:
    activator, activations, _ = engine_parts
    with bundle_server(served) as (url, _):
        poller = _poller(
            engine_parts, f"{url}/bundles/attestpolicy", verification_key=bundles.public_pem
        )
        assert poller.poll_once().active_revision == "r1"
        good = poller.status()

        replace_file(served / "attestpolicy.tar.gz", tamper(bundles.r2))
        status = poller.poll_once()
        assert status.active_revision == "r1"
        assert status.code == "bundle_error"
        assert "digest mismatch" in status.message
        assert [error["code"] for error in status.errors] == ["bundle.signature"]
        assert status.last_successful_activation == good.last_successful_activation
        # a bundle that does not verify is a failed request, as OPA counts it
        assert status.last_successful_request == good.last_successful_request
        assert status.last_successful_download == good.last_successful_download
        assert status.last_request is not None
        assert good.last_request is not None
        assert status.last_request > good.last_request
        assert _allowed_with(_decide(activator.evaluator), "r1")
        assert status.to_json()["code"] == "bundle_error"

        replace_file(served / "attestpolicy.tar.gz", bundles.r2)
        status = poller.poll_once()
        assert status.active_revision == "r2"
        assert not status.failed
        assert not status.errors
        assert _frozen_with(_decide(activator.evaluator), "r2")
        assert activations.seen == [True, False, True]


def test_unsigned_or_foreign_bundle_is_refused_when_a_key_is_configured(
    served: Path,
    bundles: Bundles,
    poller_parts: Parts,
) -> None:
    activator, activations, _ = poller_parts
    with bundle_server(served) as (url, _):
        poller = _poller(
            poller_parts, f"{url}/bundles/attestpolicy", verification_key=bundles.public_pem
        )
        poller.poll_once()
        for content, message in (
            (bundles.r1_unsigned, "has no .signatures.json but a signature is required"),
            (bundles.r2_other_key, "signature does not verify with the verification key"),
        ):
            replace_file(served / "attestpolicy.tar.gz", content)
            status = poller.poll_once()
            assert status.failed
            assert message in status.message, status.message
            assert status.active_revision == "r1"
            assert _allowed_with(_decide(activator.evaluator), "r1")
        assert activations.seen == [True, False, False]


def test_signed_bundle_without_a_key_is_refused(served: Path, poller_parts: Parts) -> None:
    with bundle_server(served) as (url, _):
        status = _poller(poller_parts, f"{url}/bundles/attestpolicy").poll_once()
    assert not status.active
    assert "bundle is signed (.signatures.json) but no verification key was given" in status.message


def test_unsigned_bundles_are_accepted_without_a_key(
    served: Path,
    bundles: Bundles,
    poller_parts: Parts,
) -> None:
    replace_file(served / "attestpolicy.tar.gz", bundles.r1_unsigned)
    with bundle_server(served) as (url, _):
        status = _poller(poller_parts, f"{url}/bundles/attestpolicy").poll_once()
    assert status.active_revision == "r1"
    assert not status.failed


def test_not_modified_is_answered_from_the_etag(
    served: Path,
    bundles: Bundles,
    poller_parts: Parts,
) -> None:
    _, activations, _ = poller_parts
    with bundle_server(served) as (url, recorder):
        poller = _poller(
            poller_parts, f"{url}/bundles/attestpolicy", verification_key=bundles.public_pem
        )
        first = poller.poll_once()
        for _ in range(3):
            status = poller.poll_once()
        assert recorder.statuses() == [200, 304, 304, 304]
        etag = recorder.hits[0].headers.get("if-none-match")
        assert etag is None  # nothing active yet: no validator sent
        sent = {hit.headers["if-none-match"] for hit in recorder.hits[1:]}
        assert len(sent) == 1
        assert sent.pop().startswith('"')
        assert status.last_successful_download == first.last_successful_download
        assert status.last_successful_activation == first.last_successful_activation
        assert status.last_successful_request is not None
        assert first.last_successful_request is not None
        assert status.last_successful_request > first.last_successful_request
        assert status.size == len(bundles.r1)
        assert activations.seen == [True]  # a 304 brings nothing new
        assert all(hit.headers["prefer"] == "modes=snapshot" for hit in recorder.hits)
        assert all("authorization" not in hit.headers for hit in recorder.hits)


def test_failed_bundle_is_fetched_again_with_the_active_etag(
    served: Path,
    bundles: Bundles,
    poller_parts: Parts,
) -> None:
    """As OPA: after a refused bundle the active bundle's ETag is sent again, so the bad
    bundle keeps being refused (and reported), and a revert to the good one is a 304."""
    with bundle_server(served) as (url, recorder):
        poller = _poller(
            poller_parts, f"{url}/bundles/attestpolicy", verification_key=bundles.public_pem
        )
        assert poller.poll_once().active_revision == "r1"
        replace_file(served / "attestpolicy.tar.gz", bundles.r1_unsigned)
        assert poller.poll_once().failed
        assert poller.poll_once().failed
        replace_file(served / "attestpolicy.tar.gz", bundles.r1)
        status = poller.poll_once()
        assert not status.failed
        assert status.active_revision == "r1"
        assert recorder.statuses() == [200, 200, 200, 304]
        sent = [hit.headers.get("if-none-match") for hit in recorder.hits[1:]]
        assert len(set(sent)) == 1


def test_the_same_content_again_is_not_activated_again(
    poller_parts: Parts,
    bundles: Bundles,
) -> None:
    """A server without ETags: every poll downloads, only a change activates."""
    _, activations, _ = poller_parts
    current = [bundles.r1]
    with BackgroundServer(_plain_app(current)) as server:
        poller = _poller(poller_parts, server.url, verification_key=bundles.public_pem)
        for _ in range(3):
            status = poller.poll_once()
        assert status.active_revision == "r1"
        assert not status.failed
        current[0] = bundles.r2
        assert poller.poll_once().active_revision == "r2"
    assert activations.seen == [True, True]


def test_a_reused_revision_with_new_content_is_activated_under_a_new_revision(
    served: Path,
    bundles: Bundles,
    rsa_key: rsa.RSAPrivateKey,
    tmp_path: Path,
    engine_parts: Parts,
) -> None:
    """Nothing cached under r1's old content can be served for its new content."""
    activator, _, _ = engine_parts
    frozen_r1 = build("r1", rsa_key, frozen_dir=frozen_policy_dir(tmp_path))
    with bundle_server(served) as (url, _):
        poller = _poller(
            engine_parts, f"{url}/bundles/attestpolicy", verification_key=bundles.public_pem
        )
        poller.poll_once()
        before = activator.evaluator.revision
        replace_file(served / "attestpolicy.tar.gz", frozen_r1)
        status = poller.poll_once()
    assert status.active_revision == "r1"  # the manifest's, as OPA reports it
    after = activator.evaluator.revision
    assert after.startswith("r1+sha256:")
    assert after != before
    assert _frozen_with(_decide(activator.evaluator), "r1")


@pytest.mark.usefixtures("requires_opa")
def test_bundle_that_does_not_compile_keeps_the_last_good_one(
    served: Path, rsa_key: rsa.RSAPrivateKey, bundles: Bundles, tmp_path: Path
) -> None:
    """OPA's compiler refuses an unsafe variable at activation: a failed activation (the
    bundle did download), reported with OPA's compile message and the error's code."""
    activator = EvaluatorActivator(lambda source: make_evaluator("opa", source, CONFIG))
    broken = tmp_path / "broken"
    (broken / "attestpolicy" / "v1").mkdir(parents=True)
    (broken / "attestpolicy" / "v1" / "d.rego").write_text(
        "package attestpolicy.v1\n\nimport rego.v1\n\nx if y > 1\n"
    )
    with bundle_server(served) as (url, _):
        poller = BundlePoller(
            f"{url}/bundles/attestpolicy",
            on_bundle=activator,
            verification_key=bundles.public_pem,
        )
        with poller:
            good = poller.poll_once()
            replace_file(
                served / "attestpolicy.tar.gz",
                build_bundle(broken, revision="r3", signing_key=rsa_key),
            )
            status = poller.poll_once()
    assert status.active_revision == "r1"
    assert status.message == "error(s) occurred while compiling module(s)"
    assert [error["code"] for error in status.errors] == ["policy.invalid"]
    assert "rego_unsafe_var_error" in status.errors[0]["message"]
    assert status.last_successful_download is not None
    assert good.last_successful_download is not None
    assert status.last_successful_download > good.last_successful_download
    assert status.last_successful_activation == good.last_successful_activation
    assert _allowed_with(_decide(activator.evaluator), "r1")


def test_http_failures_are_reported_with_their_code(
    served: Path,
    bundles: Bundles,
    poller_parts: Parts,
) -> None:
    with bundle_server(served) as (url, _):
        missing = _poller(poller_parts, f"{url}/bundles/elsewhere").poll_once()
        assert missing.http_code == 404
        assert missing.message == "server replied with Not Found"
        assert missing.to_json()["http_code"] == 404
        small = BundleLimits(max_bundle_bytes=1000)
        oversized = _poller(
            poller_parts,
            f"{url}/bundles/attestpolicy",
            verification_key=bundles.public_pem,
            limits=small,
        ).poll_once()
        assert "over the 1000 bytes accepted" in oversized.message
    with BackgroundServer(_status_app(302)) as server:
        moved = _poller(poller_parts, server.url).poll_once()
    assert moved.http_code == 302
    assert "redirects are not followed" in moved.message
    assert not (missing.active)
    assert not (oversized.active)
    assert not (moved.active)


def test_token_is_required_and_sent(
    served: Path,
    bundles: Bundles,
    poller_parts: Parts,
) -> None:
    token = "a-bundle-token-of-some-length"
    with bundle_server(served, token=token) as (url, recorder):
        bundle_url = f"{url}/bundles/attestpolicy"
        key = bundles.public_pem
        for given in (None, "the-wrong-token-entirely"):
            status = _poller(
                poller_parts, bundle_url, verification_key=key, token=given
            ).poll_once()
            assert status.http_code == 401
            assert status.message == "server replied with Unauthorized"
            assert token not in status.message
        status = _poller(poller_parts, bundle_url, verification_key=key, token=token).poll_once()
        assert status.active_revision == "r1"
        assert recorder.hits[-1].headers["authorization"] == f"Bearer {token}"
        assert "authorization" not in recorder.hits[0].headers


def test_server_down_keeps_the_last_good_bundle(
    served: Path,
    bundles: Bundles,
    engine_parts: Parts,
) -> None:
    activator, activations, _ = engine_parts
    with bundle_server(served) as (url, recorder):
        poller = _poller(
            engine_parts, f"{url}/bundles/attestpolicy", verification_key=bundles.public_pem
        )
        poller.poll_once()
        recorder.fail_with = 503
        status = poller.poll_once()
        assert status.http_code == 503
        assert status.active_revision == "r1"
    status = poller.poll_once()  # nothing listens any more
    assert status.failed
    assert status.http_code is None
    assert status.message.startswith("request failed: ")
    assert status.active_revision == "r1"
    assert _allowed_with(_decide(activator.evaluator), "r1")
    assert activations.seen == [True, False, False]


def test_background_polling_backs_off_and_recovers(
    served: Path,
    bundles: Bundles,
    poller_parts: Parts,
) -> None:
    """While the server fails the poller keeps retrying (backing off, never longer than
    max_delay); once it answers again, the new bundle is activated."""
    with bundle_server(served) as (url, recorder):
        recorder.fail_with = 503
        poller = _poller(
            poller_parts,
            f"{url}/bundles/attestpolicy",
            verification_key=bundles.public_pem,
            min_delay=0.2,
            max_delay=0.3,
        )
        poller.start()
        wait_for(lambda: len(recorder.hits) >= 6)
        assert not poller.status().active
        assert poller.status().http_code == 503
        recorder.fail_with = None
        assert poller.wait_active(20)
        assert poller.status().active_revision == "r1"
        replace_file(served / "attestpolicy.tar.gz", bundles.r2)
        wait_for(lambda: poller.status().active_revision == "r2")
        poller.close()
        hits = len(recorder.hits)
        assert not _bundle_threads()
    assert len(recorder.hits) == hits  # closed: no more requests


def test_retry_delay_follows_opa_and_is_bounded() -> None:
    """OPA's util.DefaultBackoff(0.1 s, max_delay, retries): none after the first
    failure, then 0.1 * 1.6^n with +-20 % jitter, here never above max_delay."""
    middle = retry_delay(2, 60, uniform=lambda: 0.5)
    assert retry_delay(1, 60, uniform=lambda: 0.5) == 0
    assert middle == pytest.approx(RETRY_BASE_DELAY * 1.6)
    assert retry_delay(3, 60, uniform=lambda: 0.5) == pytest.approx(RETRY_BASE_DELAY * 1.6**2)
    assert retry_delay(2, 60, uniform=lambda: 0.0) == pytest.approx(middle * 0.8)
    assert retry_delay(2, 60, uniform=lambda: 1.0) == pytest.approx(middle * 1.2)
    rng = random.Random(7)
    for failures in range(1, 200):
        for max_delay in (0.05, 1.0, 120.0):
            delay = retry_delay(failures, max_delay, uniform=rng.random)
            assert 0 <= delay <= max_delay
    assert retry_delay(100, 120, uniform=lambda: 0.5) == 120
    assert retry_delay(100, 120, uniform=lambda: 0.0) == pytest.approx(96)


# --- the local watcher --------------------------------------------------------------------


def test_watcher_reloads_a_directory_bundle(engine: str, tmp_path: Path) -> None:
    policy = tmp_path / "bundle"
    _copy_policy(policy, revision="w1")
    activator = EvaluatorActivator(lambda source: make_evaluator(engine, source, CONFIG))
    activations = Activations()
    with BundleWatcher(policy, on_bundle=activator, on_activation=activations) as watcher:
        assert watcher.poll_once().active_revision == "w1"
        assert _allowed_with(_decide(activator.evaluator), "w1")
        before = watcher.status()
        assert watcher.poll_once() == before  # unchanged: no attempt at all

        module = policy / "attestpolicy" / "v1" / "freeze.rego"
        module.write_text("package attestpolicy.v1\n\nbroken if {\n")
        status = watcher.poll_once()
        assert status.failed
        assert "invalid Rego" in status.message
        assert status.active_revision == "w1"
        assert _allowed_with(_decide(activator.evaluator), "w1")
        assert watcher.poll_once() == status  # reported once, until the path changes

        module.write_text((frozen_policy_dir(tmp_path) / "attestpolicy/v1/freeze.rego").read_text())
        _write_manifest(policy, "w2")
        assert watcher.poll_once().active_revision == "w2"
        assert _frozen_with(_decide(activator.evaluator), "w2")
    assert activations.seen == [True, False, True]


def test_watched_bundle_file_in_a_decision_point(
    engine: str, tmp_path: Path, bundles: Bundles
) -> None:
    path = tmp_path / "attestpolicy.tar.gz"
    path.write_bytes(bundles.r1)
    with PolicyDecisionPoint.from_bundle(
        path,
        watch=True,
        poll_interval=0.05,
        verification_key=bundles.public_pem,
        config=CONFIG,
        engine=engine,
    ) as pdp:
        assert _allowed_with(pdp.decide(CLAIMS), "r1")
        replace_file(path, tamper(bundles.r2))
        wait_for(lambda: _failed(pdp.bundle_status()))
        assert _allowed_with(pdp.decide(CLAIMS), "r1")
        replace_file(path, bundles.r2)
        wait_for(lambda: pdp.revision.startswith("r2+"))
        assert _frozen_with(pdp.decide(CLAIMS), "r2")
        status = pdp.bundle_status()
        assert status is not None
        assert status.size == len(bundles.r2)


def _failed(status: BundleStatus | None) -> bool:
    return status is not None and status.failed


def test_watcher_waits_for_a_missing_path_and_refuses_unsigned(
    tmp_path: Path, bundles: Bundles
) -> None:
    path = tmp_path / "later.tar.gz"
    activator = EvaluatorActivator(lambda source: make_evaluator("regorus", source, CONFIG))
    with BundleWatcher(path, on_bundle=activator, verification_key=bundles.public_pem) as watcher:
        status = watcher.poll_once()
        assert status.failed
        assert status.message == f"bundle not found: {path}"
        path.write_bytes(bundles.r1_unsigned)
        status = watcher.poll_once()
        assert status.failed
        assert "a signature is required" in status.message
        replace_file(path, bundles.r1)
        assert watcher.poll_once().active_revision == "r1"
        path.unlink()
        status = watcher.poll_once()
        assert status.failed
        assert status.active_revision == "r1"
    with pytest.raises(BundleError) as raised:
        PolicyDecisionPoint.from_bundle(path, watch=True, wait=0.3, config=CONFIG)
    assert raised.value.code == "bundle.unavailable"
    assert "bundle not found" in str(raised.value)


def test_watcher_and_poller_check_their_arguments(tmp_path: Path) -> None:
    def activate(loaded: object) -> None:
        pass

    with pytest.raises(ValueError, match="interval must be > 0"):
        BundleWatcher(tmp_path, on_bundle=activate, interval=0)
    with pytest.raises(TypeError, match="on_bundle must be callable"):
        BundleWatcher(tmp_path, on_bundle=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_delay must be > 0"):
        BundlePoller("http://127.0.0.1:9/b", on_bundle=activate, min_delay=0, max_delay=0)
    with pytest.raises(BundleError, match="verification key"):
        BundlePoller("http://127.0.0.1:9/b", on_bundle=activate, verification_key=b"not a key")
    watcher = BundleWatcher(tmp_path, on_bundle=activate)
    watcher.start()
    with pytest.raises(RuntimeError, match="starts once"):
        watcher.start()
    watcher.close()
    watcher.close()


def test_activator_before_any_bundle() -> None:
    activator = EvaluatorActivator(lambda source: make_evaluator("regorus", source, CONFIG))
    with pytest.raises(BundleError, match="no bundle has been activated yet"):
        _ = activator.evaluator
    activator(load_bundle(build_bundle(REPO / "rego", revision="a1")))
    assert activator.evaluator.revision.startswith("a1+")


# --- helpers -------------------------------------------------------------------------------


def _copy_policy(target: Path, revision: str) -> None:
    shutil.copytree(REPO / "rego", target, ignore=shutil.ignore_patterns("*_test.rego"))
    _write_manifest(target, revision)


def _write_manifest(directory: Path, revision: str) -> None:
    manifest = f'{{"revision": "{revision}", "roots": ["attestpolicy/v1"]}}'
    (directory / ".manifest").write_text(manifest)


def _status_app(status: int) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        headers = [(b"location", b"http://127.0.0.1:9/elsewhere")] if status == 302 else []
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    return app


def _plain_app(current: list[bytes]) -> Any:
    """Answers ``current[0]`` to every GET, without an ETag."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = current[0]
        headers = [(b"content-type", b"application/gzip")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app
