"""Only the compiled part of the build; everything else is in pyproject.toml."""

from pybind11.setup_helpers import Pybind11Extension
from setuptools import setup

setup(
    ext_modules=[
        Pybind11Extension(
            "index._graph",
            ["index/_graph.cpp"],
            cxx_std=17,
            # SIMD kernels are compiled per target and picked at run time, so no -march here.
            # (GCC 12's AVX-512 headers trip -Wmaybe-uninitialized in its own reduce intrinsics.)
            extra_compile_args=["-O3", "-fvisibility=hidden", "-fno-math-errno", "-Wno-maybe-uninitialized"],
        )
    ],
)
