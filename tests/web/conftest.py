"""Fixtures of the web tests: the seeded site on a loopback port."""

from __future__ import annotations

from typing import Any

import pytest

from tests.web.support import seed, serve


@pytest.fixture
def web(dsn: str) -> Any:
    """The site over a fresh, seeded database (see ``seed``), listening on loopback."""
    seed(dsn)
    site, stop = serve(dsn)
    yield site
    stop()


@pytest.fixture
def web_with_metrics(dsn: str) -> Any:
    """The seeded site with a metrics registry (so /metrics is served too)."""
    from cmsv6.metrics import make_registry

    seed(dsn)
    site, stop = serve(dsn, registry=make_registry(process=False))
    yield site
    stop()
