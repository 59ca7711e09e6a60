"""Shared fixtures: a private PostgreSQL for the whole test session (real database, no
mocks), and a fresh, upgraded database per test that asks for one."""

from __future__ import annotations

import itertools
import os
import tempfile
from typing import Any, Iterator

import greenlet
import pytest
from hypothesis import HealthCheck, settings

from cmsv6.db.embedded import EmbeddedPostgres
from cmsv6.db.upgrade import upgrade

_names = itertools.count()

# No per-example deadline: on a loaded 2-core CI machine a slow example is not a failure
# of the behaviour under test (tests assert behaviour, never time).
settings.register_profile("cmsv6", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("cmsv6")


#: How long one test (with its fixtures) may wait on the reactor before it fails; a test
#: that needs longer says so with ``@pytest.mark.deadline(seconds)``. pytest-timeout
#: (setup.cfg) is the last resort for a test stuck outside the reactor: it ends the run.
DEADLINE = 120.0


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "deadline(seconds): this test's own time limit")


@pytest.fixture(autouse=True)
def _deadline(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test that is still waiting on the reactor after its deadline, instead of
    letting a regression hang the suite.

    Tests wait on Deferreds in pytest-twisted's blockon: the test's greenlet is parked while
    the reactor's runs. When the deadline passes, the reactor's greenlet throws into the
    parked test, which fails there; the reactor carries on for the tests after it.
    """
    from twisted.internet import reactor

    marker = request.node.get_closest_marker("deadline")
    seconds = float(marker.args[0]) if marker else DEADLINE
    test = greenlet.getcurrent()

    def expire() -> None:
        if greenlet.getcurrent() is not test:
            test.throw(pytest.fail.Exception(f"still waiting after {seconds:g} s (the test's deadline)"))

    call = reactor.callLater(seconds, expire)
    try:
        yield
    finally:
        if call.active():
            call.cancel()


@pytest.fixture
def logged() -> Iterator[list[dict[str, Any]]]:
    """Every twisted.logger event emitted while the test runs."""
    from twisted.logger import globalLogPublisher

    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        yield events
    finally:
        globalLogPublisher.removeObserver(events.append)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[EmbeddedPostgres]:
    """A private PostgreSQL cluster, started once and removed at the end."""
    directory = tempfile.mkdtemp(prefix="cmsv6-test-pg-")
    cluster = EmbeddedPostgres(directory)
    cluster.init()
    cluster.start()
    template = cluster.create_database("cmsv6_template")
    upgrade(template)
    try:
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def dsn(pg_cluster: EmbeddedPostgres) -> str:
    """A fresh database with the current schema (cloned from the upgraded template)."""
    name = f"t{os.getpid()}_{next(_names)}"
    return pg_cluster.create_database(name, template="cmsv6_template")
