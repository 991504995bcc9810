"""PolicyDecisionPoint: validate claims, evaluate the policy, fail closed."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from attestpolicy.claims import ClaimSet, parse_timestamp
from attestpolicy.config import validate_config
from attestpolicy.decision import Decision
from attestpolicy.engine.base import Evaluator
from attestpolicy.engine.local import LocalEvaluator
from attestpolicy.errors import AttestPolicyError, ClaimsError
from attestpolicy.policy import PolicySource

__all__ = ["PolicyDecisionPoint"]


class PolicyDecisionPoint:
    """Decides whether a workload gets a credential, and for how long.

    Build one with :meth:`local` (in-process Rego), :meth:`from_bundle` (an OPA
    bundle, in-process) or :meth:`remote` (an OPA server), then call :meth:`decide`
    from any thread. ``decide`` never raises for bad claims or a failing engine: it
    returns a deny whose reason code says what went wrong.
    """

    def __init__(self, evaluator: Evaluator) -> None:
        self._evaluator = evaluator

    # --- construction --------------------------------------------------------

    @classmethod
    def local(
        cls,
        policy_dir: Path | str | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> PolicyDecisionPoint:
        """Evaluate in-process; ``policy_dir=None`` uses the policy shipped in the package.

        ``config`` is the document placed at ``data.attestpolicy.config``; without one
        every request is denied (no workload is registered).
        """
        source = PolicySource.from_directory(policy_dir)
        checked = validate_config(config) if config is not None else None
        return cls(LocalEvaluator(source, checked))

    @classmethod
    def from_bundle(
        cls,
        bundle: Path | str | bytes,
        *,
        config: Mapping[str, Any] | None = None,
        verification_key: bytes | str | None = None,
    ) -> PolicyDecisionPoint:
        """Evaluate in-process with the policy (and data) of an OPA bundle.

        ``bundle`` is a ``.tar.gz`` path, a bundle directory, or the archive bytes. With
        ``verification_key`` (PEM) the bundle must be signed by it. The policy bundle
        carries no configuration: pass ``config`` (``data.attestpolicy.config``).
        """
        from attestpolicy.bundle import load_bundle

        loaded = load_bundle(
            bundle,
            verification_key=verification_key,
            require_signature=verification_key is not None,
        )
        checked = validate_config(config) if config is not None else None
        return cls(LocalEvaluator(loaded.to_policy_source(), checked))

    @classmethod
    def remote(cls, url: str, **options: Any) -> PolicyDecisionPoint:
        """Evaluate on an OPA server (or ``attestpolicy serve``) at ``url``.

        ``options`` go to :class:`~attestpolicy.engine.remote.RemoteEvaluator`
        (``connect_timeout``, ``read_timeout``, ``token``, ``ca_bundle``, ``retries``).
        """
        from attestpolicy.engine.remote import RemoteEvaluator

        return cls(RemoteEvaluator(url, **options))

    # --- deciding -------------------------------------------------------------

    @property
    def revision(self) -> str:
        """The policy/configuration/engine revision decisions are made with."""
        return self._evaluator.revision

    def decide(
        self,
        claims: ClaimSet | Mapping[str, Any] | str | bytes,
        *,
        now: datetime | None = None,
    ) -> Decision:
        """Decide for one claim set (a ClaimSet, a mapping, or JSON text).

        ``now`` overrides the clock; otherwise the claim set's ``now`` is used, or the
        current UTC time when it has none.
        """
        evaluated_at = datetime.now(UTC)
        try:
            claim_set = ClaimSet.parse(claims)
            moment = parse_timestamp(now) if now is not None else claim_set.now or evaluated_at
            policy_input = claim_set.with_now(moment).to_input()
        except ClaimsError as exc:
            return self._deny(exc.code, str(exc), evaluated_at)
        except ValueError as exc:
            return self._deny("input.invalid", f"now: {exc}", evaluated_at)
        except Exception as exc:  # fail closed: never an uncaught crash in the request path
            return self._deny("input.invalid", f"claims could not be read: {exc}", evaluated_at)
        try:
            return self._evaluator.evaluate(policy_input, evaluated_at=evaluated_at)
        except AttestPolicyError as exc:
            return self._deny(exc.code, str(exc), evaluated_at)
        except Exception as exc:
            return self._deny("engine.error", f"evaluator failed: {exc}", evaluated_at)

    def _deny(self, code: str, message: str, evaluated_at: datetime) -> Decision:
        try:
            revision = self._evaluator.revision
        except Exception:
            revision = ""
        return Decision.deny(code, message, policy_revision=revision, evaluated_at=evaluated_at)

    # --- lifecycle ------------------------------------------------------------

    def close(self) -> None:
        """Release the evaluator's resources."""
        self._evaluator.close()

    def __enter__(self) -> PolicyDecisionPoint:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
