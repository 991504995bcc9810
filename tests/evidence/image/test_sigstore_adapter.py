"""The private sigstore-python names the adapter relies on are still there, as it uses them.

Each failure names the private name that moved and the pin: sigstore, the adapter
(attestpolicy/evidence/image/_sigstore_adapter.py) and the pin in pyproject.toml are
upgraded together.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from sigstore.models import Bundle
from sigstore.verify import Verifier

from attestpolicy.evidence.image import _sigstore_adapter
from attestpolicy.evidence.image._sigstore_adapter import SIGSTORE_VERSION, RecordingVerifier

PYPROJECT = Path(__file__).resolve().parents[3] / "pyproject.toml"
ADAPTER = "attestpolicy/evidence/image/_sigstore_adapter.py"


def moved(name: str, detail: str) -> str:
    return (
        f"sigstore's private {name} {detail} (installed sigstore {metadata.version('sigstore')},"
        f" adapter written for the pin sigstore=={SIGSTORE_VERSION}): update {ADAPTER} and the"
        " pin in pyproject.toml together"
    )


def test_sigstore_is_pinned_to_the_version_the_adapter_was_written_for() -> None:
    dependencies = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    pins = [spec for spec in dependencies if re.match(r"sigstore\s*[=<>!~]", spec)]
    assert pins == [f"sigstore=={SIGSTORE_VERSION}"], (
        f"pyproject.toml must pin sigstore=={SIGSTORE_VERSION} exactly (the version {ADAPTER} "
        f"uses private API of), not {pins}"
    )
    assert metadata.version("sigstore") == SIGSTORE_VERSION, moved(
        "API", "may have moved: another sigstore release is installed"
    )


def test_timestamp_source_has_the_two_members_the_adapter_maps() -> None:
    try:
        from sigstore._internal.timestamp import TimestampSource
    except ImportError as exc:
        pytest.fail(moved("sigstore._internal.timestamp.TimestampSource", f"is gone: {exc}"))
    members = {member.name for member in TimestampSource}
    assert members == {"TIMESTAMP_AUTHORITY", "TRANSPARENCY_SERVICE"}, moved(
        "TimestampSource", f"has members {sorted(members)}"
    )
    assert set(_sigstore_adapter._SOURCES) == set(TimestampSource)


def test_timestamp_verification_result_has_source_and_time() -> None:
    try:
        from sigstore._internal.timestamp import TimestampVerificationResult
    except ImportError as exc:
        pytest.fail(
            moved("sigstore._internal.timestamp.TimestampVerificationResult", f"is gone: {exc}")
        )
    assert dataclasses.is_dataclass(TimestampVerificationResult), moved(
        "TimestampVerificationResult", "is no longer a dataclass"
    )
    fields = [field.name for field in dataclasses.fields(TimestampVerificationResult)]
    assert fields == ["source", "time"], moved(
        "TimestampVerificationResult", f"has the fields {fields}"
    )


def _parameters(function: object) -> list[tuple[str, inspect._ParameterKind]]:
    assert callable(function)
    return [(p.name, p.kind) for p in inspect.signature(function).parameters.values()]


def test_verifier_establish_time_is_the_method_the_adapter_overrides() -> None:
    original = getattr(Verifier, "_establish_time", None)
    assert original is not None, moved("Verifier._establish_time", "is gone")
    expected = [
        ("self", inspect.Parameter.POSITIONAL_OR_KEYWORD),
        ("bundle", inspect.Parameter.POSITIONAL_OR_KEYWORD),
    ]
    assert _parameters(original) == expected, moved(
        "Verifier._establish_time", f"has the signature {inspect.signature(original)}"
    )
    assert _parameters(RecordingVerifier._establish_time) == expected
    source = inspect.getsource(Verifier)
    assert "self._establish_time(bundle)" in source, moved(
        "Verifier._establish_time", "is no longer called by the Verifier"
    )


def test_bundle_dsse_envelope_is_a_property() -> None:
    attribute = inspect.getattr_static(Bundle, "_dsse_envelope", None)
    assert isinstance(attribute, property), moved(
        "Bundle._dsse_envelope", f"is {attribute!r}, not a property"
    )
