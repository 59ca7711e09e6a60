"""Plausible vehicle movement: start points spread around a city, speeds of 20-80 km/h that
change smoothly, headings that drift and bend back towards the city when a vehicle wanders
too far. Pure: time comes in as ``now``, randomness from the caller's ``Random``.
"""

from __future__ import annotations

import math
from random import Random

from attrs import frozen

#: Metres per degree of latitude (and of longitude at the equator).
METRES_PER_DEGREE = 111_320.0

#: Shenzhen, Futian.
SHENZHEN = (22.54, 114.06)


@frozen
class Area:
    """Where vehicles drive: a centre, the radius their start points are spread over and the
    radius beyond which they turn back, and their speed range (km/h)."""

    latitude: float = SHENZHEN[0]
    longitude: float = SHENZHEN[1]
    start_radius_km: float = 15.0
    max_radius_km: float = 30.0
    min_speed: float = 20.0
    max_speed: float = 80.0


class Vehicle:
    """One vehicle's state. ``advance(now)`` moves it along its heading since the last call."""

    __slots__ = (
        "latitude",
        "longitude",
        "altitude",
        "heading",
        "speed",
        "target_speed",
        "odometer_m",
        "time",
    )

    def __init__(
        self,
        latitude: float,
        longitude: float,
        heading: float,
        speed: float,
        time: float,
        altitude: float = 30.0,
        odometer_m: float = 0.0,
    ) -> None:
        self.latitude = latitude
        self.longitude = longitude
        self.altitude = altitude
        self.heading = heading
        self.speed = speed
        self.target_speed = speed
        self.odometer_m = odometer_m
        self.time = time

    @classmethod
    def spawn(cls, area: Area, rng: Random, now: float) -> Vehicle:
        """A vehicle at a random point within ``area.start_radius_km`` of the centre."""
        r = area.start_radius_km * 1000 * math.sqrt(rng.random())
        theta = rng.random() * 2 * math.pi
        lat = area.latitude + r * math.cos(theta) / METRES_PER_DEGREE
        lon = area.longitude + r * math.sin(theta) / (
            METRES_PER_DEGREE * math.cos(math.radians(area.latitude))
        )
        speed = rng.uniform(area.min_speed, area.max_speed)
        return cls(lat, lon, rng.uniform(0, 360), speed, now, rng.uniform(5, 80))

    def distance_from(self, latitude: float, longitude: float) -> float:
        """Metres to a point (equirectangular: good enough within a city)."""
        dy = (self.latitude - latitude) * METRES_PER_DEGREE
        dx = (self.longitude - longitude) * METRES_PER_DEGREE * math.cos(math.radians(latitude))
        return math.hypot(dx, dy)

    def advance(self, now: float, area: Area, rng: Random) -> None:
        dt = now - self.time
        if dt <= 0:
            return
        self.time = now
        # A new cruising speed now and then (about once a minute); speed follows it at up to
        # 5 km/h per second, so it never jumps.
        if rng.random() < min(1.0, dt / 60):
            self.target_speed = rng.uniform(area.min_speed, area.max_speed)
        step = min(abs(self.target_speed - self.speed), 5.0 * dt)
        self.speed += step if self.target_speed > self.speed else -step
        # Headings drift a few degrees per report; beyond the outer radius they turn back
        # towards the centre, at most 10 degrees per second. No report turns more than 45.
        if self.distance_from(area.latitude, area.longitude) > area.max_radius_km * 1000:
            home = math.degrees(
                math.atan2(
                    (area.longitude - self.longitude) * math.cos(math.radians(area.latitude)),
                    area.latitude - self.latitude,
                )
            )
            turn = (home - self.heading + 180) % 360 - 180
            limit = min(10 * dt, 45.0)
            self.heading += max(-limit, min(limit, turn))
        else:
            self.heading += max(-30.0, min(30.0, rng.gauss(0, 4) * math.sqrt(min(dt, 60))))
        self.heading %= 360
        metres = self.speed / 3.6 * dt
        rad = math.radians(self.heading)
        self.latitude += metres * math.cos(rad) / METRES_PER_DEGREE
        self.longitude += metres * math.sin(rad) / (
            METRES_PER_DEGREE * math.cos(math.radians(self.latitude))
        )
        self.altitude = max(0.0, min(500.0, self.altitude + rng.gauss(0, 0.5)))
        self.odometer_m += metres
