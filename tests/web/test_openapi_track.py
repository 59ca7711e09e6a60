"""GET /api/v1/devices/{phone}/track: a device's positions as a GeoJSON FeatureCollection
(RFC 7946: longitude first), a LineString of the page then a Point per position, paged
as positions are."""

from __future__ import annotations

from datetime import timedelta

import attrs
import pytest_twisted

from tests.web.support import NORTH, SOUTH, T0, Web, call, login, position_row, store_positions


@pytest_twisted.inlineCallbacks
def test_track_is_geojson_longitude_first_and_paged(web: Web) -> None:
    """Three positions in pages of two: the first page's LineString has both, [lon, lat];
    its Points carry time, speed and named alarm bits; `next` leads to a last page of one
    position (a Point and no LineString: a line needs two)."""
    device = web.device_id(NORTH)
    rows = [position_row(device, T0 + timedelta(seconds=10 * i), lat=22.5 + i / 100, lon=114.0 + i / 10)
            for i in range(3)]  # fmt: skip
    rows[1] = attrs.evolve(rows[1], alarm=0b11)
    yield store_positions(web, rows)
    token = yield login(web, "root")
    url = f"/api/v1/devices/{NORTH}/track?from=2026-11-25T00:00:00Z&limit=2"
    page = yield call(web, "GET", url, token=token)
    assert page.status == 200, page.body
    body = page.body
    assert body["type"] == "FeatureCollection" and body["phone"] == NORTH
    line, *points = body["features"]
    assert line["geometry"] == {"type": "LineString", "coordinates": [[114.0, 22.5], [114.1, 22.51]]}
    assert line["properties"]["points"] == 2
    assert [p["geometry"] for p in points] == [{"type": "Point", "coordinates": [114.0, 22.5]},
                                               {"type": "Point", "coordinates": [114.1, 22.51]}]  # fmt: skip
    assert points[0]["properties"]["time"] == T0.isoformat()
    assert points[0]["properties"]["speed"] == 40.0 and points[0]["properties"]["alarms"] == []
    assert points[1]["properties"]["alarm"] == 3
    assert points[1]["properties"]["alarms"] == ["emergency", "overspeed"]
    assert body["next"]
    last = yield call(web, "GET", f"{url}&after={body['next']}", token=token)
    assert [f["geometry"]["type"] for f in last.body["features"]] == ["Point"]
    assert last.body["features"][0]["geometry"]["coordinates"] == [114.2, 22.52]
    assert last.body["next"] is None
    olga = yield login(web, "olga")  # an operator of the north fleet: not the south's device
    hidden = yield call(web, "GET", f"/api/v1/devices/{SOUTH}/track", token=olga)
    assert hidden.status == 404
