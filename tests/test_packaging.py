"""The package installed the ordinary way (a wheel into a fresh virtual environment) gives
working servers and commands, not only the Makefile's checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(*args: str | Path, cwd: Path) -> str:
    """Run a command as a user would: nothing on PYTHONPATH points back at the checkout."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True,
        stdin=subprocess.DEVNULL, timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, f"{' '.join(map(str, args))}: {r.stdout[-2000:]}{r.stderr[-2000:]}"
    return r.stdout


@pytest.mark.timeout(900)
def test_wheel_in_a_fresh_venv(tmp_path: Path) -> None:
    """A wheel built from the tree and installed into a new venv lists every server in
    ``twistd --help``; ``twistd gateway --help``, ``twistd login --help``, ``twistd media --help`` and
    ``cmsv6 --help`` work, from a directory that is not the checkout."""
    # Built from a copy of the sources: setuptools would reuse (and leave) a build/ in the tree.
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".venv", ".git", "build", "var", "node_modules", "*.egg-info", "__pycache__"))
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", tmp_path / "dist", source,
         cwd=tmp_path)  # fmt: skip
    (wheel,) = (tmp_path / "dist").glob("cmsv6-*.whl")
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    _run(venv / "bin" / "pip", "install", "-q", wheel, cwd=tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    listed = _run(venv / "bin" / "twistd", "--help", cwd=elsewhere)
    for server in ("gateway", "login", "media"):
        assert any(line.split()[:1] == [server] for line in listed.splitlines()), listed
        assert "--config" in _run(venv / "bin" / "twistd", server, "--help", cwd=elsewhere)
    assert "decode" in _run(venv / "bin" / "cmsv6", "--help", cwd=elsewhere)
    installed = _run(venv / "bin" / "python", "-c", "import cmsv6; print(cmsv6.__file__)", cwd=elsewhere)
    assert installed.startswith(str(venv)), installed
