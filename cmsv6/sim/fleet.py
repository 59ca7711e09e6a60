"""A fleet of simulated devices in one process, on one shared timer.

``Fleet(reactor, config).start()`` creates the devices and returns a Deferred that fires
with the final ``Counters`` once the fleet has stopped (after ``config.duration``, or when
``stop()`` is called). Devices connect through client endpoints (``endpoint_factory`` turns
an endpoint string into one; by default ``clientFromString``), at ``connect_rate`` new
devices per second, and reconnect by themselves with backoff and jitter.

Timers: one heap of (when, device) and a single reactor call for its earliest entry, so a
device costs no timer of its own. A device's ``wake`` only moves earlier between ticks, and
the heap then gets a new entry; entries that were superseded are skipped when they come up.
"""

from __future__ import annotations

import heapq
import json
import os
from collections import Counter
from datetime import datetime
from random import Random
from typing import IO, Any, Callable

from attrs import frozen
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.endpoints import clientFromString
from twisted.internet.interfaces import IDelayedCall, IReactorTime, IStreamClientEndpoint
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from cmsv6.protocols.jt808.messages.jt1078 import (
    AvTransmissionControl,
    PlaybackControl,
    PlaybackRequest,
    RealtimeAvRequest,
)
from cmsv6.sim.device import Counters, Device, DeviceConfig, DeviceEvents, position_of
from cmsv6.sim.protocol import DeviceFactory, DeviceProtocol
from cmsv6.sim.streamer import Streamer
from cmsv6.sim.video import VideoConfig

_log = Logger()

_NEVER = float("inf")
#: Devices ticked per reactor turn at most, so connections are served between batches.
MAX_TICKS_PER_TURN = 2000
#: Endpoints kept, by endpoint string (every device of a fleet usually shares one or two).
MAX_ENDPOINTS = 1024


@frozen
class FleetConfig:
    server: str = "tcp:127.0.0.1:7611"
    devices: int = 1
    first_phone: str = "013800000000"
    #: "2013", "2019", or "mixed" (even devices 2013, odd ones 2019).
    version: str = "2013"
    plate_prefix: str = "粤B"
    #: Seconds to run; None runs until ``stop()``.
    duration: float | None = None
    seed: int | None = None
    #: New devices started per second (the first connections are spread this way).
    connect_rate: float = 500.0
    #: JSON file keeping authentication codes between runs (one file per process).
    state: str | None = None
    #: File getting one JSON line per acknowledged position.
    ack_log: str | None = None
    #: Keep every acknowledged position in ``Fleet.acknowledged`` (for tests).
    record_acks: bool = False
    status_interval: float = 5.0
    #: Seconds ``stop()`` waits for connections to close before aborting them.
    stop_timeout: float = 5.0
    device: DeviceConfig = DeviceConfig()
    #: How the devices' cameras stream (their number is ``device.channels``).
    video: VideoConfig = VideoConfig()


@frozen
class Acknowledged:
    """An acknowledged position, as the ack log has it."""

    phone: str
    time: datetime
    latitude: float
    longitude: float
    serial: int
    version: int

    def json(self) -> dict[str, Any]:
        return {
            "phone": self.phone,
            "time": self.time.isoformat(),
            "latitude": self.latitude,
            "longitude": self.longitude,
            "serial": self.serial,
            "version": self.version,
        }


def phones(first: str, count: int) -> list[str]:
    """``count`` consecutive phone numbers from ``first``, with its width."""
    if not first.isdigit():
        raise ValueError(f"phone {first!r} is not a number")
    start = int(first)
    width = len(first)
    out = [str(start + i).rjust(width, "0") for i in range(count)]
    if out and len(out[-1]) > 20:
        raise ValueError("phone numbers longer than 20 digits")
    return out


