"""The browser tests' harness: the whole system as real processes on loopback (PostgreSQL,
``twistd login`` serving the web client, ``twistd gateway``, ``twistd media`` and
``cmsv6 sim`` DVRs arriving through login), and Debian's Chromium driven by Playwright.

Why Playwright's sync API in a thread of its own: the suite runs under pytest-twisted,
whose reactor runs in a greenlet of the main thread, and Playwright's sync API runs its own
event loop in greenlets too. Kept in one worker thread (``Browser.run``), the two never
meet, nothing blocks the reactor, and a test reads as the steps a user takes. The tests
themselves are plain functions: the servers are processes, so nothing here needs the
reactor.

Screenshots of each step go to ``var/artifacts/browser/`` (git-ignored; ``$CMSV6_ARTIFACTS``
elsewhere), and the path is printed at the end of the run.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, TypeVar

from cmsv6.db.devices import add_device
from cmsv6.db.users import add_user
from tests.support.process import GatewayProcess, LoginProcess, MediaProcess, free_port

ROOT = Path(__file__).resolve().parents[2]
CMSV6 = str(Path(sys.executable).with_name("cmsv6"))
VENDOR = ROOT / "cmsv6" / "web" / "client" / "vendor"
ARTIFACTS = Path(os.environ.get("CMSV6_ARTIFACTS", ROOT / "var" / "artifacts" / "browser"))
#: Where Debian installs Chromium (``apt-get install chromium``).
CHROMIUM = "/usr/bin/chromium"
#: What Chromium needs here: no sandbox as root, no GPU, no network of its own, and video
#: that may start without a click (tests play unmuted players).
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--autoplay-policy=no-user-gesture-required"]  # fmt: skip
USER, PASSWORD = "dispatcher", "dispatcher-password"
FLEET = "buses"
#: The simulator's DVRs (12 digits: a 2013 header) and how the API names them.
SIM_FIRST = "013700000001"
DEVICES = 4
PHONES = [str(13700000001 + i) for i in range(DEVICES)]
#: A device of the fleet no simulator plays: listed, offline, and it never answers.
OFFLINE = "13700000099"
PLATE_PREFIX = "粤T"
CHANNELS = 2
#: A position a second (markers move while a test watches), and an emergency alarm now and
#: then (one among the DVRs every few seconds).
SIM_INTERVAL = 1
ALARM_PROBABILITY = 0.05
#: Seconds the system has to come up (the simulator's clip encoded on a cold cache
#: included), and any one step in the browser.
UP = 90.0
STEP = 15.0

T = TypeVar("T")


def missing() -> str | None:
    """Why the browser tests cannot run here, in words with the command that fixes it; None
    when they can."""
    if not Path(CHROMIUM).is_file():
        how = ("run `make test` as root, or `apt-get install -y chromium`" if os.geteuid() == 0
               else "`sudo apt-get install -y chromium` (or run `make test` as root)")  # fmt: skip
        return f"Debian's Chromium is not installed at {CHROMIUM}: {how}"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Python Playwright is not installed: `pip install -e '.[test]'` (never `playwright install`)"
    if not (VENDOR / "leaflet" / "leaflet.js").is_file():
        return "the web client's npm packages are not in cmsv6/web/client/vendor/: run `make client`"
    return None


def poll(predicate: Callable[[], T], what: str, timeout: float = STEP, every: float = 0.2) -> T:
    """``predicate()``'s first true value, checked every ``every`` s for at most ``timeout``
    s; then an AssertionError naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"gave up waiting {timeout:g} s for {what}")
        time.sleep(every)


def text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


