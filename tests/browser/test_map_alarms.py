"""The dispatcher's map and alarms in a real Chromium, against the whole system: each
simulated vehicle is a marker drawn where it reported and moved by the positions pushed
over the client WebSocket; an alarm the simulator raises arrives live, is handled with a
note, and the API says so."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.support import PHONES, USER, Browser, Page, System, poll, screenshot

pytestmark = pytest.mark.timeout(240)

MARKERS = """() => Object.fromEntries([...document.querySelectorAll('.vehicle-marker[data-phone]')]
    .map(m => [m.dataset.phone, [Number(m.dataset.lat), Number(m.dataset.lng)]]))"""
#: Where each marker is drawn (layer pixels, by phone).
DRAWN = """() => Object.fromEntries([...document.querySelectorAll('.vehicle-marker[data-phone]')]
    .map(m => { const at = L.DomUtil.getPosition(m); return [m.dataset.phone, [at.x, at.y]]; }))"""
#: Markers drawn somewhere else than their data-lat and data-lng say (pixels off, by phone):
#: the attributes are the drawn place, so a change of them is a marker moving on the map.
MISPLACED = """() => {
    const map = window.cmsv6.map.leaflet;
    const out = {};
    for (const m of document.querySelectorAll('.vehicle-marker[data-phone]')) {
        const drawn = L.DomUtil.getPosition(m);
        const said = map.latLngToLayerPoint([Number(m.dataset.lat), Number(m.dataset.lng)]);
        const off = Math.hypot(drawn.x - said.x, drawn.y - said.y);
        if (off > 1) out[m.dataset.phone] = off;
    }
    return out;
}"""


def _reported(system: System, token: str, phone: str) -> set[tuple[float, float]]:
    """Where ``phone`` reported in the last minutes, as the API gives it (6 decimals)."""
    status, body = system.api("GET", f"/api/v1/devices/{phone}/positions?limit=1000", token=token)
    assert status == 200, body
    return {(round(p["latitude"], 6), round(p["longitude"], 6)) for p in body["positions"]}


def test_vehicles_appear_and_their_markers_move(system: System, browser: Browser) -> None:
    """Signed in, the map has one marker per vehicle, drawn where its vehicle reported; as
    positions arrive over /ws every marker moves on the map, each to a place its vehicle
    reported."""
    token = system.token()

    def steps(context: Any) -> None:
        client = Page(context, system)
        page = client.sign_in()
        page.wait_for_function("n => document.querySelectorAll('.vehicle-marker[data-phone]').length === n",
                               arg=len(PHONES))  # fmt: skip
        first = page.evaluate(MARKERS)
        assert sorted(first) == sorted(PHONES)
        assert page.evaluate(MISPLACED) == {}
        screenshot(page, "10-map")
        # Close enough that a position's step (a few tens of metres) is pixels on the map.
        page.evaluate("() => window.cmsv6.map.leaflet.setZoom(16, {animate: false})")
        drawn = page.evaluate(DRAWN)
        page.wait_for_function(f"""drawn => {{
            const now = ({DRAWN})();
            return Object.keys(drawn).every(p => now[p] && Math.hypot(now[p][0] - drawn[p][0], now[p][1] - drawn[p][1]) > 2);
        }}""", arg=drawn, timeout=20_000)  # fmt: skip
        moved = page.evaluate(MARKERS)
        assert page.evaluate(MISPLACED) == {}
        for phone, (lat, lng) in moved.items():
            # Where the vehicle really was: the marker's place is one of its reports.
            spot = (round(lat, 6), round(lng, 6))
            poll(lambda: spot in _reported(system, token, phone),
                 f"{phone}'s marker at {spot}, a place it reported")  # fmt: skip
        screenshot(page, "11-map-moved")
        client.assert_no_errors()
        client.close()

    browser.run(steps)


def test_an_alarm_arrives_live_and_is_handled(system: System, browser: Browser) -> None:
    """An alarm the simulator raises while the alarms view is open appears in it, marked
    new; handled with a note in the page, it is marked handled and the API has its state,
    note and handler."""
    token = system.token()

    def steps(context: Any) -> None:
        client = Page(context, system)
        page = client.sign_in()
        page.click("nav#tabs button[data-view=alarms]")
        page.wait_for_selector("#view-alarms", state="visible")
        page.wait_for_selector("#alarm-list .alarm.new[data-id]", timeout=60_000)
        alarm = page.get_attribute("#alarm-list .alarm.new[data-id]", "data-id")
        assert alarm is not None
        row = f"#alarm-list .alarm[data-id='{alarm}']"
        screenshot(page, "20-alarm-arrived")
        page.click(f"{row} button.alarm-handle")
        page.wait_for_selector("textarea#alarm-note", state="visible")
        note = f"called the driver of alarm {alarm}"
        page.fill("textarea#alarm-note", note)
        screenshot(page, "21-alarm-note")
        page.click("button#alarm-note-save")
        page.wait_for_selector(f"{row}.handled")
        screenshot(page, "22-alarm-handled")
        client.assert_no_errors()
        client.close()
        return alarm

    alarm = browser.run(steps)
    status, body = system.api("GET", "/api/v1/alarms?state=handled&limit=1000", token=token)
    assert status == 200, body
    (handled,) = [a for a in body["alarms"] if str(a["id"]) == alarm]
    assert handled["phone"] in PHONES
    assert handled["note"] == f"called the driver of alarm {alarm}" and handled["handled_by"] == USER
