"""Declares the Cython extension; everything else lives in pyproject.toml."""
import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

COMPILER_DIRECTIVES = {
    "language_level": 3,
    "boundscheck": False,
    "wraparound": False,
    "cdivision": True,
    "initializedcheck": False,
}

# The tensor source, and one encoder per target's wire format; they share targets/_wire.pxd.
extensions = [
    Extension(
        f"fastload.targets.{name}",
        [f"fastload/targets/{name}.pyx"],
        include_dirs=[numpy.get_include()],
        extra_compile_args=["-O3"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    )
    for name in ("_tensor", "_encode_scheduler", "_encode_kserve")
]

setup(ext_modules=cythonize(extensions, compiler_directives=COMPILER_DIRECTIVES))