class System:
    """Login (the web client on its ``web`` port; no map tiles: no network here), a gateway,
    a media server and ``DEVICES`` simulated DVRs with ``CHANNELS`` H.264 cameras each, on
    the database at ``dsn``."""

    def __init__(self, dsn: str, directory: Path) -> None:
        self.dsn = dsn
        self.directory = directory
        for name in ("login", "gw", "media"):
            (directory / name).mkdir(exist_ok=True)
        self.login = LoginProcess(dsn, directory / "login", "login", "--tiles", "",
                                  "--poll_interval", "0.2")  # fmt: skip
        port = free_port()
        self.gateway = GatewayProcess(dsn, port, directory / "gw", "--id", "gw-1",
                                      "--public_jt808", f"127.0.0.1:{port}",
                                      "--login", self.login.client_cluster)  # fmt: skip
        self.media = MediaProcess(directory / "media", [self.login.client_cluster], "media-1",
                                  "--linger", "1")  # fmt: skip
        self.sim_log = directory / "sim.log"
        self.sim: subprocess.Popen[bytes] | None = None

    @property
    def web(self) -> str:
        return f"http://127.0.0.1:{self.login.web}"

    def start(self) -> None:
        add_user(self.dsn, USER, PASSWORD, admin=True, fleets=[FLEET])
        for i, phone in enumerate(PHONES):
            add_device(self.dsn, phone, plate=f"{PLATE_PREFIX}{i + 1:05d}", fleet=FLEET,
                       channels=CHANNELS)  # fmt: skip
        add_device(self.dsn, OFFLINE, plate=f"{PLATE_PREFIX}00099", fleet=FLEET, channels=CHANNELS)
        self.login.start()
        self.gateway.start()
        poll(lambda: "gateway gw-1 is live" in text(self.login.log), "the gateway announced", UP)
        self.media.start()
        poll(lambda: "media server media-1 is live" in text(self.login.log), "media announced", UP)
        with open(self.sim_log, "ab") as out:
            self.sim = subprocess.Popen(
                [CMSV6, "sim", "--server", f"tcp:127.0.0.1:{self.login.jt808}",
                 "--devices", str(DEVICES), "--first-phone", SIM_FIRST,
                 "--plate-prefix", PLATE_PREFIX, "--channels", str(CHANNELS),
                 "--interval", str(SIM_INTERVAL), "--alarm-probability", str(ALARM_PROBABILITY),
                 "--gap-probability", "0", "--state", str(self.directory / "sim-state.json")],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        token = self.token()
        poll(lambda: all(d["online"] for d in self.api("GET", "/api/v1/devices", token=token)[1]
                         if d["phone"] in PHONES),
             f"every simulated DVR online:\n{text(self.sim_log)[-2000:]}", UP)  # fmt: skip

    def stop(self) -> None:
        if self.sim is not None and self.sim.poll() is None:
            self.sim.send_signal(signal.SIGINT)
            try:
                self.sim.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.sim.kill()
                self.sim.wait()
        self.media.stop()
        self.gateway.stop()
        self.login.stop()

    def api(self, method: str, path: str, body: Any = None, token: str = "") -> tuple[int, Any]:
        """(status, JSON) of an Open API request."""
        request = urllib.request.Request(
            f"{self.web}{path}", method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"authorization": f"Bearer {token}"} if token else {},
        )  # fmt: skip
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as e:
            return e.code, json.load(e)

    def media_gauge(self, name: str) -> float:
        """A gauge of the media server's /metrics."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.media.metrics}/metrics", timeout=10) as r:
            for line in r.read().decode().splitlines():
                if line.startswith(name + " "):
                    return float(line.split()[1])
        raise AssertionError(f"no {name} in the media server's metrics")

    def token(self) -> str:
        status, body = self.api("POST", "/api/v1/login", {"username": USER, "password": PASSWORD})
        assert status == 200, body
        return str(body["token"])


class Browser:
    """Chromium (a fresh profile) driven from one thread of its own: ``run(steps)`` calls
    ``steps(context)`` there and gives back its result or raises its exception."""

    def __init__(self) -> None:
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chromium")
        self._profile = tempfile.mkdtemp(prefix="cmsv6-chromium-")
        self._playwright: Any = None
        self.context: Any = None
        self.run(lambda _: self._start())

    def _start(self) -> None:
        from playwright.sync_api import sync_playwright

        self._playwright = sync_playwright().start()
        self.context = self._playwright.chromium.launch_persistent_context(
            self._profile, executable_path=CHROMIUM, args=FLAGS, headless=True,
            viewport={"width": 1280, "height": 800},
        )  # fmt: skip
        self.context.set_default_timeout(STEP * 1000)

    def run(self, steps: Callable[[Any], T], timeout: float = 120.0) -> T:
        assert threading.current_thread() is not getattr(self._thread, "_worker", None)
        return self._thread.submit(steps, self.context).result(timeout=timeout)

    def close(self) -> None:
        def stop(_: Any) -> None:
            if self.context is not None:
                self.context.close()
            if self._playwright is not None:
                self._playwright.stop()

        try:
            self.run(stop, timeout=60)
        finally:
            self._thread.shutdown(wait=False)
            shutil.rmtree(self._profile, ignore_errors=True)


#: Screenshots taken in this run, and figures measured, for the summary at its end.
TAKEN: list[Path] = []
MEASURED: list[str] = []


def screenshot(page: Any, name: str, path: Path | None = None) -> Path:
    """A screenshot of ``page`` kept as ``ARTIFACTS/name.png`` (or at ``path``)."""
    target = path or ARTIFACTS / f"{name}.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(target))
    TAKEN.append(target)
    return target


class Page:
    """A page of the client with what went wrong in it: uncaught errors, and console errors."""

    def __init__(self, context: Any, system: System) -> None:
        self.page = context.new_page()
        self.system = system
        self.errors: list[str] = []
        self.console: list[str] = []
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}")
                     if m.type in ("error", "warning") else None)  # fmt: skip

    def open(self, fresh: bool = True) -> Any:
        """The client's page; ``fresh``: signed out first (the profile's storage is shared by
        every test's pages)."""
        if fresh:
            # Cleared on a page of the same origin that runs no script: the client, booting
            # with a token an earlier test left, may reload itself (a refused token) while
            # the test navigates, and one navigation then aborts the other.
            self.page.goto(self.system.web + "/client/config.json")
            self.page.evaluate("() => { localStorage.clear(); sessionStorage.clear(); }")
        self.page.goto(self.system.web + "/")
        return self.page

    def sign_in(self, user: str = USER, password: str = PASSWORD) -> Any:
        page = self.open()
        page.fill("form#signin input[name=username]", user)
        page.fill("form#signin input[name=password]", password)
        page.click("form#signin button[type=submit]")
        page.wait_for_function("n => document.querySelector('#user')?.textContent.includes(n)", arg=user)
        return page

    def close(self) -> None:
        self.page.close()

    def assert_no_errors(self) -> None:
        assert not self.errors, f"uncaught errors in the page: {self.errors}\nconsole: {self.console}"
