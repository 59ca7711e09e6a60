"""What the gateway sends a terminal, over a real loopback connection: straight to the
socket when nothing is waiting (no write registration per 0x8001), and in order when the
terminal does not read and the rest has to wait in the transport's buffer."""

from __future__ import annotations

import socket
from typing import Any

import pytest_twisted
from twisted.internet import defer, threads

from cmsv6.terminal.protocol import TerminalFactory, TerminalProtocol
from cmsv6.terminal.session import TerminalSession
from tests.support.device import until
from tests.terminal.test_session import Host


@defer.inlineCallbacks
def connected() -> Any:
    """(the listening port, the server side's TerminalProtocol, the client's socket)."""
    from twisted.internet import reactor

    host = Host()
    made: list[TerminalProtocol] = []

    class Factory(TerminalFactory):
        def buildProtocol(self, addr: Any) -> Any:  # noqa: N802
            proto = super().buildProtocol(addr)
            made.append(proto)
            return proto

    port = reactor.listenTCP(0, Factory(host, lambda link: TerminalSession(host, link)),
                             interface="127.0.0.1")  # fmt: skip
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)  # fills up soon
    yield threads.deferToThread(client.connect, ("127.0.0.1", port.getHost().port))
    yield until(lambda: made and made[0].session is not None, "the server side")
    return port, made[0], client


def read(client: socket.socket, n: int) -> bytes:
    """``n`` bytes from the client's socket (blocking: run in a thread)."""
    client.settimeout(30)
    got = bytearray()
    while len(got) < n:
        chunk = client.recv(1 << 16)
        if not chunk:
            break
        got += chunk
    return bytes(got)


@pytest_twisted.inlineCallbacks
def test_a_reply_goes_straight_to_the_socket() -> None:
    """On an idle plain TCP connection a reply is sent at once: nothing is left in the
    transport's buffer and the socket is not registered for writing."""
    from twisted.internet import reactor

    port, proto, client = yield connected()
    try:
        proto.send(b"\x7e reply \x7e")
        transport: Any = proto.transport
        assert not transport.dataBuffer and not transport._tempDataBuffer
        assert transport not in reactor.getWriters()
        got = yield threads.deferToThread(read, client, 9)
        assert got == b"\x7e reply \x7e"
    finally:
        client.close()
        yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_what_the_socket_does_not_take_waits_and_keeps_its_order() -> None:
    """A terminal that does not read: the first sends fill its socket, the rest wait in the
    transport's buffer, and the later ones queue behind them (none overtakes); once it
    reads, it gets every byte in the order sent."""
    port, proto, client = yield connected()
    try:
        transport: Any = proto.transport
        pieces: list[bytes] = []
        while not (transport.dataBuffer or transport._tempDataBuffer):  # until it fills up
            assert len(pieces) < 10_000, "64 MiB sent and none of it waits"
            pieces.append(f"{len(pieces):08d}".encode() * 512)  # 4 KiB each
            proto.send(pieces[-1])
        # The terminal reads a little (the reactor has not run: the buffer still waits), so
        # its socket has room again when the next sends come.
        head = read(client, 1 << 16)
        for _ in range(200):
            pieces.append(f"{len(pieces):08d}".encode() * 512)
            proto.send(pieces[-1])
        expected = b"".join(pieces)
        rest = yield threads.deferToThread(read, client, len(expected) - len(head))
        got = head + rest
        assert len(got) == len(expected)
        assert got == expected, "a later send overtook what was waiting"
    finally:
        client.close()
        yield port.stopListening()
