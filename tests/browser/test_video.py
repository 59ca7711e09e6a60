"""Video in a real Chromium, against the whole system: a pane of the wall plays a simulated
camera (mpegts.js over WS-FLV: decoded frames rise, no player error), a device that does
not answer is said in words, a 4-pane wall plays four streams at once, and a recording is
played back and seeks (the device acknowledges the seek and pictures go on)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from tests.browser.support import (
    MEASURED, OFFLINE, PHONES, Browser, Page, System, poll, screenshot,
)  # fmt: skip
from tests.support.database import query

pytestmark = pytest.mark.timeout(240)

#: Decoded frames that show a stream plays on (the clip is 25 fps: about a second).
FRAMES = 25
PANE = "(i => { const p = window.cmsv6 && window.cmsv6.panes && window.cmsv6.panes[i]; return p ? " \
       "{state: p.state, message: p.message || '', first: p.firstFrameMs ?? null, " \
       "frames: p.video.getVideoPlaybackQuality().totalVideoFrames, width: p.video.videoWidth} : null; })"


def _pane(page: Any, index: int) -> dict[str, Any]:
    return page.evaluate(f"() => {PANE}({index})")  # type: ignore[no-any-return]


def _choose(page: Any, index: int, phone: str, channel: int) -> None:
    pane = f"#wall .pane[data-index='{index}']"
    page.select_option(f"{pane} select.pane-vehicle", phone)
    page.select_option(f"{pane} select.pane-channel", str(channel))


def _playing_on(page: Any, panes: list[int], what: str) -> None:
    """Every pane of ``panes`` plays: state "playing", a picture, and ``FRAMES`` more frames
    decoded while none of them is in error."""
    page.wait_for_function(f"""panes => panes.every(i => {{
        const p = {PANE}(i);
        if (p && p.state === 'error') throw new Error(`pane ${{i}}: ${{p.message}}`);
        return p && p.state === 'playing' && p.frames > 0 && p.width > 0;
    }})""", arg=panes)  # fmt: skip
    before = {i: _pane(page, i)["frames"] for i in panes}
    page.wait_for_function(f"""([panes, before, more]) => panes.every(i => {{
        const p = {PANE}(i);
        if (p.state === 'error') throw new Error(`pane ${{i}}: ${{p.message}}`);
        return p.frames >= before[i] + more;
    }})""", arg=[panes, before, FRAMES])  # fmt: skip
    for i in panes:
        assert _pane(page, i)["state"] == "playing", (what, i, _pane(page, i))


def test_a_pane_plays_and_an_absent_device_is_said(system: System, browser: Browser) -> None:
    """One pane given a simulated camera plays it (frames rise, no error; how long it took
    is printed); a pane given a device that no DVR plays says so in words."""

    def steps(context: Any) -> None:
        client = Page(context, system)
        page = client.sign_in()
        page.click("nav#tabs button[data-view=video]")
        page.wait_for_selector("#wall select#wall-layout", state="visible")
        page.select_option("select#wall-layout", "1")
        page.wait_for_function("() => document.querySelectorAll('#wall .pane[data-index]').length === 1")
        _choose(page, 0, PHONES[0], 1)
        _playing_on(page, [0], "one pane")
        first = _pane(page, 0)["first"]
        MEASURED.append(f"a pane's first picture {first} ms after it was opened (the issue asks 3000 at most)")
        screenshot(page, "30-pane-playing")

        page.select_option("select#wall-layout", "4")
        page.wait_for_function("() => document.querySelectorAll('#wall .pane[data-index]').length === 4")
        _choose(page, 1, OFFLINE, 1)
        page.wait_for_function(f"() => {PANE}(1)?.state === 'error'")
        words = page.inner_text("#wall .pane[data-index='1'] .pane-message")
        assert page.is_visible("#wall .pane[data-index='1'] .pane-message")
        assert "offline" in words.lower() or "not connected" in words.lower() or "answer" in words.lower(), words
        screenshot(page, "31-pane-offline")
        client.assert_no_errors()
        client.close()

    browser.run(steps)


def test_a_four_pane_wall_plays_four_streams(system: System, browser: Browser) -> None:
    """A 4-pane wall given both cameras of two vehicles plays all four at once: four
    streams on the media server, each pane's frames rising."""

    def steps(context: Any) -> None:
        client = Page(context, system)
        page = client.sign_in()
        page.click("nav#tabs button[data-view=video]")
        page.wait_for_selector("#wall select#wall-layout", state="visible")
        page.select_option("select#wall-layout", "4")
        page.wait_for_function("() => document.querySelectorAll('#wall .pane[data-index]').length === 4")
        for index, (phone, channel) in enumerate([(PHONES[1], 1), (PHONES[1], 2), (PHONES[2], 1), (PHONES[2], 2)]):
            _choose(page, index, phone, channel)
        _playing_on(page, [0, 1, 2, 3], "four panes")
        # Four streams, not one played four times: the media server receives four at once
        # (a stream of an earlier test goes a second after its last viewer).
        poll(lambda: system.media_gauge("cmsv6_media_streams") == 4 and
             system.media_gauge("cmsv6_media_viewers") == 4, "four streams and viewers on the media server")
        screenshot(page, "32-wall-of-four")
        client.assert_no_errors()
        client.close()

    browser.run(steps)


