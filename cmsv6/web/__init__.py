"""The login server's web side: the Open API, the client WebSocket, metrics, the web client.

``cmsv6.web.site.make_site(db, cluster, reactor, settings)`` builds the whole site."""
