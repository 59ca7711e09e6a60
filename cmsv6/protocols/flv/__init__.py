"""FLV, sans-IO: what the media server sends to players (WS-FLV and HTTP-FLV).

``muxer.FlvMuxer`` turns H.264 and H.265 access units (Annex B, as JT/T 1078 units send them) and
AAC frames into FLV tags; ``tags`` declares the container, ``h264`` and ``amf`` the pieces
it needs (``hevc`` for H.265 as enhanced FLV).
"""
