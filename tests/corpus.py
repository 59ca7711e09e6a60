"""The conformance corpus (tests/conformance/, copied from the project's shared corpus).

Records were mined from public peers' test suites; each keeps its ``source`` and
``commit``. See tests/conformance/README.md for the schema.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

HERE = Path(__file__).parent / "conformance"
FILES = ("jt808_frames.jsonl", "encoder_cases.jsonl", "jt1078_packets.jsonl")


@lru_cache(maxsize=None)
def records(name: str | None = None) -> tuple[dict[str, Any], ...]:
    names = FILES if name is None else (name,)
    out = []
    for n in names:
        with open(HERE / n, encoding="utf-8") as f:
            out.extend(json.loads(line) for line in f if line.strip())
    return tuple(out)


def jt808(kinds: tuple[str, ...] = ("frame", "frame_unflagged")) -> Iterator[dict[str, Any]]:
    """JT/T 808 frame records (all files), de-duplicated by hex."""
    seen = set()
    for r in records():
        if r["kind"] in kinds and r["hex"] not in seen:
            seen.add(r["hex"])
            yield r


def frame_bytes(r: dict[str, Any]) -> bytes:
    return bytes.fromhex(r["hex"])


def body_version(r: dict[str, Any]) -> int:
    return 2019 if str(r.get("version")) == "2019" else 2013
