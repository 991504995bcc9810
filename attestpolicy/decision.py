"""Decision and Reason: what a policy evaluation returns to the caller."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Final

from pydantic import Field, PlainSerializer, model_validator

from attestpolicy._model import FrozenModel
from attestpolicy.claims import format_timestamp, parse_timestamp

__all__ = ["Decision", "Reason", "TtlTerm", "decision_from_policy_result"]

_Timestamp = Annotated[
    datetime, PlainSerializer(format_timestamp, return_type=str, when_used="json")
]


class Reason(FrozenModel):
    """Why a request was denied: a stable ``code`` and a human ``message``."""

    code: str
    message: str


class TtlTerm(FrozenModel):
    """One term of an allow's TTL, as the policy states it: a fixed term has
    ``seconds``, a term that shrinks as time passes has ``until`` (the instant it
    reaches zero, so its value at ``now`` is the whole seconds until then)."""

    name: str
    seconds: int | None = None
    until: _Timestamp | None = None

    @model_validator(mode="after")
    def _one_of_seconds_or_until(self) -> TtlTerm:
        if (self.seconds is None) == (self.until is None):
            raise ValueError("a TTL term has either seconds or until")
        return self


class Decision(FrozenModel):
    """The answer to one ``decide()`` call.

    ``ttl_seconds`` is 0 on a deny; ``ttl_bound_by`` and ``valid_until`` are only set on
    an allow. ``reasons`` is empty on an allow. ``decision_id`` is unique per call.

    An allow also carries what the policy says it rests on: ``ttl_terms`` (in tie-break
    order: the TTL is the shortest, the first on a tie) and ``revocable``, the
    ``(config.revoked member, value)`` pairs it depends on; revoking any of them voids
    it. Both are None when the policy did not say (an older policy on a remote server):
    such an allow is never cached.
    """

    allow: bool
    ttl_seconds: int = Field(ge=0)
    reasons: tuple[Reason, ...] = ()
    ttl_bound_by: str | None = None
    valid_until: _Timestamp | None = None
    decision_id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    evaluated_at: _Timestamp = Field(default_factory=lambda: datetime.now(UTC))
    policy_revision: str = ""
    ttl_terms: tuple[TtlTerm, ...] | None = ()
    revocable: tuple[tuple[str, str], ...] | None = ()

    @classmethod
    def deny(
        cls,
        code: str,
        message: str,
        *,
        policy_revision: str = "",
        evaluated_at: datetime | None = None,
    ) -> Decision:
        """A fail-closed deny with one reason."""
        return cls(
            allow=False,
            ttl_seconds=0,
            reasons=(Reason(code=code, message=message),),
            policy_revision=policy_revision,
            evaluated_at=evaluated_at or datetime.now(UTC),
        )

    @property
    def reason_codes(self) -> tuple[str, ...]:
        """The reason codes, in order."""
        return tuple(reason.code for reason in self.reasons)

    def to_json_dict(self) -> dict[str, Any]:
        """The decision as a JSON-ready dict (timestamps as RFC 3339 UTC)."""
        return self.model_dump(mode="json")


def decision_from_policy_result(
    result: object, *, policy_revision: str, evaluated_at: datetime
) -> Decision:
    """Turn the raw value of ``data.attestpolicy.v1.decision`` into a Decision.

    Anything that is not a well-formed decision object becomes a fail-closed deny:
    ``engine.undefined`` for no value, ``engine.error`` for a malformed one. An allow
    is only returned when every field is present and well typed.
    """
    if result is None:
        return Decision.deny(
            "engine.undefined",
            "the policy produced no decision (data.attestpolicy.v1.decision is undefined)",
            policy_revision=policy_revision,
            evaluated_at=evaluated_at,
        )
    try:
        return _parse_result(result, policy_revision, evaluated_at)
    except (TypeError, ValueError, KeyError) as exc:
        return Decision.deny(
            "engine.error",
            f"malformed decision from policy: {exc}",
            policy_revision=policy_revision,
            evaluated_at=evaluated_at,
        )


MAX_TTL_SECONDS: Final = 2_147_483_647
"""The largest TTL (and TTL term) a decision may carry: the policy's limit on seconds."""

_REQUIRED_FIELDS: Final = frozenset(
    {"allow", "ttl_seconds", "reasons", "ttl_bound_by", "valid_until"}
)
_OPTIONAL_FIELDS: Final = frozenset({"ttl_terms", "revocable"})  # absent in older policies


