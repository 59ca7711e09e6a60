"""Codec benchmark: decode and encode rates, fast path and construct reference side by side.

    .venv/bin/python bench/codec.py [--seconds 0.3]

Decode is the whole path from the escaped frame's bytes (deframe, unescape, check code,
header, body, extras) to the Message; encode is Message to escaped frame bytes. Each figure
is the median over repeated timed batches, in microseconds per message, from one run.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cmsv6.protocols.jt808.codec import (  # noqa: E402
    decode,
    decode_body_reference,
    encode,
    encode_body_reference,
)
from cmsv6.protocols.jt808.fields import BEIJING  # noqa: E402
from cmsv6.protocols.jt808.framing import (  # noqa: E402
    build_frame_reference,
    parse_content_reference,
    unescape_reference,
)
from cmsv6.protocols.jt808.header import Header  # noqa: E402
from cmsv6.protocols.jt808.messages.core import PlatformResponse, Register  # noqa: E402
from cmsv6.protocols.jt808.messages.location import Location, LocationBatch  # noqa: E402

T = datetime(2026, 11, 25, 10, 30, 15, tzinfo=BEIJING)
#: A report as units send it: mileage, fuel, signal, satellites, IO, analog, video alarms.
LOCATION = Location(
    alarm=0,
    status=0x000C0003,
    latitude=22.543096,
    longitude=114.057865,
    altitude=35,
    speed=42.5,
    direction=270,
    time=T,
    extras={0x01: 123456, 0x02: 450, 0x25: 0, 0x2A: 0, 0x2B: 0, 0x30: 25, 0x31: 12, 0x14: 0},
)
HEADER = Header(0x0200, "013812345678", 1234)
CASES: dict[str, tuple[Header, Any]] = {
    "0x0200 full frame, 8 extras": (HEADER, LOCATION),
    "0x0704 batch of 10": (
        Header(0x0704, "013812345678", 1235),
        LocationBatch(1, [LOCATION] * 10),
    ),
    "0x0100 register (2013)": (
        Header(0x0100, "013812345678", 1),
        Register(44, 300, "70111", "BSJ-M7B", "1234567", 1, "粤B88888", 2013),
    ),
    "0x8001 platform response": (
        Header(0x8001, "013812345678", 7),
        PlatformResponse(1234, 0x0200, 0),
    ),
}


def reference_decode(frame: bytes) -> Any:
    frame_ = parse_content_reference(unescape_reference(frame[1:-1]))
    return decode_body_reference(frame_.header.msg_id, frame_.body, frame_.header.version)


def reference_encode(header: Header, body: Any) -> bytes:
    return build_frame_reference(header, encode_body_reference(body, header.version))


def median_us(fn: Callable[[], Any], seconds: float) -> float:
    """Median µs per call over batches sized to take about a millisecond each."""
    n = 1
    while True:
        t = time.perf_counter()
        for _ in range(n):
            fn()
        if time.perf_counter() - t > 1e-3:
            break
        n *= 2
    samples = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(samples) < 5:
        t = time.perf_counter_ns()
        for _ in range(n):
            fn()
        samples.append((time.perf_counter_ns() - t) / n / 1000)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=0.3, help="per figure")
    args = parser.parse_args()
    print(f"# cmsv6 codec benchmark · Python {platform.python_version()} · {platform.machine()}")
    print(f"{'case':32} {'op':7} {'fast µs':>9} {'ref µs':>9} {'×':>6} {'fast msg/s':>11}")
    for name, (header, body) in CASES.items():
        frame = encode(header, body)
        assert reference_encode(header, body) == frame
        assert decode(frame).body == reference_decode(frame) == body
        for op, fast, ref in (
            ("decode", lambda: decode(frame), lambda: reference_decode(frame)),
            ("encode", lambda: encode(header, body), lambda: reference_encode(header, body)),
        ):
            f = median_us(fast, args.seconds)
            r = median_us(ref, args.seconds)
            print(f"{name:32} {op:7} {f:9.2f} {r:9.2f} {r / f:6.1f} {1e6 / f:11,.0f}")
    print("targets: 0x0200 decode ≤ 2 µs and ≥ 15× the reference; 0x8001 encode ≤ 1 µs")


if __name__ == "__main__":
    main()
