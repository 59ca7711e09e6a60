"""The wire formats stay pure: nothing under ``cmsv6/protocols`` imports Twisted, the
database layer or a server package, and JT/T 808 does not import JT/T 1078 (the stream
packet builds on 808's fields, not the other way round)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import cmsv6.protocols

ROOT = Path(cmsv6.protocols.__file__).parent
FORBIDDEN = ("twisted", "txpostgres", "psycopg2", "autobahn", "prometheus_client")


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports, wherever in the file (absolute names)."""
    package = ".".join(path.relative_to(ROOT.parent.parent).with_suffix("").parts[:-1])
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                names.add(f"{base}.{node.module}" if node.module else base)
            elif node.module:
                names.add(node.module)
    return names


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def test_protocols_import_no_io_layer() -> None:
    """No module under cmsv6/protocols imports Twisted, a database driver, or any part of
    cmsv6 outside cmsv6.protocols (the database layer, the servers, the web)."""
    offences = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in sorted(ROOT.rglob("*.py"))
        for name in sorted(imports(path))
        if any(_within(name, bad) for bad in FORBIDDEN)
        or (_within(name, "cmsv6") and not _within(name, "cmsv6.protocols"))
    ]
    assert offences == []


def test_jt808_does_not_import_jt1078() -> None:
    """The stream packet (jt1078) may use 808's fields; 808 never imports the packet."""
    offences = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in sorted((ROOT / "jt808").rglob("*.py"))
        for name in imports(path)
        if _within(name, "cmsv6.protocols.jt1078")
    ]
    assert offences == []


def test_importing_every_protocol_module_loads_no_twisted() -> None:
    """Importing every protocols module in a fresh interpreter leaves Twisted and the
    database drivers unloaded (catches an indirect import the static walk cannot see)."""
    modules = [
        ".".join(p.relative_to(ROOT.parent.parent).with_suffix("").parts).removesuffix(".__init__")
        for p in sorted(ROOT.rglob("*.py"))
    ]
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('twisted', 'txpostgres', 'psycopg2', 'autobahn'))))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == ""
