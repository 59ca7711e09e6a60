"""Registration's rate tables on their own: bounded counts in fixed windows."""

from __future__ import annotations

from twisted.internet import task

from cmsv6.terminal.registration import RateTable, Registrar, RegistrationPolicy, peer_host


def test_limit_per_key_and_window() -> None:
    """The N+1th event of a key in a window is refused; other keys are not; a new window
    starts the count again."""
    clock = task.Clock()
    table = RateTable(clock, limit=2, window=60.0)
    assert [table.hit("a"), table.hit("a"), table.hit("a"), table.hit("b")] == [True, True, False, True]
    clock.advance(60.0)
    assert table.hit("a") and len(table) == 1


def test_tables_are_capped() -> None:
    """A flood of distinct keys keeps at most max_entries of them (the oldest forgotten)."""
    clock = task.Clock()
    table = RateTable(clock, limit=1, window=3600.0, max_entries=100)
    for i in range(10_000):
        table.hit(f"10.0.{i // 256}.{i % 256}")
    assert len(table) == 100


def test_registrar_counts_address_and_phone() -> None:
    """Registrations are counted per source address (without its port) and per phone;
    the refusal says which bound and over what window."""
    clock = task.Clock()
    registrar = Registrar(RegistrationPolicy(per_address=2, per_phone=5, window=10.0), clock)
    assert registrar.admit("10.0.0.1:5000", "1") is None
    assert registrar.admit("10.0.0.1:5001", "2") is None
    assert registrar.admit("10.0.0.1:5002", "3") == "more than 2 registrations from this address in 10 s"
    assert registrar.admit("::1:5002", "3") is None and peer_host("::1:5002") == "::1"
    registrar = Registrar(RegistrationPolicy(per_address=9, per_phone=1), clock)
    assert registrar.admit("10.0.0.1:1", "7") is None
    assert registrar.admit("10.0.0.2:1", "7") == "more than 1 registrations of this phone in 60 s"
