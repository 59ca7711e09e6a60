"""The demo's devices are the ones its simulator plays: the rows ``cmsv6 demo`` adds have
the phones and plates ``cmsv6 sim`` sends with the arguments the demo gives it."""

from __future__ import annotations

import argparse
from pathlib import Path

from twisted.internet.task import Clock

from cmsv6.demo import DEMO_FLEET, LOOPBACK, add_demo_devices, ports, sim_args
from cmsv6.phone import canonical_phone
from cmsv6.sim.cli import add_arguments, config_from_args
from cmsv6.sim.fleet import Fleet
from tests.support.database import query


def simulated(count: int) -> dict[str, tuple[str, int]]:
    """{canonical phone: (plate, camera channels)} of the DVRs ``cmsv6 sim`` plays with the
    demo's arguments."""
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    config = config_from_args(parser.parse_args(sim_args(Path("var"), ports(), LOOPBACK, count)))
    clock = Clock()
    fleet = Fleet(clock, config)
    fleet.start()  # nothing connects before the clock moves
    try:
        return {canonical_phone(d.phone): (d.plate, d.config.channels) for d in fleet.devices}
    finally:
        fleet.stop()
        clock.advance(config.stop_timeout)


def test_demo_rows_are_the_simulated_devices(dsn: str) -> None:
    """Each device the demo adds to its fleet has the plate its simulated DVR reports and
    the camera channels it has (so each channel the Open API lets a user watch streams)."""
    sim = simulated(12)
    assert len(sim) == 12
    add_demo_devices(dsn, 12)
    rows = query(dsn, "SELECT d.phone, d.plate, d.channels, f.name FROM devices d"
                      " JOIN fleets f ON f.id = d.fleet_id")  # fmt: skip
    assert {phone: (plate, channels) for phone, plate, channels, _ in rows} == sim
    assert {fleet for *_, fleet in rows} == {DEMO_FLEET}


def test_demo_cameras_are_two_h264_as_the_readme_says() -> None:
    """By default each demo DVR has 2 cameras, both H.264 (what every browser plays), and the
    README says 2; ``--h265-channels`` gives the simulator H.265 ones."""
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    config = config_from_args(parser.parse_args(sim_args(Path("var"), ports(), LOOPBACK, 3)))
    assert config.device.channels == 2
    assert not config.device.h265_channels
    readme = (Path(__file__).resolve().parents[1] / "README.rst").read_text(encoding="utf-8")
    assert f"each\nwith {config.device.channels} cameras" in readme
    h265 = config_from_args(parser.parse_args(sim_args(Path("var"), ports(), LOOPBACK, 3, "2")))
    assert set(h265.device.h265_channels) == {2}
