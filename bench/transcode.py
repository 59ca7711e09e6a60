"""Audio transcoding cost: what one unit's audio to AAC costs the media server.

    .venv/bin/python bench/transcode.py [--streams 20] [--seconds 10] [--repeat 3]

``--streams`` transcoders (one per stream, as the server keeps them) are fed
``--seconds`` of 40 ms frames each, interleaved frame by frame as streams arrive
together. Figures are CPU seconds (this process, ``time.process_time``) per second of
audio per stream, the median of ``--repeat`` runs, and how many streams one core keeps
up with at that rate. The baseline in the same run is decoding alone (FFmpeg's decoder
fed the same frames, nothing resampled or encoded): what any transcoding costs at least.
The G.711A input is the simulator's clip (a 1 kHz tone); the G.726 and IMA-ADPCM rows
encode the same tone with FFmpeg.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import date
from fractions import Fraction
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import av

from cmsv6.media.audio import AudioTranscoder
from cmsv6.media.clip import encode_clip

RATE = 8000


def g711a(seconds: int) -> list[bytes]:
    return [f.payload for f in encode_clip(seconds=seconds).audio]


def _pcm(seconds: int) -> bytes:
    alaw = b"".join(g711a(seconds))
    ctx = av.CodecContext.create("pcm_alaw", "r")
    ctx.sample_rate, ctx.layout = RATE, "mono"
    return b"".join(
        bytes(f.planes[0])[: 2 * f.samples] for f in ctx.decode(av.Packet(alaw))
    )


def _encode(codec: str, pcm: bytes, fmt: str, **options: str) -> list[bytes]:
    enc = av.CodecContext.create(codec, "w")
    enc.sample_rate, enc.layout, enc.format = RATE, "mono", fmt
    enc.time_base = Fraction(1, RATE)
    enc.options = options
    enc.open()
    size = enc.frame_size or 320
    out = []
    for at in range(0, len(pcm) // 2 - size + 1, size):
        frame = av.AudioFrame(format=fmt, layout="mono", samples=size)
        frame.planes[0].update(pcm[2 * at : 2 * (at + size)])
        frame.sample_rate, frame.pts = RATE, at
        out += [bytes(p) for p in enc.encode(frame)]
    return out


def g726_32k(seconds: int) -> list[bytes]:
    data = b"".join(_encode("g726le", _pcm(seconds), "s16", code_size="4"))
    return [data[i : i + 160] for i in range(0, seconds * RATE // 2, 160)]


_SWAP = bytes(((b << 4) | (b >> 4)) & 0xFF for b in range(256))


def ima_dvi4(seconds: int) -> list[bytes]:
    """FFmpeg's 256-byte IMA blocks as DVI4 (the layout units send; 63 ms a block)."""
    blocks = _encode("adpcm_ima_wav", _pcm(seconds), "s16p", block_size="256")
    return [b[:4] + b[4:].translate(_SWAP) for b in blocks]


def run(
    streams: int,
    payloads: list[bytes],
    step_ms: int,
    make: Callable[[], Callable[[bytes, int], object]],
) -> float:
    """CPU seconds to feed every stream every payload, interleaved."""
    feeders = [make() for _ in range(streams)]
    start = time.process_time()
    for n, payload in enumerate(payloads):
        for feed in feeders:
            feed(payload, n * step_ms)
    return time.process_time() - start


def decoder(codec: str, **options: str) -> Callable[[], Callable[[bytes, int], object]]:
    def make() -> Callable[[bytes, int], object]:
        ctx = av.CodecContext.create(codec, "r")
        ctx.sample_rate, ctx.layout = RATE, "mono"
        ctx.options = options
        return lambda payload, ms: ctx.decode(av.Packet(payload))

    return make


def transcoder(
    codec: str, **options: object
) -> Callable[[], Callable[[bytes, int], object]]:
    return lambda: AudioTranscoder(codec, **options).feed  # type: ignore[arg-type]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--streams", type=int, default=20)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    alaw, g726, ima = (
        g711a(args.seconds),
        g726_32k(args.seconds),
        ima_dvi4(args.seconds),
    )
    cases: list[
        tuple[str, list[bytes], int, Callable[[], Callable[[bytes, int], object]]]
    ] = [
        ("G.711A decode only (baseline)", alaw, 40, decoder("pcm_alaw")),
        ("G.711A -> AAC 8 kHz 24 kbit/s", alaw, 40, transcoder("pcm_alaw")),
        (
            "G.711A -> AAC 16 kHz 32 kbit/s",
            alaw,
            40,
            transcoder("pcm_alaw", out_rate=16000, bit_rate=32000),
        ),
        (
            "G.726-32 decode only (baseline)",
            g726,
            40,
            decoder("g726le", bits_per_coded_sample="4"),
        ),
        ("G.726-32 -> AAC 8 kHz", g726, 40, transcoder("g726", g726_bits=4)),
        (
            "IMA-ADPCM decode only (baseline)",
            ima,
            63,
            decoder("adpcm_ima_wav", bits_per_coded_sample="4", block_align="4096"),
        ),
        ("IMA-ADPCM -> AAC 8 kHz", ima, 63, transcoder("adpcm_ima")),
    ]
    print(
        f"{date.today()}  Python {platform.python_version()}  PyAV {av.__version__}"
        f"  libavcodec {'.'.join(map(str, av.library_versions['libavcodec']))}"
        f"  {platform.processor() or platform.machine()}"
    )
    print(
        f"{args.streams} streams x {args.seconds} s of audio in 40 ms frames (IMA: 63 ms blocks),"
        f" median of {args.repeat} runs"
    )
    print(f"{'case':36} {'CPU s per stream-second':>24} {'streams per core':>17}")
    for name, payloads, step, make in cases:
        audio_seconds = len(payloads) * step / 1000 * args.streams
        costs = [
            run(args.streams, payloads, step, make) / audio_seconds
            for _ in range(args.repeat)
        ]
        cost = statistics.median(costs)
        print(f"{name:36} {cost:>24.5f} {1 / cost:>17.0f}")


if __name__ == "__main__":
    main()
