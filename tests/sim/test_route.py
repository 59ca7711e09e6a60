"""Vehicle movement and server addresses."""

from __future__ import annotations

from random import Random

import pytest

from cmsv6.sim.address import host_port, parse_server, tcp_endpoint
from cmsv6.sim.route import Area, Vehicle


def test_vehicles_spread_around_the_centre_and_stay_near() -> None:
    """Start points lie within the start radius; over hours vehicles stay near the city,
    at 20-80 km/h, with headings that change by small steps."""
    area = Area()
    rng = Random(3)
    for n in range(20):
        v = Vehicle.spawn(area, rng, 0.0)
        assert v.distance_from(area.latitude, area.longitude) <= area.start_radius_km * 1000 + 1
        heading = v.heading
        for i in range(1, 2000):
            v.advance(i * 10.0, area, rng)
            assert area.min_speed <= v.speed <= area.max_speed
            turn = abs((v.heading - heading + 180) % 360 - 180)
            assert turn <= 45 + 1e-9
            heading = v.heading
        assert v.distance_from(area.latitude, area.longitude) < area.max_radius_km * 1000 * 1.5
        assert v.odometer_m > 20_000 / 3.6 * 2000 * 10 / 1000


def test_speed_changes_smoothly() -> None:
    """Speed moves towards its target by at most 5 km/h per second."""
    area = Area()
    rng = Random(5)
    v = Vehicle.spawn(area, rng, 0.0)
    speed = v.speed
    for i in range(1, 500):
        v.advance(float(i), area, rng)
        assert abs(v.speed - speed) <= 5.0 + 1e-9
        speed = v.speed


@pytest.mark.parametrize(
    "description, expected",
    [
        ("tcp:127.0.0.1:7611", ("127.0.0.1", 7611)),
        ("tcp:host=gw.example:port=7611:timeout=5", ("gw.example", 7611)),
        (tcp_endpoint("::1", 6608), ("::1", 6608)),
        (tcp_endpoint("10.0.0.1", 1), ("10.0.0.1", 1)),
        ("unix:/tmp/socket", None),
        ("tcp:127.0.0.1", None),
    ],
)
def test_host_port(description: str, expected: tuple[str, int] | None) -> None:
    """Host and port are read back from endpoint strings, escapes included."""
    assert host_port(description) == expected


@pytest.mark.parametrize(
    "value, default, expected",
    [
        ("10.0.0.1", 7611, ("10.0.0.1", 7611)),
        ("10.0.0.1:6608", 7611, ("10.0.0.1", 6608)),
        ("gw1:7000;gw2:7001", None, ("gw1", 7000)),
        ("[::1]:7000", None, ("::1", 7000)),
        ("::1", 7611, ("::1", 7611)),
        ("", 7611, None),
    ],
)
def test_parse_server(value: str, default: int | None, expected: object) -> None:
    """0x0013/0x0017 values: a host, host:port (2019), or a list whose first entry counts."""
    assert parse_server(value, default) == expected
