"""Build script: the Cython array kernels are part of the package (no pure-Python fallback).

Everything else (metadata, dependencies, package data) is in ``pyproject.toml``.  The flags are
chosen per compiler: optimised, and without debug information, so that a wheel carries a small
stripped ``_arrays`` library (Python's own ``CFLAGS`` often contain ``-g``; ``-g0`` after them
wins).  ``MILO_PACK_DEBUG=1`` keeps the debug information for a local build.
"""

import os
import sys

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

_DEBUG = os.environ.get("MILO_PACK_DEBUG", "") not in ("", "0")


class BuildExt(build_ext):
    """``build_ext`` with flags that suit the compiler actually used."""

    def build_extensions(self) -> None:
        kind = self.compiler.compiler_type
        for ext in self.extensions:
            if kind == "msvc":  # no debug information unless /Zi: nothing to strip
                ext.extra_compile_args = ["/O2"]
            else:  # gcc and clang (Linux, macOS, MinGW)
                ext.extra_compile_args = ["-O3"] + ([] if _DEBUG else ["-g0"])
                if not _DEBUG and sys.platform.startswith("linux"):
                    ext.extra_link_args = ["-Wl,--strip-all"]
                elif not _DEBUG and sys.platform == "darwin":
                    ext.extra_link_args = ["-Wl,-x"]  # drop local symbols; -s is obsolete there
        super().build_extensions()


extensions = [
    Extension(
        "milo_pack._arrays",
        ["src/milo_pack/_arrays.pyx"],
        include_dirs=[np.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    )
]

setup(
    ext_modules=cythonize(
        extensions,
        language_level=3,
        compiler_directives={
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
        },
    ),
    cmdclass={"build_ext": BuildExt},
)
