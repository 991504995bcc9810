"""The resource limits of ``attestpolicy serve``: one frozen value, its flags, its encoding.

Every limit applies per worker process (``--workers N`` multiplies them). They are listed
with their defaults in ``docs/server.md``; the command-line flags are made from the fields
here, so a limit, its default and its flag cannot drift apart.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any, Final

from attestpolicy.errors import AttestPolicyError

__all__ = [
    "MAX_BODY_BYTES",
    "ServerLimits",
    "ServerSettingsError",
    "add_limit_arguments",
    "limits_from_arguments",
]

MAX_BODY_BYTES: Final = 2 * 1024 * 1024
"""Largest accepted request body (2 MiB): twice the largest claim set."""


class ServerSettingsError(AttestPolicyError, ValueError):
    """``serve`` was given an unusable address, worker count or limit."""

    code = "serve.invalid"


def _limit(default: float, help_text: str, *, seconds: bool = False, zero: bool = False) -> Any:
    metadata = {"help": help_text, "seconds": seconds, "zero": zero}
    return field(default=default, metadata=metadata)


@dataclass(frozen=True, kw_only=True)
class ServerLimits:
    """How much one worker process accepts, and for how long it waits.

    A request over a limit gets OPA's error document at once (never a queue without
    bound); which status each limit answers is in ``docs/server.md``.
    """

    max_connections: int = _limit(
        256, "open connections; past it a request is answered 503 and its connection closed"
    )
    header_timeout: int = _limit(
        5,
        "seconds a connection may take to send a request's headers, from when it opens or "
        "from the previous answer; then it is closed (also the keep-alive time)",
        seconds=True,
    )
    body_timeout: float = _limit(
        5.0, "seconds to receive a whole request body once its headers are in (408)", seconds=True
    )
    max_body_bytes: int = _limit(MAX_BODY_BYTES, "largest request body (413)")
    large_body_bytes: int = _limit(
        64 * 1024, "bodies larger than this are large requests: see max_large_requests"
    )
    max_large_requests: int = _limit(
        1,
        "large requests at once, from reading the body to the end of the evaluation, each on "
        "its own thread; past it 503",
    )
    max_input_values: int = _limit(
        10_000,
        "JSON values (objects, arrays, scalars) in one input; more is refused (400): "
        "a claim set has at most about 6,500",
    )
    max_input_string_chars: int = _limit(
        65_536,
        "longest string (or object key) in one input; longer is refused (400): a claim "
        "set's longest is 4,096",
    )
    eval_threads: int = _limit(
        1,
        "threads evaluating the other (small) requests; regorus holds the GIL while it "
        "evaluates, so more add no throughput (OPA's engine releases it); 0 evaluates them "
        "on the event loop, without a thread",
        zero=True,
    )
    max_evaluations: int = _limit(
        64, "small requests admitted at once, evaluating or waiting for a thread; past it 503"
    )
    eval_timeout: float = _limit(
        1.0,
        "seconds from a complete request to its answer; past it 503 (the evaluation itself "
        "runs to its end on its thread and keeps its place until then)",
        seconds=True,
    )

    shutdown_timeout: float = _limit(
        30.0,
        "seconds a stopping worker (SIGTERM, SIGINT) waits for requests in progress to be "
        "answered before it closes their connections",
        seconds=True,
    )

    def __post_init__(self) -> None:
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ServerSettingsError(f"{item.name} must be a number, got {value!r}")
            if item.type == "int" and not isinstance(value, int):
                raise ServerSettingsError(f"{item.name} must be an integer, got {value!r}")
            if item.metadata["zero"] and value == 0:
                continue
            if not (math.isfinite(value) and value > 0):
                raise ServerSettingsError(f"{item.name} must be positive, got {value!r}")

    def to_json(self) -> str:
        """The limits as a JSON object (how ``run_server`` hands them to its workers)."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ServerLimits:
        """The limits :meth:`to_json` wrote; ServerSettingsError if they are not that."""
        try:
            values = json.loads(text)
        except ValueError as exc:
            raise ServerSettingsError(f"server limits are not JSON: {exc}") from None
        if not isinstance(values, dict):
            raise ServerSettingsError("server limits must be a JSON object")
        try:
            return cls(**values)
        except TypeError as exc:  # an unknown or missing name
            raise ServerSettingsError(f"unusable server limits: {exc}") from None


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_limit_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per limit (``--max-connections``, ...), defaulting to the limit's default."""
    group = parser.add_argument_group("limits (per worker process)")
    for item in dataclasses.fields(ServerLimits):
        seconds = item.metadata["seconds"]
        group.add_argument(
            _flag(item.name),
            dest=f"limit_{item.name}",
            type=int if item.type == "int" else float,
            default=item.default,
            metavar="S" if seconds else "N",
            help=f"{item.metadata['help']} (default {item.default})",
        )


def limits_from_arguments(args: argparse.Namespace) -> ServerLimits:
    """The limits given by :func:`add_limit_arguments`' flags (ServerSettingsError if unusable)."""
    return ServerLimits(
        **{
            item.name: getattr(args, f"limit_{item.name}")
            for item in dataclasses.fields(ServerLimits)
        }
    )
