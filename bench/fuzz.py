"""Long fuzz run: mutated corpus frames through the deframer and every body decoder.

    .venv/bin/python bench/fuzz.py [--count 1000000] [--seed 1]

Every JT/T 808 frame of the conformance corpus is mutated (bit flips, byte changes,
insertions, deletions, truncation, splices of two frames) and fed in random-sized chunks to
one long-lived Deframer, whose frames are decoded. Only FrameError values and CodecError
may come out, and the deframer's buffer never exceeds one maximal frame. Prints counts and
exits 1 on the first other exception (with the input that caused it): the codec turns only
the errors bad input causes into CodecError, so any other is a bug in a decoder.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import traceback
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cmsv6.protocols.jt808.codec import decode_body_reference, decode_frame  # noqa: E402
from cmsv6.protocols.jt808.errors import CodecError  # noqa: E402
from cmsv6.protocols.jt808.framing import MAX_ESCAPED, Deframer, Frame, FrameError  # noqa: E402
from tests.support.corpus import frame_bytes, jt808  # noqa: E402


def mutate(rnd: random.Random, data: bytearray, corpus: list[bytes]) -> bytes:
    for _ in range(rnd.randint(1, 4)):
        op = rnd.randrange(6)
        if not data:
            data = bytearray(rnd.choice(corpus))
        i = rnd.randrange(len(data))
        if op == 0:
            data[i] ^= 1 << rnd.randrange(8)
        elif op == 1:
            data[i] = rnd.choice((0x7E, 0x7D, 0x00, 0xFF, rnd.randrange(256)))
        elif op == 2:
            data[i:i] = bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 8)))
        elif op == 3:
            del data[i : i + rnd.randint(1, 8)]
        elif op == 4:
            del data[i:]
        else:
            other = rnd.choice(corpus)
            data = data[:i] + other[rnd.randrange(len(other)) :]
    return bytes(data)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rnd = random.Random(args.seed)
    corpus = []
    for r in jt808():
        data = frame_bytes(r)
        corpus.append(data if data.startswith(b"\x7e") else b"\x7e" + data + b"\x7e")
    deframer = Deframer()
    outcomes: Counter[str] = Counter()
    max_buffer = 0
    started = time.monotonic()
    for n in range(args.count):
        data = mutate(rnd, bytearray(rnd.choice(corpus)), corpus)
        try:
            pos = 0
            while pos < len(data):
                step = rnd.randint(1, 64)
                for item in deframer.feed(data[pos : pos + step]):
                    if isinstance(item, FrameError):
                        outcomes["frame error"] += 1
                        continue
                    assert isinstance(item, Frame)
                    try:
                        decode_frame(item)
                        outcomes["decoded"] += 1
                    except CodecError:
                        outcomes["body error"] += 1
                    if n % 50 == 0:  # the construct reference too, on a sample
                        try:
                            decode_body_reference(item.header.msg_id, item.body, item.header.version)
                        except CodecError:
                            pass
                pos += step
                max_buffer = max(max_buffer, deframer.buffered)
                assert deframer.buffered <= MAX_ESCAPED + 1, deframer.buffered
        except Exception:
            traceback.print_exc()
            print(f"input {n}: {data.hex()}")
            return 1
        if n and n % 100_000 == 0:
            print(f"{n:,} inputs, {time.monotonic() - started:.0f} s, {dict(outcomes)}", flush=True)
    elapsed = time.monotonic() - started
    print(f"{args.count:,} mutated frames in {elapsed:.0f} s: {dict(outcomes)}")
    print(f"no exception but FrameError/CodecError; largest deframer buffer {max_buffer} bytes "
          f"(bound {MAX_ESCAPED + 1})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
