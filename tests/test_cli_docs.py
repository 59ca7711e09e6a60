"""docs/cli.md documents the ``cmsv6`` command as the parser has it: every command and
subcommand, and no command the parser lacks."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Iterator

from cmsv6.cli import build_parser

CLI_DOC = Path(__file__).resolve().parent.parent / "docs" / "cli.md"


def commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every command path of ``parser``: ("device",), ("device", "add"), ..."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*path, name)
                yield from commands(sub, (*path, name))


def test_every_subcommand_is_documented() -> None:
    """Each command and subcommand of ``cmsv6`` appears in docs/cli.md as ``cmsv6 A B``
    (with an example or a heading), and so does ``--version``."""
    text = CLI_DOC.read_text(encoding="utf-8")
    found = list(commands(build_parser()))
    assert ("device", "disable") in found and ("cluster", "init") in found, found
    missing = [" ".join(c) for c in found
               if not re.search(rf"cmsv6 {re.escape(' '.join(c))}(?![\w-])", text)]  # fmt: skip
    assert not missing, f"not in docs/cli.md: {missing}"
    assert "cmsv6 --version" in text


def test_documented_commands_exist() -> None:
    """Every ``cmsv6 ...`` heading of docs/cli.md names a command the parser has."""
    known = {" ".join(c) for c in commands(build_parser())}
    headings = re.findall(r"^#+ cmsv6 ([a-z -]+?)\s*$", CLI_DOC.read_text(encoding="utf-8"), re.M)
    assert headings
    assert [h for h in headings if h not in known] == []
