"""Recordings played back on the media server (being built: issue 12); until then a 404."""

from __future__ import annotations

from typing import Any

from twisted.web import pages
from twisted.web import resource as web_resource


def resource(media: Any, reactor: Any) -> web_resource.Resource:
    return pages.notFound("Not built yet", "issue 12")
