"""Fixtures of the browser tests: one system and one Chromium for the whole directory (each
test opens its own page and signs in), skipped with the command to run when Chromium,
Playwright or the client's npm packages are missing."""

from __future__ import annotations

import itertools
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

import pytest

from cmsv6.db.embedded import EmbeddedPostgres
from tests.browser.support import MEASURED, TAKEN, Browser, System, missing

_names = itertools.count()


@pytest.fixture(scope="package")
def system(pg_cluster: EmbeddedPostgres) -> Iterator[System]:
    """The system under test, up with every simulated DVR online."""
    why = missing()
    if why:
        pytest.skip(why)
    dsn = pg_cluster.create_database(f"browser{os.getpid()}_{next(_names)}", template="cmsv6_template")
    directory = Path(tempfile.mkdtemp(prefix="cmsv6-browser-"))
    running = System(dsn, directory)
    try:
        running.start()
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="package")
def browser(system: System) -> Iterator[Browser]:
    chromium = Browser()
    try:
        yield chromium
    finally:
        chromium.close()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if TAKEN:
        where = sorted({str(path.parent) for path in TAKEN})
        terminalreporter.write_line(f"browser tests: {len(TAKEN)} screenshots in {', '.join(where)}")
    for line in MEASURED:
        terminalreporter.write_line(f"browser tests: {line}")
