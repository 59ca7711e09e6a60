"""``twistd media``: options and the service tree.

Devices' JT/T 1078 streams on ``jt1078``, viewers on ``web`` (WS-FLV and HTTP-FLV),
Prometheus on ``metrics``; with ``login`` set, the link to login that announces this
server and asks devices to stream (``cmsv6.plugins.media.cluster``). No database: the
viewing tokens login signs (with a key derived from this server's cluster key) say what
a viewer may watch.
"""

from __future__ import annotations

from typing import Any

from twisted.application import service, strports
from twisted.logger import Logger
from twisted.python import usage

from cmsv6 import config as cfg
from cmsv6.plugins.media.ingest import IngestFactory
from cmsv6.plugins.media.server import MediaServer
from cmsv6.plugins.media.web import make_site
from cmsv6.rpc import keys

_log = Logger()


class Options(cfg.ServerOptions):
    """``--config FILE`` and every key of ``[media]`` (``cmsv6.config``); ``self.config``
    is the typed configuration."""

    synopsis = "[--config FILE] [--jt1078 ENDPOINT] [--web ENDPOINT] ..."
    sections = ("media",)


def media_key(path: str, media_id: str) -> bytes:
    """This media server's key from ``path`` (its own media key file, or the master key);
    UsageError naming the file otherwise."""
    how = f"'cmsv6 cluster key {media_id} --media --master FILE --out FILE'"
    if not path:
        raise usage.UsageError(
            "[media] cluster_key is required: viewing tokens are checked with a key derived"
            f" from this media server's key (create it with {how})"
        )
    try:
        credential = keys.load(path)
    except keys.KeyFileError as e:
        raise usage.UsageError(str(e)) from None
    key = credential.key_for(keys.identity(keys.MEDIA, media_id))
    if key is None:
        fix = f" (a media server's key is made with {how})" if credential.role != keys.MEDIA else ""
        raise usage.UsageError(f"{path} is {credential.describe()}, not media server"
                               f" {media_id}'s{fix}")  # fmt: skip
    return key


class _Media(service.Service):
    """Stops the media server first: viewers told it is going away, devices closed."""

    def __init__(self, media: MediaServer) -> None:
        self.media = media

    def stopService(self) -> Any:  # noqa: N802
        super().stopService()
        self.media.stop()


def makeService(options: Options, reactor: Any = None) -> service.MultiService:  # noqa: N802
    if reactor is None:
        from twisted.internet import reactor as default_reactor

        reactor = default_reactor
    conf = options.config.media
    key = media_key(conf.cluster_key, conf.id)
    top = service.MultiService()
    media = MediaServer(conf, reactor, key)
    top.media = media  # type: ignore[attr-defined]
    if conf.login:
        try:
            from cmsv6.plugins.media.cluster import login_service
        except ImportError as e:
            raise usage.UsageError(
                f"[media] login is set, but this installation has no link to login ({e});"
                " leave login empty to run standalone"
            ) from None
        link, opener = login_service(conf, media, reactor)
        media.opener = opener
        link.setServiceParent(top)
        _log.info("media {id}: reporting to login at {login}", id=conf.id,
                  login=", ".join(conf.login))  # fmt: skip
    else:
        _log.info("media {id}: standalone (no [media] login): only streams devices push on"
                  " their own can be watched", id=conf.id)  # fmt: skip
    # Services stop in reverse order: the endpoints stop listening, then every viewer and
    # device connection is closed.
    _Media(media).setServiceParent(top)
    strports.service(conf.jt1078, IngestFactory(media), reactor=reactor).setServiceParent(top)
    strports.service(conf.web, make_site(media, reactor), reactor=reactor).setServiceParent(top)
    if conf.metrics:
        from twisted.web import resource as web_resource
        from twisted.web import server as web_server

        from cmsv6.metrics import MetricsResource, make_registry, media_collector

        registry = make_registry()
        media_collector(media, registry)
        root = web_resource.Resource()
        root.putChild(b"metrics", MetricsResource(registry))
        strports.service(conf.metrics, web_server.Site(root), reactor=reactor).setServiceParent(top)
    _log.info("media {id}: devices on {jt1078} (told {public}), viewers on {web}", id=conf.id,
              jt1078=conf.jt1078, public=conf.public_jt1078, web=conf.web)
    return top
