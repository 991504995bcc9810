"""Build script for the optional compiled decision cache; metadata is in pyproject.toml.

``attestpolicy.engine._cache_ext`` is built from its ``.pyx`` by Cython (a build
requirement) and a C compiler. When either is missing, or the build fails, the install
still succeeds with a warning and ``attestpolicy.engine.cache`` uses its pure-Python twin.
"""

from __future__ import annotations

import warnings

from setuptools import Extension, setup  # type: ignore[import-untyped]
from setuptools.command.build_ext import build_ext  # type: ignore[import-untyped]

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


setup(
    ext_modules=[
        Extension(_EXTENSION, ["attestpolicy/engine/_cache_ext.pyx"], optional=True),
    ],
    cmdclass={"build_ext": OptionalBuildExt},
)
