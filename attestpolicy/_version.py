"""What ``attestpolicy --version`` and ``attestpolicy version`` report.

The package's version, each in-process engine's (regorus from its wheel; OPA's release
read from the build information Go embeds in the bindings' shared library, or "not
installed"), and the revision of the shipped policy (the content hash every decision
carries in ``policy_revision``).
"""

from __future__ import annotations

import json
import mmap
import platform
import re
from importlib import metadata
from pathlib import Path
from typing import Any, Final

from attestpolicy._output import Format, table

__all__ = ["render_version", "version_info"]

_OPA_MODULE: Final = re.compile(rb"dep\tgithub\.com/open-policy-agent/opa\t(v[0-9][0-9A-Za-z.+-]*)")
_NOT_INSTALLED: Final = "not installed"


def _distribution(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _go_module_version(library: Path) -> str | None:
    """The OPA module version in a Go library's embedded build information."""
    try:
        with (
            library.open("rb") as file,
            mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data,
        ):
            match = _OPA_MODULE.search(data)
            return match.group(1).decode("ascii") if match else None
    except (OSError, ValueError):
        return None


def _opa_engine() -> dict[str, Any]:
    from attestpolicy.engine.opa import OPA_DISTRIBUTION, OPA_INSTALL_COMMAND, load_opa_bindings
    from attestpolicy.errors import EngineUnavailableError

    try:
        module = load_opa_bindings()
    except EngineUnavailableError:
        return {
            "installed": False,
            "version": None,
            "package": None,
            "install": OPA_INSTALL_COMMAND,
        }
    native = getattr(module, "_native", None)
    library = getattr(native, "_LIB_PATH", None)
    release = _go_module_version(Path(library)) if library is not None else None
    return {
        "installed": True,
        "version": release or "unknown",
        "package": f"{OPA_DISTRIBUTION} {_distribution(OPA_DISTRIBUTION) or 'unknown'}",
    }


def version_info() -> dict[str, Any]:
    """The versions, as a JSON-ready dict."""
    from attestpolicy.policy import PolicySource

    regorus = _distribution("gordon-to-regorus")
    return {
        "attestpolicy": _distribution("attestpolicy") or "unknown",
        "python": platform.python_version(),
        "engines": {
            "regorus": {
                "installed": regorus is not None,
                "version": regorus,
                "package": f"gordon-to-regorus {regorus}" if regorus else None,
            },
            "opa": _opa_engine(),
        },
        "policy_revision": PolicySource.from_directory().revision,
    }


def render_version(info: dict[str, Any], fmt: Format) -> str:
    """``version_info()`` as JSON, pretty text or a table."""
    if fmt == "json":
        return json.dumps(info, indent=2)
    engines = [
        (name, engine["version"], engine["package"])
        if engine["installed"]
        else (name, _NOT_INSTALLED, f"install it with: {engine.get('install') or 'pip'}")
        for name, engine in info["engines"].items()
    ]
    if fmt == "table":
        rows = [
            ("attestpolicy", info["attestpolicy"], f"python {info['python']}"),
            *((f"engine {name}", version, detail) for name, version, detail in engines),
            ("shipped policy", info["policy_revision"], ""),
        ]
        return table(("component", "version", "detail"), rows)
    lines = [f"attestpolicy {info['attestpolicy']} (python {info['python']})"]
    lines.extend(f"engine {name}: {version} ({detail})" for name, version, detail in engines)
    lines.append(f"shipped policy: {info['policy_revision']}")
    return "\n".join(lines)
