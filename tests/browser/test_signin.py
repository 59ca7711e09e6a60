"""A dispatcher signs in and out of the web client in a real Chromium, against the whole
system: a wrong password is said in words, the vehicles are listed once signed in, a reload
keeps the session and signing out ends it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.browser.support import (
    OFFLINE, PHONES, PLATE_PREFIX, USER, Browser, Page, System, screenshot,
)  # fmt: skip

pytestmark = pytest.mark.timeout(240)


def test_sign_in_reload_and_sign_out(system: System, browser: Browser) -> None:
    """A wrong password shows why in ``#signin-error``; the right one shows the user's name
    and lists every vehicle with its plate and phone, online but one no DVR plays; a reload keeps the user signed
    in; signing out shows the sign-in form again, and a reload then does not sign in."""

    def steps(context: Any) -> None:
        client = Page(context, system)
        page = client.open()
        page.wait_for_selector("form#signin", state="visible")
        screenshot(page, "01-signin")
        page.fill("form#signin input[name=username]", USER)
        page.fill("form#signin input[name=password]", "not the password")
        page.click("form#signin button[type=submit]")
        page.wait_for_function("() => document.querySelector('#signin-error')?.textContent.trim()")
        why = page.inner_text("#signin-error")
        assert "password" in why.lower() or "invalid" in why.lower(), why
        screenshot(page, "02-signin-refused")

        page = client.sign_in()
        page.wait_for_function("n => document.querySelectorAll('#vehicles .vehicle[data-phone]').length === n",
                               arg=len(PHONES) + 1)  # fmt: skip
        listed = page.eval_on_selector_all(
            "#vehicles .vehicle[data-phone]",
            "els => els.map(e => [e.dataset.phone, e.textContent, e.classList.contains('online')])")
        assert sorted(phone for phone, _, _ in listed) == sorted([*PHONES, OFFLINE])
        for phone, words, online in listed:
            number = PHONES.index(phone) + 1 if phone in PHONES else 99
            assert phone in words and f"{PLATE_PREFIX}{number:05d}" in words, words
        page.wait_for_function("n => document.querySelectorAll('#vehicles .vehicle.online').length === n",
                               arg=len(PHONES))  # fmt: skip
        assert page.is_visible(f"#vehicles .vehicle[data-phone='{OFFLINE}']:not(.online)")
        assert page.evaluate("() => localStorage.getItem('cmsv6.token')")
        screenshot(page, "03-signed-in")

        page.reload()
        page.wait_for_function("n => document.querySelector('#user')?.textContent.includes(n)", arg=USER)
        assert page.is_hidden("form#signin")

        page.click("button#signout")
        page.wait_for_selector("form#signin", state="visible")
        assert not page.evaluate("() => localStorage.getItem('cmsv6.token')")
        page.reload()
        page.wait_for_selector("form#signin", state="visible")
        screenshot(page, "04-signed-out")
        client.assert_no_errors()
        client.close()

    browser.run(steps)


def test_readme_screenshot(system: System, browser: Browser) -> None:
    """With ``CMSV6_SCREENSHOT=docs/screenshot.png``, the signed-in client (the map with
    its vehicles, one selected) is written there for the README."""
    target = os.environ.get("CMSV6_SCREENSHOT")
    if not target:
        pytest.skip("CMSV6_SCREENSHOT is not set (e.g. CMSV6_SCREENSHOT=docs/screenshot.png)")

    def steps(context: Any) -> None:
        client = Page(context, system)
        page = client.sign_in()
        page.wait_for_function("n => document.querySelectorAll('.vehicle-marker[data-phone]').length === n",
                               arg=len(PHONES))  # fmt: skip
        page.click(f"#vehicles .vehicle[data-phone='{PHONES[0]}']")
        page.wait_for_function("p => document.querySelector('#vehicle-panel')?.dataset.phone === p",
                               arg=PHONES[0])  # fmt: skip
        page.wait_for_function("() => !document.querySelector('.leaflet-zoom-anim, .leaflet-pan-anim')")
        screenshot(page, "readme", Path(target))
        client.close()

    browser.run(steps)


def test_a_client_without_its_vendor_files_says_what_to_run(system: System, browser: Browser) -> None:
    """Where ``make client`` never ran, the server answers every ``/vendor/...`` file with a
    503 naming the command (tests/browser/test_serving.py); the page then shows those words
    instead of breaking. The server's answer is stood in for by the browser here (the system
    under test has its vendor files)."""
    words = "the web client's third-party files are not installed here: run `make client`"

    def steps(context: Any) -> None:
        client = Page(context, system)
        page = client.page
        page.route("**/vendor/**", lambda route: route.fulfill(
            status=503, content_type="text/plain; charset=utf-8", body=words))
        page.goto(system.web + "/")
        page.wait_for_selector("#vendor-missing", state="visible")
        assert words in page.inner_text("#vendor-missing")
        assert page.query_selector("form#signin") is None
        screenshot(page, "05-vendor-missing")
        client.close()

    browser.run(steps)