def _parse_result(result: object, policy_revision: str, evaluated_at: datetime) -> Decision:
    if not isinstance(result, Mapping):
        raise TypeError(f"decision must be an object, got {type(result).__name__}")
    missing = _REQUIRED_FIELDS - result.keys()
    if missing:
        raise ValueError(f"decision lacks {', '.join(sorted(missing))}")
    unknown = result.keys() - _REQUIRED_FIELDS - _OPTIONAL_FIELDS
    if unknown:
        raise ValueError(f"decision has unknown fields {', '.join(sorted(map(str, unknown)))}")
    allow = result["allow"]
    if allow is not True and allow is not False:
        raise TypeError("decision.allow must be a boolean")
    raw_reasons = result["reasons"]
    if not isinstance(raw_reasons, list):
        raise TypeError("decision.reasons must be an array")
    reasons = []
    for item in raw_reasons:
        if not isinstance(item, Mapping) or set(item) != {"code", "message"}:
            raise TypeError("each reason must be an object with code and message only")
        code, message = item["code"], item["message"]
        if not isinstance(code, str) or not isinstance(message, str) or not code:
            raise TypeError("each reason needs a non-empty string code and a string message")
        reasons.append(Reason(code=code, message=message))
    reasons.sort(key=lambda reason: (reason.code, reason.message))
    ttl = _whole_number(result["ttl_seconds"], "ttl_seconds")
    bound_by, raw_valid_until = result["ttl_bound_by"], result["valid_until"]
    if not allow:
        if ttl != 0 or bound_by is not None or raw_valid_until is not None:
            raise ValueError("a deny has ttl_seconds 0, and no ttl_bound_by or valid_until")
        if result.get("ttl_terms") or result.get("revocable"):
            raise ValueError("a deny has no ttl_terms or revocable")
        if not reasons:
            reasons.append(Reason(code="policy.deny", message="the policy denied without a reason"))
        return Decision(
            allow=False,
            ttl_seconds=0,
            reasons=tuple(reasons),
            policy_revision=policy_revision,
            evaluated_at=evaluated_at,
        )
    if reasons:
        raise ValueError("an allow must not carry reasons")
    if ttl <= 0:
        raise ValueError("an allow needs a positive integer ttl_seconds")
    if not isinstance(bound_by, str):
        raise TypeError("decision.ttl_bound_by must be a string")
    valid_until = None if raw_valid_until is None else parse_timestamp(raw_valid_until)
    terms = _ttl_terms(result.get("ttl_terms"))
    if terms is not None:
        _check_ttl_against_terms(ttl, bound_by, terms)
    return Decision(
        allow=True,
        ttl_seconds=ttl,
        ttl_bound_by=bound_by,
        valid_until=valid_until,
        policy_revision=policy_revision,
        evaluated_at=evaluated_at,
        ttl_terms=terms,
        revocable=_revocable(result.get("revocable")),
    )


def _check_ttl_against_terms(ttl: int, bound_by: str, terms: tuple[TtlTerm, ...]) -> None:
    """The TTL is the shortest term: at most every fixed term, and equal to the bounding
    term's seconds when that term is fixed (a shrinking one depends on the input's now)."""
    bounding = [term for term in terms if term.name == bound_by]
    if not bounding:
        raise ValueError(f"ttl_bound_by {bound_by!r} names no term in ttl_terms")
    fixed = [term.seconds for term in terms if term.seconds is not None]
    if fixed and ttl > min(fixed):
        raise ValueError("ttl_seconds exceeds a fixed term of ttl_terms")
    if bounding[0].seconds is not None and bounding[0].seconds != ttl:
        raise ValueError("ttl_seconds is not the seconds of the term that bounds it")


def _whole_number(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise ValueError(f"decision.{name} must be an integer")
    number = int(value)
    if not -MAX_TTL_SECONDS <= number <= MAX_TTL_SECONDS:
        raise ValueError(f"decision.{name} is out of range (at most {MAX_TTL_SECONDS})")
    return number


def _ttl_terms(raw: object) -> tuple[TtlTerm, ...] | None:
    """The allow's TTL terms; None when the policy gives none (not cacheable)."""
    if raw is None:
        return None
    if not isinstance(raw, list | tuple) or not raw:
        raise TypeError("decision.ttl_terms must be a non-empty array")
    terms = []
    for item in raw:
        if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
            raise TypeError("each TTL term must be an object with a string name")
        seconds, until = item.get("seconds"), item.get("until")
        terms.append(
            TtlTerm(
                name=item["name"],
                seconds=None if seconds is None else _whole_number(seconds, "ttl_terms.seconds"),
                until=None if until is None else parse_timestamp(until),
            )
        )
    return tuple(terms)


def _revocable(raw: object) -> tuple[tuple[str, str], ...] | None:
    """The allow's revocable (member, value) pairs; None when the policy gives none."""
    if raw is None:
        return None
    if not isinstance(raw, list | tuple):
        raise TypeError("decision.revocable must be an array")
    pairs = []
    for item in raw:
        if (
            not isinstance(item, list | tuple)
            or len(item) != 2
            or not all(isinstance(part, str) for part in item)
        ):
            raise TypeError("each revocable entry must be a [member, value] pair of strings")
        pairs.append((item[0], item[1]))
    return tuple(sorted(set(pairs)))
