"""Packaging of the clone: one import package, ``fast_semantic_segmentation``, built from the root.

The project keeps the original's layout (``protos/ builders/ core/ models/ dataset_tools/`` and the
entry scripts at the repository root), whose modules import each other by those top-level names.
Installing them as top-level packages would put names as common as ``core`` and ``models`` into
site-packages, where they would shadow or be shadowed by a user's own. So the whole root is
installed under one package instead (``package_dir`` maps ``fast_semantic_segmentation`` to
``.``), and the console commands (``runners/console.py``) put that package's folder on
``sys.path`` of their own process only. Protos are compiled during the build, so a wheel or an
install from a clean clone carries the ``*_pb2.py`` modules.
"""

import pathlib
import subprocess
import sys

from setuptools import find_namespace_packages, find_packages, setup
from setuptools.command.build_py import build_py

PACKAGE = "fast_semantic_segmentation"
ROOT = pathlib.Path(__file__).resolve().parent


class BuildPyWithProtos(build_py):
    """``build_py`` that first compiles ``protos/*.proto`` with the pinned grpcio-tools."""

    def run(self):
        protos = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "protos").glob("*.proto"))
        subprocess.run(
            [
                sys.executable,
                "-m",
                "grpc_tools.protoc",
                "-I.",
                "--python_out=.",
                "--pyi_out=.",
                *protos,
            ],
            cwd=ROOT,
            check=True,
        )
        super().run()

    def find_package_modules(self, package, package_dir):
        # The root is the package's folder; this file is its build script, not one of its modules.
        modules = super().find_package_modules(package, package_dir)
        return [m for m in modules if (m[0], m[1]) != (PACKAGE, "setup")]


subpackages = find_packages(
    include=["builders*", "core*", "dataset_tools*", "models*", "protos*", "runners*"]
)
# configs/ holds no Python; listed as (namespace) packages so its files install as package data.
data_dirs = find_namespace_packages(include=["configs*"])
setup(
    packages=[PACKAGE, *(f"{PACKAGE}.{name}" for name in [*subpackages, *data_dirs])],
    package_dir={PACKAGE: "."},
    cmdclass={"build_py": BuildPyWithProtos},
)
