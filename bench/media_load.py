"""Media load benchmark: simulated camera channels and WS-FLV viewers against ONE ``twistd media``.

    .venv/bin/python bench/media_load.py [--channels 50] [--viewers 100] [--seconds 20]
                                         [--bitrate 512] [--no-baseline]

Starts ``twistd -n media`` standalone (no login: the devices push streams nobody asked for,
which the server takes as each channel's main stream; viewers bring viewing tokens signed
with a key derived from the media server's own key file, as login would). In separate
processes (so that the media process's CPU is its own):

* a device process (``--role devices``): ``--channels`` cameras, each its own TCP connection,
  replaying a clip encoded once (H.264 CIF 25 fps, 2 s GOPs, at ``--bitrate`` kbit/s with
  its audio; G.711A 8 kHz in HiSilicon-headed 40 ms frames), cut once into 950-byte JT/T
  1078 packets and stamped per camera (``cmsv6.sim.video``). Each camera's timestamps run
  from 0, so that the FLV timestamps the media server sends are the camera's; the process
  notes its wall-clock time when each video frame was written (the side table).
* viewer processes (``--role viewers``, one per 500 viewers): minimal WebSocket clients
  (hand-written, so that the client costs little) joining the running streams at 500 a
  second, each noting when its first picture came (time to first frame, from the TCP
  connect) and when each video tag came (the packet-in -> WebSocket-out latency is that
  minus the side table's time: one machine, one clock).

Two phases in one run, each with a fresh media process: the baseline, the same cameras
without audio (so the media server transcodes nothing: a bare relay of video through the
same muxer and fan-out), then the full load (G.711A -> AAC per stream). Printed per phase:
channels ingested, egress Mbit/s (what the viewers received), the media process's CPU %
(from /proc/PID/stat, over the measurement window) and RSS, latency p50/p99/max, time to
first frame p50/p99/max, and the media server's own counters (/metrics). Everything runs
over loopback on this machine and stops by itself.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import resource
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from array import array
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TICK = os.sysconf("SC_CLK_TCK")
MEDIA_ID = "media-bench"
#: Viewers one viewer process serves.
PER_VIEWER_PROCESS = 500
#: Viewers joining a second (all processes together).
JOIN_RATE = 500
#: Seconds the cameras stream before the first viewer joins (a GOP is 2 s).
WARMUP = 4.0
#: Seconds between the cameras' sending turns.
SEND_TICK = 0.02


def phone_of(channel: int) -> str:
    return f"1390{channel:07d}"


# -- the media process --------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def run_delay(pid: int) -> float:
    """Seconds ``pid`` was ready to run but waited for a CPU (other processes had them)."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, all CPUs."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / TICK, sum(fields[:8]) / TICK


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"nothing listening on {port}")


class Media:
    """``twistd -n media``, standalone, on free loopback ports."""

    def __init__(self, directory: Path, key_file: Path, channels: int, viewers: int) -> None:
        self.jt1078, self.web, self.metrics = free_port(), free_port(), free_port()
        twistd = str(Path(sys.executable).with_name("twistd"))
        self.log = directory / "media.log"
        self.proc = subprocess.Popen(
            [
                twistd, "-n", "--pidfile=", f"--logfile={self.log}", "media",
                "--id", MEDIA_ID,
                "--jt1078", f"tcp:{self.jt1078}:interface=127.0.0.1:backlog=1024",
                "--web", f"tcp:{self.web}:interface=127.0.0.1:backlog=1024",
                "--metrics", f"tcp:{self.metrics}:interface=127.0.0.1",
                "--cluster_key", str(key_file),
                "--linger", "600",
                "--max_viewers", str(viewers + 64),
                "--jt1078_max_connections", str(channels + 16),
            ],  # fmt: skip
            stdin=subprocess.DEVNULL,
        )
        wait_port(self.web)
        wait_port(self.jt1078)

    def counters(self) -> dict[str, float]:
        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{self.metrics}/metrics", timeout=10).read()
        except OSError as e:
            return {"unreadable": 1.0, "error": str(e)}  # type: ignore[dict-item]
        out: dict[str, float] = {}
        for line in text.decode().splitlines():
            if line.startswith("cmsv6_media_") and " " in line:
                name, value = line.rsplit(" ", 1)
                out[name] = out.get(name, 0.0) + float(value)
        return out

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# -- the device process -------------------------------------------------------------------------


