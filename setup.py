"""Build script: the optional compiled decision cache and the shipped policy; metadata is
in pyproject.toml.

``attestpolicy.engine._cache_ext`` is built from its ``.pyx`` by Cython (a build
requirement) and a C compiler. When either is missing, or the build fails, the install
still succeeds with a warning and ``attestpolicy.engine.cache`` uses its pure-Python twin.

The policy's source is ``rego/`` at the top of the repository; a built wheel carries a copy
as package data (``attestpolicy/rego``), written by :class:`BuildPyWithPolicy`. An editable
install reads ``rego/`` in place (``attestpolicy.policy.default_policy_dir``).
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

from setuptools import Extension, setup  # type: ignore[import-untyped]
from setuptools.command.build_ext import build_ext  # type: ignore[import-untyped]
from setuptools.command.build_py import build_py  # type: ignore[import-untyped]

_EXTENSION = "attestpolicy.engine._cache_ext"


class OptionalBuildExt(build_ext):  # type: ignore[misc]
    """build_ext that turns a failed build of the optional extension into a warning."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # any failure here must only skip the optional extension
            self._skip(exc)

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:  # compiler missing, Cython missing, compile or link error
            self._skip(exc)

    def _skip(self, exc: Exception) -> None:
        warnings.warn(
            f"could not build the optional extension {_EXTENSION} ({exc}); attestpolicy "
            "will use the pure-Python decision cache (slower)",
            RuntimeWarning,
            stacklevel=1,
        )
        self.extensions: list[Extension] = []


class BuildPyWithPolicy(build_py):  # type: ignore[misc]
    """build_py that also copies the policy (``rego/**/*.rego``) into the built package."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads rego/ in place
        source = Path(__file__).resolve().parent / "rego"
        if not source.is_dir():  # building from an sdist without it: refuse, never ship none
            raise RuntimeError(f"the policy source {source} is missing")
        target = Path(self.build_lib) / "attestpolicy" / "rego"
        shutil.rmtree(target, ignore_errors=True)
        for path in sorted(source.rglob("*.rego")):
            destination = target / path.relative_to(source)
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, destination)


setup(
    ext_modules=[
        Extension(_EXTENSION, ["attestpolicy/engine/_cache_ext.pyx"], optional=True),
    ],
    cmdclass={"build_ext": OptionalBuildExt, "build_py": BuildPyWithPolicy},
)
