"""Which database the ``cmsv6`` commands use when told none: the demo's, when run where
``cmsv6 demo`` keeps its data (and they say so)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from cmsv6.db.devices import add_device

CMSV6 = str(Path(sys.executable).with_name("cmsv6"))


def _run(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k != "CMSV6_VAR"}
    return subprocess.run([CMSV6, *args], cwd=cwd, capture_output=True, text=True, timeout=60,
                          env={**clean, **env})  # fmt: skip


def _demo(directory: Path, dsn: str, var: str = "var") -> Path:
    """A ``var/demo.toml`` in ``directory`` as ``cmsv6 demo`` writes it, for ``dsn``."""
    path = directory / var / "demo.toml"
    path.parent.mkdir(parents=True)
    path.write_text(f'# Written by cmsv6 demo\n[database]\ndsn = "{dsn}"\n')
    return path


def test_commands_find_the_demos_database(dsn: str, tmp_path: Path) -> None:
    """Run from the demo's directory with neither ``--config`` nor ``--dsn``, a command uses
    ``var/demo.toml`` (``$CMSV6_VAR/demo.toml`` when the demo was told that) and says so on
    stderr; given ``--dsn`` it uses that, silently."""
    add_device(dsn, "13800000091")
    config = _demo(tmp_path, dsn)
    result = _run(tmp_path, "device", "list")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[1].split()[0] == "13800000091"
    assert result.stderr == (f"cmsv6: using the demo's database ({Path('var') / 'demo.toml'};"
                             " --config or --dsn for another)\n")  # fmt: skip

    elsewhere = tmp_path / "elsewhere"
    _demo(elsewhere, dsn, var="data")
    result = _run(elsewhere, "fleet", "add", "north", CMSV6_VAR="data")
    assert (result.returncode, result.stdout) == (0, "fleet north added\n"), result.stderr
    assert "data/demo.toml" in result.stderr

    config.write_text('[database]\ndsn = "host=127.0.0.1 port=1 dbname=nothing connect_timeout=5"\n')
    result = _run(tmp_path, "fleet", "list", "--dsn", dsn)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.split() == ["NAME", "DEVICES", "USERS", "north", "0", "0"]

