"""Follow vehicles' positions and alarms live over the client WebSocket (docs/websocket.md).

    python3 follow_live.py [COUNT]    # stop after COUNT pushes (default: never)

Written with the standard library only (a minimal WebSocket client, below): an
integrator's Python may lack any WebSocket package, and the protocol's client side for
JSON text messages is short. In a bigger program use a maintained library (websockets,
autobahn, aiohttp).
"""

import base64
import json
import os
import socket
import struct
import sys
import urllib.parse

from cmsv6_api import URL, call, login


class WebSocket:
    """The client side of RFC 6455, enough for JSON text messages: connect, send text,
    receive text (answering pings; a close ends it)."""

    def __init__(self, url: str) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "ws":
            raise SystemExit("this minimal client speaks ws:// only; use a library for wss://")
        self.sock = socket.create_connection((parts.hostname, parts.port or 80), timeout=60)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {parts.path or '/'} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                           "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self._recv()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        if not head.startswith(b"HTTP/1.1 101"):
            raise SystemExit(f"no WebSocket: {head.splitlines()[0].decode()}")

    def _recv(self) -> bytes:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("the server closed the connection")
        return data

    def _read(self, n: int) -> bytes:
        while len(self.buffer) < n:
            self.buffer += self._recv()
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def _send(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)  # a client masks every frame
        n = len(payload)
        head = bytes([0x80 | opcode]) + (bytes([0x80 | n]) if n < 126 else
                                         struct.pack("!BH", 0x80 | 126, n) if n < 65536 else
                                         struct.pack("!BQ", 0x80 | 127, n))
        self.sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def send_json(self, message: dict) -> None:
        self._send(0x1, json.dumps(message).encode())

    def receive_json(self) -> dict:
        message = b""
        while True:
            first, second = self._read(2)
            n = second & 0x7F
            if n == 126:
                (n,) = struct.unpack("!H", self._read(2))
            elif n == 127:
                (n,) = struct.unpack("!Q", self._read(8))
            payload = self._read(n)  # the server does not mask
            opcode = first & 0x0F
            if opcode == 0x8:  # close: the code says why (4001: bad token, see the docs)
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                raise ConnectionError(f"closed by the server: {code} {payload[2:].decode()}")
            if opcode == 0x9:  # ping: answer pong
                self._send(0xA, payload)
                continue
            if opcode in (0x1, 0x0):
                message += payload
                if first & 0x80:  # the last fragment
                    return json.loads(message)


count = int(sys.argv[1]) if len(sys.argv) > 1 else None
token = login()
phones = [d["phone"] for d in call("GET", "/api/v1/devices", token=token)]
ws = WebSocket(URL.replace("http", "ws", 1) + "/ws")
ws.send_json({"token": token})  # the first message: the token (never in the URL)
ws.send_json({"subscribe": phones})
seen = 0
while count is None or seen < count:
    message = ws.receive_json()
    kind = message["type"]
    if kind == "authenticated":
        print(f"authenticated as {message['user']} ({message['role']})")
    elif kind == "subscribed":
        print(f"subscribed to {len(message['phones'])} devices")
    elif kind == "position":
        seen += 1
        print(f"position {message['phone']}: {message['latitude']:.6f}, {message['longitude']:.6f}"
              f" {message['speed']} km/h at {message['time']}")
    elif kind == "alarm":
        seen += 1
        print(f"alarm {message['phone']}: {message['kind']} (id {message['id']})")
    else:  # "dropped" (we were too slow: some pushes were skipped) or "error"
        print(message)
    sys.stdout.flush()
