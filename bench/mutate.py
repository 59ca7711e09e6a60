"""The mutation check: does the test net catch one-line breaks of the core behaviours?

Each mutation in ``bench/mutations.toml`` names one line of production code, the line that
replaces it and the tests that guard it. For each, this program makes a scratch copy of the
tree, applies the mutation there, and runs those tests against the copy (``PYTHONPATH`` points
every process the tests start, ``twistd`` and ``cmsv6`` included, at the copy). A mutation
is *caught* when the tests fail, and *survives* when they pass. Before any mutation, each
selection of tests is run once unmutated: it must pass, or the check means nothing.

    .venv/bin/python bench/mutate.py              # every mutation
    .venv/bin/python bench/mutate.py -k fleet     # those whose name contains "fleet"
    .venv/bin/python bench/mutate.py --list

Run it before a release (``make mutate``); every mutation must be caught. The exit status is
1 if any survives or cannot be applied.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

from attrs import frozen

ROOT = Path(__file__).resolve().parent.parent
MUTATIONS = Path(__file__).with_name("mutations.toml")
#: What a scratch copy leaves out: the virtual environment and whatever is not source.
IGNORED = shutil.ignore_patterns(
    ".venv", ".git", "var", "node_modules", "__pycache__", "*.pyc", ".hypothesis", "build", "dist"
)
#: One selection's time limit: a mutation can turn a test into a hang (a timeout is caught).
LIMIT = 900


class MutationError(Exception):
    """A mutation that cannot be applied: its line is not in the file exactly once."""


@frozen
class Mutation:
    name: str
    why: str
    file: str
    line: str
    replacement: str
    tests: tuple[str, ...]

    def apply(self, tree: Path) -> None:
        """Replace the one line whose stripped text is ``line``, keeping its indentation."""
        path = tree / self.file
        lines = path.read_text().splitlines(keepends=True)
        hits = [i for i, text in enumerate(lines) if text.strip() == self.line.strip()]
        if len(hits) != 1:
            raise MutationError(f"{self.name}: {len(hits)} lines of {self.file} read {self.line!r}")
        i = hits[0]
        old = lines[i]
        indent = old[: len(old) - len(old.lstrip())]
        lines[i] = indent + self.replacement.strip() + "\n"
        source = "".join(lines)
        if path.suffix == ".py":  # the web client's JavaScript is judged by its browser tests
            try:
                compile(source, str(path), "exec")
            except SyntaxError as e:
                raise MutationError(f"{self.name}: the mutated file does not compile: {e}") from None
        path.write_text(source)


def load(path: Path = MUTATIONS) -> list[Mutation]:
    with open(path, "rb") as f:
        data = tomllib.load(f)
    return [
        Mutation(m["name"], m["why"], m["file"], m["line"], m["replacement"], tuple(m["tests"]))
        for m in data["mutation"]
    ]


def run_tests(tree: Path, tests: tuple[str, ...]) -> tuple[bool, float, str]:
    """(passed, seconds, last lines of output) for ``tests`` run against ``tree``."""
    env = dict(os.environ, PYTHONPATH=str(tree), PYTHONDONTWRITEBYTECODE="1")
    started = time.monotonic()
    try:
        r = subprocess.run(
            [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests],
            cwd=tree, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=LIMIT,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return False, time.monotonic() - started, f"no result within {LIMIT} s"
    tail = "\n".join((r.stdout + r.stderr).strip().splitlines()[-3:])
    return r.returncode == 0, time.monotonic() - started, tail


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-k", default="", help="only mutations whose name contains this")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    args = parser.parse_args(argv)
    mutations = [m for m in load() if args.k in m.name]
    if args.list:
        for m in mutations:
            print(f"{m.name:32} {m.why}")
        return 0

    scratch = Path(tempfile.mkdtemp(prefix="cmsv6-mutate-"))
    tree = scratch / "tree"
    try:
        shutil.copytree(ROOT, tree, ignore=IGNORED)
        print(f"{len(mutations)} mutations; scratch copy {tree}", flush=True)
        where = subprocess.run(
            [sys.executable, "-c", "import cmsv6; print(cmsv6.__file__)"],
            cwd=scratch, env=dict(os.environ, PYTHONPATH=str(tree)), capture_output=True, text=True,
        ).stdout.strip()  # fmt: skip
        if not where.startswith(str(tree)):
            print(f"the scratch copy is not what Python imports ({where or 'nothing'}): no check")
            return 1
        for tests in sorted({m.tests for m in mutations}):
            passed, seconds, tail = run_tests(tree, tests)
            if not passed:
                print(f"UNMUTATED TESTS FAIL ({seconds:.0f} s): {' '.join(tests)}\n{tail}")
                return 1
        print("every selection passes unmutated", flush=True)

        caught = survived = broken = 0
        for m in mutations:
            original = (ROOT / m.file).read_text()
            try:
                m.apply(tree)
            except MutationError as e:
                print(f"NOT APPLIED  {e}", flush=True)
                broken += 1
                continue
            try:
                passed, seconds, tail = run_tests(tree, m.tests)
            finally:
                (tree / m.file).write_text(original)
            if passed:
                survived += 1
                print(f"SURVIVED     {m.name} ({seconds:.0f} s): {m.why}\n"
                      f"             {m.file}: {m.replacement.strip()}")
            else:
                caught += 1
                print(f"caught       {m.name} ({seconds:.0f} s): {m.why}", flush=True)
        print(f"{caught} caught, {survived} survived, {broken} not applied, of {len(mutations)}")
        return 0 if survived == broken == 0 else 1
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
