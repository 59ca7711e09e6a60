"""Media through FFmpeg (PyAV), without Twisted: units' audio transcoded to AAC for
browsers (``audio``), and the pre-encoded test clip the simulator streams (``clip``).

The wire formats stay in ``cmsv6.protocols`` (jt1078, flv); the media server
(``cmsv6.plugins.media``) joins them to these.
"""