def load_state(path: str) -> dict[str, dict[str, Any]]:
    """The devices' saved state by phone ({} if the file does not exist)."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return {}
    devices = data.get("devices", {}) if isinstance(data, dict) else {}
    return {str(k): v for k, v in devices.items() if isinstance(v, dict)}


def save_state(path: str, devices: dict[str, dict[str, Any]]) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"devices": devices}, f, ensure_ascii=False, indent=1, sort_keys=True)
    os.replace(tmp, path)


class _Events(DeviceEvents):
    def __init__(self, fleet: Fleet) -> None:
        self._fleet = fleet

    def acknowledged(self, device: Device, body: bytes, serial: int) -> None:
        self._fleet._position_acknowledged(device, body, serial)

    def registered(self, device: Device) -> None:
        self._fleet._device_registered(device)

    def refused(self, device: Device) -> None:
        # Once per device and reason (a refused unit retries without end): shown with -v.
        _log.info("{phone}: {why}", phone=device.phone, why=device.refusal)

    def stream_requested(self, device: Device, request: RealtimeAvRequest) -> None:
        if self._fleet._stopping:
            return
        self._fleet.streamer.open(
            device.phone, device.version, request, device.config.audio_codec,
            device.video_codec(request.channel),
        )

    def stream_control(self, device: Device, control: AvTransmissionControl) -> None:
        self._fleet.streamer.control(device.phone, control)

    def playback_requested(self, device: Device, request: PlaybackRequest) -> None:
        if self._fleet._stopping:
            return
        self._fleet.streamer.playback(
            device.phone, device.version, request, device.config.audio_codec,
            device.video_codec(request.channel),
        )

    def playback_control(self, device: Device, control: PlaybackControl) -> bool:
        return self._fleet.streamer.playback_control(device.phone, control)


class Fleet:
    def __init__(
        self,
        reactor: IReactorTime,
        config: FleetConfig,
        endpoint_factory: Callable[[str], IStreamClientEndpoint] | None = None,
        status_out: IO[str] | None = None,
    ) -> None:
        self.config = config
        self.counters = Counters()
        #: Every acknowledged position, when ``config.record_acks``.
        self.acknowledged: list[Acknowledged] = []
        self.devices: list[Device] = []
        self._reactor = reactor
        self._endpoint_factory = endpoint_factory or (lambda s: clientFromString(reactor, s))
        self._endpoints: dict[str, IStreamClientEndpoint] = {}
        #: The devices' cameras.
        self.streamer = Streamer(
            reactor, config.video, self._endpoint, self.counters, idle=self._maybe_finished
        )
        self._status_out = status_out
        self._rng = Random(config.seed)
        self._heap: list[tuple[float, int]] = []
        self._due: list[float] = []
        self._timer: IDelayedCall | None = None
        self._timer_at = _NEVER
        self._links: set[DeviceProtocol] = set()
        self._connecting: dict[int, Deferred[Any]] = {}
        self._state: dict[str, dict[str, Any]] = {}
        self._state_dirty = False
        self._ack_file: IO[str] | None = None
        self._status: LoopingCall | None = None
        self._duration_call: IDelayedCall | None = None
        self._stop_timer: IDelayedCall | None = None
        self._started_at = 0.0
        self._stopping = False
        self._done: Deferred[Counters] | None = None
        self._waiters: list[Deferred[None]] = []

    # -- Session (for the protocols) ------------------------------------------------------

    def now(self) -> float:
        return self._reactor.seconds()

    def link_made(self, protocol: DeviceProtocol) -> None:
        self._links.add(protocol)
        protocol.device.connected(protocol, self.now())
        self.changed(protocol.device)

    def link_lost(self, protocol: DeviceProtocol) -> None:
        self._links.discard(protocol)
        protocol.device.disconnected(self.now())
        self.changed(protocol.device)
        self._maybe_finished()

    def changed(self, device: Device) -> None:
        wake = device.wake
        i = device.index
        if wake < self._due[i]:
            self._due[i] = wake
            heapq.heappush(self._heap, (wake, i))
            if wake < self._timer_at:
                self._arm(wake)

    # -- device events --------------------------------------------------------------------

    def _position_acknowledged(self, device: Device, body: bytes, serial: int) -> None:
        if not (self.config.record_acks or self._ack_file is not None):
            return
        loc = position_of(body)
        assert loc.time is not None
        record = Acknowledged(
            device.phone, loc.time, loc.latitude, loc.longitude, serial, device.version
        )
        if self.config.record_acks:
            self.acknowledged.append(record)
        if self._ack_file is not None:
            self._ack_file.write(json.dumps(record.json(), ensure_ascii=False) + "\n")

    def _device_registered(self, device: Device) -> None:
        if self.config.state is None:
            return
        entry = self._state.setdefault(device.phone, {})
        if device.auth_code is None:
            entry.pop("auth_code", None)
        else:
            entry["auth_code"] = device.auth_code
        self._state_dirty = True

    # -- running --------------------------------------------------------------------------

    def start(self) -> Deferred[Counters]:
        """Create and start the devices; fires with the counters when the fleet has stopped."""
        if self._done is not None:
            raise RuntimeError("a fleet starts once")
        c = self.config
        self._done = Deferred()
        now = self._started_at = self.now()
        if c.state is not None:
            self._state = load_state(c.state)
        if c.ack_log is not None:
            self._ack_file = open(c.ack_log, "a", encoding="utf-8")
        versions = {"2013": (2013,), "2019": (2019,), "mixed": (2013, 2019)}[c.version]
        rate = c.connect_rate if c.connect_rate > 0 else _NEVER
        events = _Events(self)
        for i, phone in enumerate(phones(c.first_phone, c.devices)):
            saved = self._state.get(phone, {})
            device = Device(
                phone,
                server=c.server,
                config=c.device,
                rng=self._rng,
                counters=self.counters,
                version=versions[i % len(versions)],
                plate=f"{c.plate_prefix}{i + 1:05d}",
                auth_code=saved.get("auth_code"),
                events=events,
                start_at=now + i / rate,
                now=now,
            )
            device.index = i
            self.devices.append(device)
            self._due.append(_NEVER)
            self.changed(device)
        self.counters.devices = len(self.devices)
        if c.status_interval > 0 and (
            self._status_out is not None or self._ack_file is not None or c.state is not None
        ):
            self._status = LoopingCall(self._periodic)
            self._status.clock = self._reactor
            self._status.start(c.status_interval, now=False)
        if c.duration is not None:
            self._duration_call = self._reactor.callLater(c.duration, self.stop)
        return self._done

    def stop(self) -> Deferred[None]:
        """Log every device out and close; fires when every connection is closed."""
        if self._done is None or self._done.called:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._waiters.append(waiter)
        if self._stopping:
            return waiter
        self._stopping = True
        if self._duration_call is not None and self._duration_call.active():
            self._duration_call.cancel()
        now = self.now()
        for device in self.devices:
            device.stop(now)
        for d in list(self._connecting.values()):
            d.cancel()
        self.streamer.stop()
        self._stop_timer = self._reactor.callLater(self.config.stop_timeout, self._abort)
        self._maybe_finished()
        return waiter

    def _abort(self) -> None:
        self._stop_timer = None
        self.streamer.abort()
        for protocol in list(self._links):
            if protocol.transport is not None:
                protocol.transport.abortConnection()  # type: ignore[attr-defined]

    def _maybe_finished(self) -> None:
        if (
            not self._stopping
            or self._links
            or self._connecting
            or self.streamer.busy
            or self._done is None
        ):
            return
        if self._done.called:
            return
        if self._stop_timer is not None and self._stop_timer.active():
            self._stop_timer.cancel()
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer, self._timer_at = None, _NEVER
        if self._status is not None and self._status.running:
            self._status.stop()
        self._flush_files()
        if self._ack_file is not None:
            self._ack_file.close()
            self._ack_file = None
        self._done.callback(self.counters)
        waiters, self._waiters = self._waiters, []
        for w in waiters:
            w.callback(None)

    # -- the shared timer -----------------------------------------------------------------

    def _arm(self, when: float) -> None:
        # Cancel and schedule anew: moving a reactor call earlier with reset() searches the
        # reactor's whole list of calls.
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer_at = when
        self._timer = self._reactor.callLater(max(0.0, when - self.now()), self._run)

    def _run(self) -> None:
        self._timer, self._timer_at = None, _NEVER
        now = self.now()
        heap, due, devices = self._heap, self._due, self.devices
        ticks = 0
        while heap and heap[0][0] <= now and ticks < MAX_TICKS_PER_TURN:
            when, i = heapq.heappop(heap)
            if when != due[i]:
                continue  # superseded by an earlier entry
            due[i] = _NEVER
            device = devices[i]
            ticks += 1
            try:
                address = device.tick(now)
            except Exception:
                self.counters.errors += 1
                _log.failure("{phone}: tick failed", phone=device.phone)
                device.wake = now + 1.0
                address = None
            if address is not None:
                self._connect(device, address)
            self.changed(device)
        if heap and heap[0][0] < self._timer_at:
            self._arm(heap[0][0])

    # -- connections ----------------------------------------------------------------------

    def _endpoint(self, address: str) -> IStreamClientEndpoint:
        endpoint = self._endpoints.get(address)
        if endpoint is None:
            if len(self._endpoints) >= MAX_ENDPOINTS:
                self._endpoints.clear()
            endpoint = self._endpoints[address] = self._endpoint_factory(address)
        return endpoint

    def _connect(self, device: Device, address: str) -> None:
        try:
            d = self._endpoint(address).connect(DeviceFactory(self, device))
        except Exception:
            _log.failure(
                "{phone}: cannot connect to {address}", phone=device.phone, address=address
            )
            self.counters.errors += 1
            device.connect_failed(self.now())
            return
        self._connecting[device.index] = d
        d.addCallbacks(
            self._connect_done, self._connect_failed, callbackArgs=(device,), errbackArgs=(device,)
        )

    def _connect_done(self, protocol: DeviceProtocol, device: Device) -> None:
        self._connecting.pop(device.index, None)
        self._maybe_finished()

    def _connect_failed(self, failure: Failure, device: Device) -> None:
        self._connecting.pop(device.index, None)
        if not failure.check(CancelledError):
            _log.debug(
                "{phone}: connection failed: {error}",
                phone=device.phone,
                error=failure.getErrorMessage(),
            )
        device.connect_failed(self.now())
        self.changed(device)
        self._maybe_finished()

    # -- progress -------------------------------------------------------------------------

    def pending(self) -> int:
        """Positions not yet acknowledged, fleet-wide."""
        return sum(d.unacknowledged for d in self.devices)

    def status_line(self) -> str:
        c = self.counters
        elapsed = self.now() - self._started_at
        return (
            f"[sim {elapsed:.0f}s] devices {c.devices}: {c.connected} connected, "
            f"{c.authenticated} authenticated | positions {c.sent} sent, "
            f"{c.acknowledged} acked, {self.pending()} pending, {c.dropped} dropped | "
            f"reconnects {c.reconnects}, connect failures {c.connect_failures}, "
            f"retransmits {c.retransmissions}, gaps {c.gaps}, alarms {c.alarms_raised}, "
            f"commands {c.commands}, errors {c.errors}"
            + self.streamer.status()
            + self.refusals()
        )

    #: Reasons the status line names at most (the others are counted).
    MAX_REASONS = 3

    def refusals(self) -> str:
        """The status line's ``| refused: N (why ×n, ...)``: devices the platform refuses
        now, and why, most common first; "" when it refuses none. A refused unit retries without end, so this says
        what to fix (add the device, ``cmsv6 device reset-auth``, keep codes with
        ``--state``)."""
        why = Counter(d.refusal for d in self.devices if d.refusal is not None)
        if not why:
            return ""
        common = why.most_common()
        shown = ", ".join(f"{reason} ×{n}" for reason, n in common[: self.MAX_REASONS])
        if len(common) > self.MAX_REASONS:
            shown += f", {len(common) - self.MAX_REASONS} more reasons"
        return f" | refused: {sum(why.values())} ({shown})"

    def _periodic(self) -> None:
        if self._status_out is not None:
            self._status_out.write(self.status_line() + "\n")
            self._status_out.flush()
        self._flush_files()

    def _flush_files(self) -> None:
        if self._ack_file is not None:
            self._ack_file.flush()
        if self._state_dirty and self.config.state is not None:
            try:
                save_state(self.config.state, self._state)
                self._state_dirty = False
            except OSError as e:
                _log.warn("cannot save {path}: {error}", path=self.config.state, error=str(e))
