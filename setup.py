"""Build of the optional compiled codec (``dynamo_lake._fastcodec``); metadata is in
pyproject.toml.

The extension is optional: without a C compiler (or the headers of Python or OpenSSL, whose
one-shot SHA-256 it calls) the build prints one notice and the package installs without
it; the pure codec then does all the work. Two environment variables change that:

* ``DYNAMO_LAKE_REQUIRE_EXT=1``: a failed build is an error (the Docker builder stage, which
  has a compiler and must not ship an image without the fast path by accident);
* ``DYNAMO_LAKE_SKIP_EXT=1``: do not build it at all (``make venv``'s editable install;
  ``make build-ext`` then builds it in place).
"""

from __future__ import annotations

import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

EXTENSION = "dynamo_lake._fastcodec"
SOURCE = "include/dynamo_lake/_fastcodec.pyx"
REQUIRED = os.environ.get("DYNAMO_LAKE_REQUIRE_EXT") == "1"


def _notice(problem: object) -> None:
    text = str(problem).splitlines()[0] if str(problem) else type(problem).__name__
    if len(text) > 120:
        text = text[:117] + "..."
    print(
        f"notice: compiled codec not built ({text}); it needs a C compiler and the headers of "
        "Python and OpenSSL (Debian: gcc python3-dev libssl-dev); the pure codec will be used",
        file=sys.stderr,
    )


class OptionalBuildExt(build_ext):
    """build_ext that leaves the extension out, with one notice, when it cannot compile."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # compiler missing or failing: setuptools raises several kinds
            if REQUIRED:
                raise
            _notice(exc)


def _extensions() -> list[Extension]:
    if os.environ.get("DYNAMO_LAKE_SKIP_EXT") == "1":
        return []
    try:
        from Cython.Build import cythonize
    except ImportError as exc:
        if REQUIRED:
            raise
        _notice(f"Cython is not installed: {exc}")
        return []
    return cythonize(
        [Extension(EXTENSION, [SOURCE], libraries=["crypto"])],
        compiler_directives={"language_level": "3"},
        quiet=True,
    )


setup(ext_modules=_extensions(), cmdclass={"build_ext": OptionalBuildExt})