def make_clip(bitrate: int) -> Any:
    """The clip with its video at about ``bitrate`` kbit/s on the wire (x264's rate control
    misses at first: the bit rate asked for is corrected once by what came); a channel
    with audio sends 70 kbit/s more (G.711A, its HiSilicon header, packet headers)."""
    from cmsv6.media import clip as clip_module

    def encode(video_rate: int) -> Any:
        saved = clip_module.BIT_RATE  # clip.py scales it with the picture's area: CIF is 1
        clip_module.BIT_RATE = max(50_000, video_rate)
        try:
            return clip_module.encode_clip(*clip_module.CIF, seconds=10, fps=25, gop=50)
        finally:
            clip_module.BIT_RATE = saved

    def wire_rate(clip: Any) -> float:
        from cmsv6.sim.video import cut_track

        track = cut_track(clip.video, clip.video_payload_type, clip.duration, 6)
        return sum(len(p) for c in track.cuts for p in c.packets) * 8 / clip.duration

    want = bitrate * 1000
    clip = encode(want)
    got = wire_rate(clip) * 1000
    return encode(int(want * want / got)) if got > 0 else clip


def run_devices(a: argparse.Namespace) -> None:
    from twisted.internet import protocol, reactor, task

    from cmsv6.protocols.jt808.fields import bcd_encode
    from cmsv6.protocols.jt1078.packet import DataType
    from cmsv6.sim.video import cut_track, hisilicon, sim_digits, stamp

    with open(a.clip, "rb") as f:
        clip = pickle.load(f)
    video = cut_track(clip.video, clip.video_payload_type, clip.duration, 6)
    silent: list[tuple[int, int, Any]] = [(c.timestamp, 0, c) for c in video.cuts]
    audio = cut_track(clip.audio, clip.audio_payload_type, clip.duration, 6, hisilicon)
    # Video first at the same time, as units send.
    loud = sorted(silent + [(c.timestamp, 1, c) for c in audio.cuts], key=lambda e: (e[0], e[1]))
    duration = clip.duration
    sizes = [len(p) for _, _, c in loud for p in c.packets]
    rates = [sum(len(p) for _, _, c in e for p in c.packets) * 8 / duration for e in (silent, loud)]

    sent_at: dict[int, float] = {}  # channel << 40 | timestamp -> wall time written
    start = a.start
    conns: list[Any] = []

    class Camera(protocol.Protocol):
        def __init__(self, channel: int) -> None:
            self.channel = channel
            self.sim_channel = bcd_encode(sim_digits(phone_of(channel), 2013), 6) + b"\x01"
            # Keyframes spread over a GOP across channels, as real cameras are.
            self.begin = start + (channel % 50) * 0.04
            self.events = loud if channel < a.audio_channels else silent
            self.index = self.loop = self.sequence = 0
            self.last_i = 0
            self.max_buffer = 0

        def connectionMade(self) -> None:  # noqa: N802
            conns.append(self)

        def dataReceived(self, data: bytes) -> None:  # noqa: N802
            pass

        def run(self, now: float) -> None:
            at = (now - self.begin) * 1000
            if at < 0:
                return
            out: list[bytes] = []
            stamps: list[int] = []
            events = self.events
            while True:
                t, kind, cut = events[self.index]
                ts = self.loop * duration + t
                if ts > at:
                    break
                if kind == 0:
                    if cut.data_type == DataType.I_FRAME:
                        self.last_i = ts
                    intervals = (min(0xFFFF, ts - self.last_i).to_bytes(2, "big")
                                 + (40 if ts else 0).to_bytes(2, "big"))  # fmt: skip
                    stamps.append(ts)
                else:
                    intervals = None
                for template in cut.packets:
                    out.append(stamp(template, 6, self.sequence, self.sim_channel, ts, intervals))
                    self.sequence = (self.sequence + 1) & 0xFFFF
                self.index += 1
                if self.index == len(events):
                    self.index = 0
                    self.loop += 1
            if out:
                self.transport.write(b"".join(out))
                when = time.time()
                key = self.channel << 40
                for ts in stamps:
                    sent_at[key | ts] = when
                buffered = len(getattr(self.transport, "dataBuffer", b"")) + getattr(
                    self.transport, "_tempDataLen", 0)
                self.max_buffer = max(self.max_buffer, buffered)

    def tick() -> None:
        now = time.time()
        for c in conns:
            c.run(now)

    def connect() -> Any:
        endpoint_ds = []
        for channel in range(a.channels):
            f = protocol.ClientFactory()
            f.buildProtocol = lambda addr, ch=channel: Camera(ch)  # type: ignore[method-assign]
            endpoint_ds.append(reactor.connectTCP("127.0.0.1", a.port, f))  # type: ignore[attr-defined]
        return endpoint_ds

    def finish() -> None:
        reactor.stop()  # type: ignore[attr-defined]

    connect()
    loop = task.LoopingCall(tick)
    reactor.callWhenRunning(loop.start, SEND_TICK)  # type: ignore[attr-defined]
    reactor.callLater(a.stop - time.time(), finish)  # type: ignore[attr-defined]
    cpu0 = time.process_time()
    reactor.run()  # type: ignore[attr-defined]
    with open(a.out, "wb") as f:
        keys = array("q", sent_at.keys())
        values = array("d", sent_at.values())
        pickle.dump({
            "connected": len(conns),
            "kbit_s": rates,
            "packet_mean": sum(sizes) / len(sizes),
            "packet_max": max(sizes),
            "max_buffer": max((c.max_buffer for c in conns), default=0),
            "cpu": time.process_time() - cpu0,
            "keys": keys, "values": values,
        }, f)  # fmt: skip


