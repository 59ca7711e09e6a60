"""One JT/T 808 terminal session layer, for every server a terminal talks to.

``protocol.TerminalProtocol`` is the thin Twisted protocol (bytes in, frames out, bounded
errors, flow control); ``session.TerminalSession`` is the logic behind it: serials,
replies in the terminal's own version, general responses, registration and
authentication against the database, the error policy. A server subclasses the session
for what it does once a terminal is authenticated (the gateway keeps it and stores its
reports; login points it at a gateway).
"""