def _controls(dsn: str, phone: str) -> list[tuple[str, Any]]:
    """(status, body) of each 0x9202 (playback control) sent to ``phone``."""
    rows = query(dsn, "SELECT c.status, c.body FROM commands c JOIN devices d ON d.id = c.device_id"
                      " WHERE d.phone = %s AND c.msg_id = %s ORDER BY c.id", (phone, 0x9202))  # fmt: skip
    return [(status, body) for status, body in rows]


PLAYBACK = """() => { const p = window.cmsv6 && window.cmsv6.playback; return p ? {state: p.state,
    session: p.session, position: p.position,
    frames: p.video ? p.video.getVideoPlaybackQuality().totalVideoFrames : 0} : null; }"""


def test_a_recording_plays_back_and_seeks(system: System, browser: Browser) -> None:
    """A vehicle's recordings of today are listed; one plays (frames rise); a seek to 20 s
    after its start reaches the device as 0x9202 "seek" to that time, which it acknowledges,
    and pictures go on from there."""
    phone = PHONES[3]

    def steps(context: Any) -> None:
        client = Page(context, system)
        page = client.sign_in()
        page.click("nav#tabs button[data-view=recordings]")
        page.wait_for_selector("#recordings-form", state="visible")
        page.select_option("#recordings-form select[name=vehicle]", phone)
        page.select_option("#recordings-form select[name=channel]", "1")
        page.click("#recordings-form button[type=submit]")
        page.wait_for_selector("#recording-list .recording .recording-play")
        screenshot(page, "40-recordings")
        recording = page.locator("#recording-list .recording").last
        start = recording.get_attribute("data-start")
        assert start is not None
        recording.locator(".recording-play").click()
        page.wait_for_function(f"() => {{ const p = ({PLAYBACK})(); "
                               "if (p && p.state === 'error') throw new Error('playback failed'); "
                               "return p && p.state === 'playing' && p.frames > 0; }")  # fmt: skip
        before = page.evaluate(PLAYBACK)["frames"]
        page.wait_for_function(f"n => ({PLAYBACK})().frames >= n", arg=before + FRAMES)
        screenshot(page, "41-playback")
        sent = len(_controls(system.dsn, phone))
        target = datetime.fromisoformat(start) + timedelta(seconds=20)  # in the device's zone
        when = target.strftime("%H:%M:%S")
        page.fill("input#pb-seek", when)
        page.click("button#pb-seek-go")
        poll(lambda: [status for status, _ in _controls(system.dsn, phone)[sent:]] == ["replied"],
             "the device acknowledging the seek")  # fmt: skip
        ((_, body),) = _controls(system.dsn, phone)[sent:]
        # Channel 1, action 5 (seek), no speed, the target as BCD yymmddhhmmss.
        assert body["hex"] == "010500" + target.strftime("%y%m%d%H%M%S"), body
        page.wait_for_function(f"() => ({PLAYBACK})().position?.slice(11, 19) >= '{when}'")
        after = page.evaluate(PLAYBACK)["frames"]
        page.wait_for_function(f"n => {{ const p = ({PLAYBACK})(); "
                               "if (p.state === 'error') throw new Error('playback failed after the seek'); "
                               "return p.frames >= n; }", arg=after + FRAMES)  # fmt: skip
        assert page.evaluate(PLAYBACK)["state"] == "playing"
        screenshot(page, "42-playback-sought")
        client.assert_no_errors()
        client.close()

    browser.run(steps)
