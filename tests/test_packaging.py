"""The clone builds into one wheel whose console commands run from any directory.

The wheel is built offline (``--no-build-isolation``, with the dev requirements' setuptools and
grpcio-tools) and installed with ``--target`` into a temporary folder; the commands then run with
that folder and the test environment's site-packages (for TensorFlow) on ``PYTHONPATH``.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import zipfile

import pytest

from runners import console

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = "fast_semantic_segmentation"


def _source_modules() -> set[str]:
    """Every ``.py`` of the clone's packages and root scripts that git tracks, as wheel paths."""
    tracked = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    packages = ("builders/", "core/", "dataset_tools/", "models/", "protos/", "runners/")
    wanted = {
        path
        for path in tracked
        if path.startswith(packages) or ("/" not in path and path != "setup.py")
    }
    return {f"{PACKAGE}/{path}" for path in wanted}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("wheel")
    # A copy of the tracked files, so the build's build/ and *.egg-info stay out of the clone.
    src = tmp_path_factory.mktemp("src")
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, files):
        target = src / name.decode()
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((ROOT / name.decode()).read_bytes())
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(src),
        ],
        check=True,
        capture_output=True,
    )
    (built,) = out.glob("*.whl")
    return built


def test_wheel_has_one_top_level_package_with_every_module(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {
        name.split("/")[0]
        for name in names
        if not name.split("/")[0].endswith((".dist-info", ".data"))
    }
    # Nothing named core/, models/, ... lands in site-packages: no clash with a user's packages.
    assert top_level == {PACKAGE}
    assert _source_modules() <= set(names)
    assert f"{PACKAGE}/setup.py" not in names
    # The build compiles the protos, which git does not track.
    protos = sorted(ROOT.glob("protos/*.proto"))
    assert protos
    for proto in protos:
        assert f"{PACKAGE}/protos/{proto.stem}_pb2.py" in names
    for config in ROOT.glob("configs/**/*config"):
        assert f"{PACKAGE}/{config.relative_to(ROOT)}" in names


def test_wheel_declares_every_console_command(wheel):
    archive = zipfile.ZipFile(wheel)
    (entry_points,) = [n for n in archive.namelist() if n.endswith("entry_points.txt")]
    text = archive.read(entry_points).decode()
    for command in console.COMMANDS:
        assert f"{command} = {PACKAGE}.runners.console:" in text
    # Each command's script exists in the clone.
    for script in console.COMMANDS.values():
        assert (ROOT / script).is_file(), script


def test_installed_command_runs_from_another_directory(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "-q",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
    env = dict(os.environ)
    deps = [p for p in sys.path if p.endswith("site-packages")]
    env["PYTHONPATH"] = os.pathsep.join([str(target), *deps])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # The installed package does not make the project's packages importable by their bare names.
    probe = subprocess.run(
        [sys.executable, "-c", "import fast_semantic_segmentation.runners.console; import core"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
    )
    assert probe.returncode != 0 and "No module named 'core'" in probe.stderr
    result = subprocess.run(
        [sys.executable, str(target / "bin" / "fss-create-synthetic-dataset"), "--helpshort"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    # absl's --help exits with status 1 after printing the flags, as in a clone.
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    assert "--output_dir" in result.stdout + result.stderr
    # It ran the installed copy, not the clone.
    assert str(target) in result.stdout + result.stderr
