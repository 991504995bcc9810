"""The public API is exactly what __all__ says, sorted, and nothing private leaks."""

import attestpolicy


def test_all_is_sorted_and_exact() -> None:
    assert attestpolicy.__all__ == sorted(attestpolicy.__all__)
    assert set(attestpolicy.__all__) == {
        "AttestPolicyError",
        "BundleError",
        "ClaimSet",
        "ClaimsError",
        "ConfigError",
        "Decision",
        "EvaluatorError",
        "EvidenceError",
        "EvidenceReport",
        "Image",
        "ImageSignature",
        "Node",
        "PolicyDecisionPoint",
        "PolicyError",
        "Provenance",
        "Reason",
        "Request",
        "Runtime",
        "Subject",
        "TtlTerm",
        "__version__",
        "verify_evidence",
        "verify_evidence_report",
    }


def test_every_name_in_all_exists() -> None:
    for name in attestpolicy.__all__:
        assert getattr(attestpolicy, name) is not None


def test_public_names_not_in_all_are_modules_only() -> None:
    import types

    extra = {
        name
        for name in dir(attestpolicy)
        if not name.startswith("_") and name not in attestpolicy.__all__
    }
    assert all(isinstance(getattr(attestpolicy, name), types.ModuleType) for name in extra)


def test_error_tree_branches_by_fault() -> None:
    from attestpolicy import errors

    assert issubclass(errors.ClaimsError, errors.EvidenceError)
    assert issubclass(errors.BundleError, errors.PolicyError)
    assert issubclass(errors.ConfigError, errors.PolicyError)
    for branch in (errors.EvidenceError, errors.PolicyError, errors.EvaluatorError):
        assert issubclass(branch, errors.AttestPolicyError)
    assert errors.ClaimsError("x").code == "input.invalid"
    assert errors.EvaluatorError("x", code="remote.error").code == "remote.error"


def test_import_is_light_and_the_evidence_api_loads_on_first_use() -> None:
    import subprocess
    import sys

    code = (
        "import sys, attestpolicy\n"
        "before = 'sigstore' in sys.modules\n"
        "from attestpolicy import verify_evidence, EvidenceReport\n"
        "print(before, 'sigstore' in sys.modules, verify_evidence.__module__)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.split() == ["False", "True", "attestpolicy.evidence.verify"]


def test_unknown_attribute_is_an_attribute_error() -> None:
    import pytest

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        attestpolicy.nope  # noqa: B018
