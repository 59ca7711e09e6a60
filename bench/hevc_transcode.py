"""H.265 to H.264 transcoding cost: what one ``codec=h264`` stream of an H.265 camera
costs the media server.

    .venv/bin/python bench/hevc_transcode.py [--seconds 4] [--repeat 3]

For each size (720p, 1280x720, and CIF, 352x288; 25 fps, 1 s GOPs) the simulator's clip
is encoded in H.265 once, then fed ``--repeat`` times to a fresh ``H265ToH264`` (what each
``VideoTranscoder``'s thread runs: FFmpeg's hevc decoder and libx264 ultrafast/zerolatency,
one thread each). Figures are CPU seconds (this process, ``time.process_time``) per second
of video, the median of the runs, and channels per core: a channel that costs one CPU
second a second is 1.0 (real time on one core). The baseline in the same run is decoding
alone (what serving H.265 as it comes never costs, and what any transcoding costs at
least).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import av

from cmsv6.media.clip import encode_clip
from cmsv6.media.transcode import H265ToH264, bit_rate

SIZES = {"720p": (1280, 720), "CIF": (352, 288)}
FPS = 25


def decode_only(units: list[tuple[bytes, int]]) -> None:
    ctx = av.CodecContext.create("hevc", "r")
    ctx.thread_count = 1
    for data, _ in units:
        ctx.decode(av.Packet(data))
    ctx.decode(None)


def transcode(units: list[tuple[bytes, int]]) -> None:
    codec = H265ToH264(FPS)
    for data, ms in units:
        codec.transcode(data, ms)
    codec.flush()
    assert codec.counters.pictures_out == len(units), codec.counters


def cost(run: Callable[[list[tuple[bytes, int]]], None], units: list[tuple[bytes, int]],
         seconds: int, repeat: int) -> float:  # fmt: skip
    """CPU seconds per second of video, the median of ``repeat`` runs."""
    runs = []
    for _ in range(repeat):
        start = time.process_time()
        run(units)
        runs.append((time.process_time() - start) / seconds)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"# {date.today()} {platform.processor() or platform.machine()},"
          f" Python {platform.python_version()}, PyAV {av.__version__},"
          f" {args.seconds} s of {FPS} fps video, median of {args.repeat}")  # fmt: skip
    print(f"{'case':44} {'CPU s per s':>12} {'channels/core':>14}")
    print(f"{'real time (baseline: 1.0 channel)':44} {1.0:12.3f} {1.0:14.1f}")
    for name, (width, height) in SIZES.items():
        clip = encode_clip(width, height, seconds=args.seconds, fps=FPS, gop=FPS, codec="h265")
        units = [(f.payload, f.timestamp) for f in clip.video]
        kbit = sum(len(d) for d, _ in units) * 8 / args.seconds / 1000
        for case, run in (("decode H.265 only", decode_only),
                          (f"H.265 -> H.264 ({bit_rate(width, height) // 1000} kbit/s)", transcode)):  # fmt: skip
            c = cost(run, units, args.seconds, args.repeat)
            label = f"{name} {case}"
            print(f"{label:44} {c:12.3f} {1 / c:14.1f}")
        print(f"{'':4}({name} input: {kbit:.0f} kbit/s H.265)")


if __name__ == "__main__":
    main()