# -- the viewer processes -----------------------------------------------------------------------


def run_viewers(a: argparse.Namespace) -> None:
    from twisted.internet import protocol, reactor

    from cmsv6.media.viewing import View, sign_view, view_key
    from cmsv6.rpc import keys

    key = view_key(keys.load(a.key_file).key)
    expires = int(time.time() + 3600)
    viewers: list[Any] = []
    window = (a.measure_from, a.stop - 0.5)

    class WsFlv(protocol.Protocol):
        """A WS-FLV viewer: the handshake, then WebSocket frames to FLV tags."""

        def __init__(self, channel: int, began: float) -> None:
            self.channel = channel
            self.began = began
            self.first: float | None = None
            self.buf = bytearray()
            self.upgraded = False
            self.skip = 13  # the FLV file header and PreviousTagSize0
            self.carry = b""
            self.bytes = 0
            self.window_bytes = 0
            self.ts = array("q")
            self.got = array("d")
            self.closed: tuple[int, str] | None = None

        def connectionMade(self) -> None:  # noqa: N802
            phone = phone_of(self.channel)
            token = sign_view(key, View(MEDIA_ID, phone, 1, "main", expires))
            self.transport.write(
                f"GET /live/{phone}/1.flv?stream=main&token={token} HTTP/1.1\r\n"
                f"Host: 127.0.0.1:{a.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
                .encode())  # fmt: skip

        def dataReceived(self, data: bytes) -> None:  # noqa: N802
            now = time.time()
            self.bytes += len(data)
            if window[0] <= now < window[1]:
                self.window_bytes += len(data)
            buf = self.buf
            buf += data
            if not self.upgraded:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                if b" 101 " not in buf[:end].split(b"\r\n", 1)[0]:
                    self.closed = (0, bytes(buf[:80]).decode("latin-1"))
                    self.transport.loseConnection()
                    return
                self.upgraded = True
                del buf[: end + 4]
            at = 0
            n = len(buf)
            while n - at >= 2:
                b0, b1 = buf[at], buf[at + 1] & 0x7F
                head = 2
                if b1 == 126:
                    if n - at < 4:
                        break
                    b1 = (buf[at + 2] << 8) | buf[at + 3]
                    head = 4
                elif b1 == 127:
                    if n - at < 10:
                        break
                    b1 = struct.unpack_from(">Q", buf, at + 2)[0]
                    head = 10
                if n - at < head + b1:
                    break
                payload = bytes(buf[at + head : at + head + b1])
                at += head + b1
                op = b0 & 0x0F
                if op == 2 or op == 0:
                    self.flv(payload, now)
                elif op == 9:  # ping: a masked pong with its payload
                    self.transport.write(bytes((0x8A, 0x80 | len(payload), 0, 0, 0, 0)) + payload)
                elif op == 8:
                    code = struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else 1005
                    self.closed = (code, payload[2:].decode("utf-8", "replace"))
                    self.transport.loseConnection()
                    return
            del buf[:at]

        def flv(self, data: bytes, now: float) -> None:
            if self.carry:
                data, self.carry = self.carry + data, b""
            at, n = 0, len(data)
            while at < n:
                if self.skip:
                    step = min(self.skip, n - at)
                    self.skip -= step
                    at += step
                    continue
                if n - at < 13:
                    self.carry = data[at:]
                    return
                kind = data[at]
                size = (data[at + 1] << 16) | (data[at + 2] << 8) | data[at + 3]
                if kind == 9 and data[at + 12] == 1:  # a picture (not a sequence header)
                    ts = (data[at + 7] << 24) | (data[at + 4] << 16) | (data[at + 5] << 8) | data[at + 6]
                    if self.first is None and data[at + 11] >> 4 == 1:
                        self.first = now
                    if self.first is not None and window[0] <= now < window[1]:
                        self.ts.append(ts)
                        self.got.append(now)
                self.skip = 11 + size + 4
                continue

        def connectionLost(self, reason: Any = None) -> None:  # noqa: N802
            if self.closed is None:
                self.closed = (-1, reason.getErrorMessage() if reason else "lost")

    def join(i: int) -> None:
        channel = (a.first + i) % a.channels
        f = protocol.ClientFactory()
        v = WsFlv(channel, time.time())
        viewers.append(v)
        f.buildProtocol = lambda addr: v  # type: ignore[method-assign]
        reactor.connectTCP("127.0.0.1", a.port, f)  # type: ignore[attr-defined]

    probes: list[Any] = []

    def probe(i: int) -> None:
        join(a.count + i)
        probes.append(viewers.pop())

    def schedule() -> None:
        base = a.join_at - time.time()
        for i in range(a.count):
            reactor.callLater(max(0.0, base + i / a.rate), join, i)  # type: ignore[attr-defined]
        # Viewers joining one at a time once every stream runs and every viewer plays: the
        # time to first frame of a viewer opening a running stream, apart from the join storm.
        middle = (a.measure_from + a.stop) / 2
        step = min(0.25, (a.stop - middle) / 2 / max(1, a.probes))
        for i in range(a.probes):
            reactor.callLater(middle + i * step - time.time(), probe, i)  # type: ignore[attr-defined]

    playing: list[int] = []

    def finish() -> None:
        playing.append(sum(1 for v in viewers if v.first is not None and v.closed is None))
        reactor.stop()  # type: ignore[attr-defined]

    reactor.callWhenRunning(schedule)  # type: ignore[attr-defined]
    reactor.callLater(a.stop - time.time(), finish)  # type: ignore[attr-defined]
    cpu0 = time.process_time()
    reactor.run()  # type: ignore[attr-defined]
    closes: dict[str, int] = {}
    for v in viewers:
        if v.closed is not None and v.closed[0] != -1:
            closes[f"{v.closed[0]} {v.closed[1][:60]}"] = closes.get(f"{v.closed[0]} {v.closed[1][:60]}", 0) + 1
    with open(a.out, "wb") as f:
        pickle.dump({
            "viewers": len(viewers),
            "playing": playing[0] if playing else 0,
            "ttff": [v.first - v.began for v in viewers if v.first is not None],
            "probe_ttff": [v.first - v.began for v in probes if v.first is not None],
            "probes": len(probes),
            "window_bytes": sum(v.window_bytes for v in viewers),
            "closes": closes,
            "cpu": time.process_time() - cpu0,
            "samples": [(v.channel, v.ts, v.got) for v in viewers],
        }, f)  # fmt: skip


