"""One package per twistd plugin (``twisted/plugins/cmsv6_servers.py`` points at each
``tap`` module): the servers' implementations."""
