"""Only the compiled part of the build; everything else is in pyproject.toml.

The native graph is optional: where it cannot be compiled (no C++17 compiler, an unsupported
platform) the install still succeeds with a warning, and `index.backends.graph.AVAILABLE` is False so
the engine falls back to hnswlib. Set NESTOR_REQUIRE_GRAPH=1 to make a failed build an error instead
(the Docker image and CI want the fast path or nothing).
"""

import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import CCompilerError, CompileError, ExecError, LinkError, PlatformError

_BUILD_ERRORS = (CCompilerError, CompileError, ExecError, LinkError, PlatformError, OSError)
_REQUIRED = os.environ.get("NESTOR_REQUIRE_GRAPH", "") not in ("", "0")


def _skip(what: str, exc: BaseException) -> None:
    if _REQUIRED:
        raise exc
    # pip shows this with -v only; at run time index.backends.graph.UNAVAILABLE_REASON tells
    sys.stderr.write(f"WARNING: {what} failed ({exc}); Nestor installs without its native graph\n")


class OptionalBuildExt(build_ext):
    """Warns instead of failing when an extension cannot be built."""

    def run(self) -> None:
        try:
            super().run()
        except _BUILD_ERRORS as exc:  # e.g. no compiler found at all
            _skip("building the C++ extensions", exc)

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except _BUILD_ERRORS as exc:
            _skip(f"building {ext.name}", exc)


try:
    from pybind11.setup_helpers import Pybind11Extension
except ImportError as exc:  # only without build isolation: pyproject.toml's build requires list it
    _skip("importing pybind11", exc)
    ext_modules = []
else:
    ext_modules = [
        Pybind11Extension(
            "index._graph",
            ["index/_graph.cpp"],
            depends=[
                "index/_graph_kernels.h",
                "index/_graph_support.h",
                "index/_graph_query.h",
                "index/_graph_hits.h",
                "index/_graph_exact.h",
                "index/_faiss_ivf.h",
                "index/_maxsim.h",
                "index/_roaring.h",
            ],
            cxx_std=17,
            # SIMD kernels are compiled per target and picked at run time, so no -march here.
            # (GCC 12's AVX-512 headers trip -Wmaybe-uninitialized in its own reduce intrinsics.)
            extra_compile_args=["-O3", "-fvisibility=hidden", "-fno-math-errno", "-Wno-maybe-uninitialized"],
        )
    ]

setup(ext_modules=ext_modules, cmdclass={"build_ext": OptionalBuildExt})