# -- the orchestrator ---------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def phase(args: argparse.Namespace, directory: Path, key_file: Path, clip_file: Path,
          audio: bool) -> dict[str, Any]:
    name = (f"full ({args.audio_channels} channels with G.711A -> AAC)" if audio
            else "baseline (video only: no transcoding)")
    media = Media(directory, key_file, args.channels, args.viewers)
    me = [sys.executable, str(Path(__file__).resolve())]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        t0 = time.time() + 3.0  # the clip is encoded meanwhile
        join_at = t0 + WARMUP
        joined = join_at + args.viewers / JOIN_RATE
        measure_from = joined + 1.0
        stop = measure_from + args.seconds
        dev_out = directory / f"devices-{audio}.pickle"
        procs.append(subprocess.Popen(me + [
            "--role", "devices", "--port", str(media.jt1078), "--channels", str(args.channels),
            "--clip", str(clip_file), "--start", repr(t0), "--stop", repr(stop + 0.5),
            "--out", str(dev_out), "--audio-channels", str(args.audio_channels if audio else 0)]))
        n_proc = max(1, -(-args.viewers // PER_VIEWER_PROCESS))
        view_outs = []
        for p in range(n_proc):
            first = p * args.viewers // n_proc
            count = (p + 1) * args.viewers // n_proc - first
            out = directory / f"viewers-{audio}-{p}.pickle"
            view_outs.append(out)
            procs.append(subprocess.Popen(me + [
                "--role", "viewers", "--port", str(media.web), "--channels", str(args.channels),
                "--first", str(first), "--count", str(count), "--rate", str(JOIN_RATE / n_proc),
                "--join-at", repr(join_at), "--measure-from", repr(measure_from),
                "--stop", repr(stop), "--probes", str(10 if p < n_proc - 1 else 10 + 10 * (n_proc == 1)),
                "--key-file", str(key_file), "--out", str(out)]))  # fmt: skip
        time.sleep(max(0.0, measure_from - time.time()))
        cpu_a, wall_a = cpu_seconds(media.proc.pid), time.time()
        wait_a, busy_a = run_delay(media.proc.pid), machine_busy()
        before = media.counters()
        time.sleep(max(0.0, stop - 0.5 - time.time()))
        cpu_b, wall_b = cpu_seconds(media.proc.pid), time.time()
        wait_b, busy_b = run_delay(media.proc.pid), machine_busy()
        rss = rss_mib(media.proc.pid)
        after = media.counters()
        for p in procs:
            p.wait(60)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        media.stop()
    with open(dev_out, "rb") as f:
        dev = pickle.load(f)
    table = dict(zip(dev["keys"], dev["values"]))
    viewers = []
    for out in view_outs:
        with open(out, "rb") as f:
            viewers.append(pickle.load(f))
    latencies: list[float] = []
    unmatched = 0
    for v in viewers:
        for channel, tss, gots in v["samples"]:
            key = channel << 40
            for ts, got in zip(tss, gots):
                sent = table.get(key | ts)
                if sent is None:
                    unmatched += 1
                else:
                    latencies.append((got - sent) * 1000)
    ttff = [t * 1000 for v in viewers for t in v["ttff"]]
    probe_ttff = [t * 1000 for v in viewers for t in v["probe_ttff"]]
    closes: dict[str, int] = {}
    for v in viewers:
        for k, n in v["closes"].items():
            closes[k] = closes.get(k, 0) + n
    seconds = wall_b - wall_a
    delta = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
    result = {
        "phase": name,
        "channels_connected": dev["connected"],
        "channels_ingested": int(after.get("cmsv6_media_streams", 0)),
        "ingest_kbit_s_per_channel": dev["kbit_s"],
        "packet_mean": dev["packet_mean"], "packet_max": dev["packet_max"],
        "ingest_mbit_s": delta.get("cmsv6_media_bytes_in_total", 0) * 8 / seconds / 1e6,
        "viewers": sum(v["viewers"] for v in viewers),
        "viewers_playing": sum(v["playing"] for v in viewers),
        "egress_mbit_s": sum(v["window_bytes"] for v in viewers) * 8 / seconds / 1e6,
        "media_cpu_pct": (cpu_b - cpu_a) / seconds * 100,
        "media_rss_mib": rss,
        "transcode_cpu_pct": delta.get("cmsv6_media_transcode_seconds_total", 0) / seconds * 100,
        "latency_ms": (pct(latencies, 0.5), pct(latencies, 0.99), max(latencies, default=float("nan"))),
        "latency_samples": len(latencies), "unmatched": unmatched,
        "ttff_ms": (pct(ttff, 0.5), pct(ttff, 0.99), max(ttff, default=float("nan"))),
        "probe_ttff_ms": (pct(probe_ttff, 0.5), max(probe_ttff, default=float("nan"))),
        "probes": (len(probe_ttff), sum(v["probes"] for v in viewers)),
        "media_wait_pct": (wait_b - wait_a) / seconds * 100,
        "machine_busy_pct": (busy_b[0] - busy_a[0]) / max(1e-9, busy_b[1] - busy_a[1]) * 100,
        "viewer_skips": delta.get("cmsv6_media_viewer_skips_total", 0),
        "dropped": {k: v for k, v in delta.items() if "dropped" in k and v},
        "closes": closes,
        "device_cpu_pct": dev["cpu"] / (stop - t0) * 100,
        "device_max_buffer": dev["max_buffer"],
        "viewer_cpu_pct": sum(v["cpu"] for v in viewers) / (stop - join_at) * 100,
        "seconds": seconds,
    }
    return result


def report(r: dict[str, Any]) -> None:
    lat, tt = r["latency_ms"], r["ttff_ms"]
    print(f"--- {r['phase']}")
    print(f"  channels ingested      {r['channels_ingested']} of {r['channels_connected']} connected,"
          f" {r['ingest_kbit_s_per_channel'][0]:.0f} kbit/s each on the wire"
          f" ({r['ingest_kbit_s_per_channel'][1]:.0f} with audio)"
          f" (packets {r['packet_mean']:.0f} B mean, {r['packet_max']} B max);"
          f" ingest {r['ingest_mbit_s']:.1f} Mbit/s")
    print(f"  viewers                {r['viewers_playing']} playing of {r['viewers']}")
    print(f"  egress                 {r['egress_mbit_s']:.1f} Mbit/s")
    print(f"  media process          CPU {r['media_cpu_pct']:.0f} % (of one core),"
          f" RSS {r['media_rss_mib']:.0f} MiB; transcoding {r['transcode_cpu_pct']:.1f} %;"
          f" waited for a CPU {r['media_wait_pct']:.0f} % of the time (machine {r['machine_busy_pct']:.0f} % busy)")
    print(f"  latency in -> WS out   p50 {lat[0]:.1f} ms  p99 {lat[1]:.1f} ms  max {lat[2]:.1f} ms"
          f"  ({r['latency_samples']} pictures, {r['unmatched']} unmatched)")
    pt, probes = r["probe_ttff_ms"], r["probes"]
    print(f"  first frame, one joins p50 {pt[0]:.0f} ms  max {pt[1]:.0f} ms"
          f"  ({probes[0]} of {probes[1]} viewers joining a running stream one at a time)")
    print(f"  first frame, join rush p50 {tt[0]:.0f} ms  p99 {tt[1]:.0f} ms  max {tt[2]:.0f} ms"
          f"  (the {r['viewers']} joining at {JOIN_RATE}/s)")
    print(f"  media counters         viewer skips {r['viewer_skips']:.0f}, dropped {r['dropped'] or 0}")
    if r["closes"]:
        print(f"  viewers closed         {r['closes']}")
    print(f"  load processes         devices CPU {r['device_cpu_pct']:.0f} % (largest send buffer"
          f" {r['device_max_buffer']} B), viewers CPU {r['viewer_cpu_pct']:.0f} %"
          f"; measured over {r['seconds']:.1f} s")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--channels", type=int, default=50)
    p.add_argument("--viewers", type=int, default=100)
    p.add_argument("--seconds", type=float, default=20.0, help="measurement window per phase")
    p.add_argument("--bitrate", type=int, default=512, help="kbit/s of video per channel on the wire (audio adds 70)")
    p.add_argument("--no-baseline", dest="baseline", action="store_false",
                   help="skip the video-only phase")
    p.add_argument("--json", action="store_true", help="also print each phase as JSON")
    p.add_argument("--role", choices=("devices", "viewers"), help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--audio-channels", type=int, default=None,
                   help="channels that send G.711A, transcoded to AAC in the full phase"
                   " (default: all, up to 100)")
    for name in ("--start", "--stop", "--join-at", "--measure-from", "--rate"):
        p.add_argument(name, type=float, help=argparse.SUPPRESS)
    for name in ("--first", "--count", "--probes"):
        p.add_argument(name, type=int, help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    p.add_argument("--clip", help=argparse.SUPPRESS)
    p.add_argument("--key-file", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.audio_channels is None:
        args.audio_channels = min(args.channels, 100)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 20000)), hard))
    if args.role == "devices":
        run_devices(args)
        return
    if args.role == "viewers":
        run_viewers(args)
        return

    from cmsv6.rpc import keys

    print(f"media_load {date.today()}: {args.channels} channels at {args.bitrate} kbit/s"
          f" ({args.audio_channels} with audio),"
          f" {args.viewers} WS-FLV viewers, {args.seconds:g} s measured per phase;"
          f" {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}", flush=True)
    with tempfile.TemporaryDirectory(prefix="cmsv6-media-load-") as tmp:
        directory = Path(tmp)
        try:
            keys.ensure(directory, media=[MEDIA_ID])  # key roles (a media server's own key)
        except TypeError:
            keys.ensure(directory, MEDIA_ID)  # a tree from before key roles
        key_file = directory / f"{MEDIA_ID}.key"
        clip_file = directory / "clip.pickle"
        with open(clip_file, "wb") as f:
            pickle.dump(make_clip(args.bitrate), f)
        for audio in ((False, True) if args.baseline else (True,)):
            r = phase(args, directory, key_file, clip_file, audio)
            report(r)
            if args.json:
                print(json.dumps(r))
            sys.stdout.flush()


if __name__ == "__main__":
    main()
