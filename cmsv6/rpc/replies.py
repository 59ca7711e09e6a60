"""Reading a device's reply to a command sent through the cluster (``SendMessage``,
``SendForMedia``): login's live streams and the media server's playback and talk-back both
need to know whether the device said yes, and in words why not."""

from __future__ import annotations

from typing import Any

from cmsv6.protocols.jt808.codec import decode_body
from cmsv6.protocols.jt808.errors import CodecError
from cmsv6.protocols.jt808.messages.core import TerminalResponse
from cmsv6.rpc.commands import DeviceRefused

#: Results of a terminal's general response (0x0001) other than 0 (success).
RESULTS = {1: "failure", 2: "message error", 3: "not supported"}


def accepted(reply: dict[str, Any], phone: str, msg_id: int, what: str) -> None:
    """The device's general response to ``msg_id``: result 0, or DeviceRefused saying what
    it said (``what`` names the command in words)."""
    if reply["msg_id"] != 0x0001:
        raise DeviceRefused(f"device {phone} answered {what} with 0x{reply['msg_id']:04x},"
                            " not a general response")  # fmt: skip
    try:
        answer = decode_body(0x0001, reply["body"], reply["version"])
    except CodecError as e:
        raise DeviceRefused(f"device {phone} answered {what} with a general response that does"
                            f" not decode ({e}): {reply['body'][:64].hex()}") from None  # fmt: skip
    if not isinstance(answer, TerminalResponse) or answer.result != 0:
        result = getattr(answer, "result", None)
        meaning = RESULTS.get(result, "unknown result")  # type: ignore[arg-type]
        raise DeviceRefused(f"device {phone} refused {what}: result {result} ({meaning})")
