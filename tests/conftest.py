"""Shared fixtures: a private PostgreSQL for the whole test session (real database, no
mocks), and a fresh, upgraded database per test that asks for one."""

from __future__ import annotations

import itertools
import os
import tempfile
from typing import Iterator

import pytest
from hypothesis import HealthCheck, settings

from cmsv6.db.cluster import PrivateCluster
from cmsv6.db.upgrade import upgrade

_names = itertools.count()

# No per-example deadline: on a loaded 2-core CI machine a slow example is not a failure
# of the behaviour under test (tests assert behaviour, never time).
settings.register_profile("cmsv6", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("cmsv6")


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PrivateCluster]:
    """A private PostgreSQL cluster, started once and removed at the end."""
    directory = tempfile.mkdtemp(prefix="cmsv6-test-pg-")
    cluster = PrivateCluster(directory)
    cluster.init()
    cluster.start()
    template = cluster.create_database("cmsv6_template")
    upgrade(template)
    try:
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def dsn(pg_cluster: PrivateCluster) -> str:
    """A fresh database with the current schema (cloned from the upgraded template)."""
    name = f"t{os.getpid()}_{next(_names)}"
    return pg_cluster.create_database(name, template="cmsv6_template")
