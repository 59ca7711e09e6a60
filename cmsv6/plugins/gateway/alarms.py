"""Alarms from position reports: the 0x0200 alarm bits, the JT/T 1078 video-alarm items,
and the active-safety events (0x64-0x67).

An alarm bit opens an alarm when it rises and closes it when it falls; a session's first
report resets whatever was left open. Active-safety items are events: each opens and closes
at once, keyed by its alarm id.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from cmsv6.db.alarms import AlarmChange, AlarmReset
from cmsv6.protocols.jt808.jsonable import jsonable
from cmsv6.protocols.jt808.messages.location import (
    EXTRA_ITEMS,
    AdasAlarm,
    BsdAlarm,
    DsmAlarm,
    Location,
    TpmsAlarm,
)

#: JT/T 808-2019 table 25, by bit.
ALARM_BITS = {
    0: "emergency",
    1: "overspeed",
    2: "fatigue",
    3: "danger_warning",
    4: "gnss_fault",
    5: "gnss_antenna_cut",
    6: "gnss_antenna_short",
    7: "power_low",
    8: "power_cut",
    9: "display_fault",
    10: "tts_fault",
    11: "camera_fault",
    12: "ic_card_fault",
    13: "overspeed_warning",
    14: "fatigue_warning",
    15: "violation_driving",
    16: "tire_pressure_warning",
    17: "right_turn_blind_spot",
    18: "driving_timeout_day",
    19: "parking_timeout",
    20: "area_in_out",
    21: "route_in_out",
    22: "route_time",
    23: "route_deviation",
    24: "vss_fault",
    25: "fuel_abnormal",
    26: "stolen",
    27: "illegal_ignition",
    28: "illegal_move",
    29: "collision_warning",
    30: "rollover_warning",
    31: "illegal_door_open",
}

#: JT/T 1078 table 14 (item 0x14), by bit.
VIDEO_ALARM_BITS = {
    0: "video_signal_loss",
    1: "video_signal_occlusion",
    2: "storage_fault",
    3: "other_video_fault",
    4: "overcrowding",
    5: "abnormal_driving",
    6: "recording_threshold",
}

_SAFETY = {AdasAlarm: "adas", DsmAlarm: "dsm", TpmsAlarm: "tpms", BsdAlarm: "bsd"}

#: The item ids that decode to an active-safety event: a report without any of them, and
#: with the alarm words of the one before, makes no change (the session's quick test).
SAFETY_ITEMS = frozenset(
    item_id for item_id, codec in EXTRA_ITEMS.items()
    if any(codec is getattr(cls, "CODEC", None) for cls in _SAFETY)
)  # fmt: skip


def alarm_word(location: Location) -> tuple[int, int]:
    """(alarm bits, 1078 video-alarm bits) of a report."""
    video = location.extras.get(0x14)
    return location.alarm, video if isinstance(video, int) else 0


def kinds(alarm: int, video: int) -> tuple[str, ...]:
    out = [f"bit:{name}" for bit, name in ALARM_BITS.items() if alarm >> bit & 1]
    out += [f"bit:video:{name}" for bit, name in VIDEO_ALARM_BITS.items() if video >> bit & 1]
    return tuple(out)


def changes(
    device_id: int,
    previous: tuple[int, int] | None,
    location: Location,
    time: datetime,
) -> list[AlarmChange | AlarmReset]:
    """The alarm changes one report makes, given the alarm words of the one before
    (None for a session's first report)."""
    current = alarm_word(location)
    out: list[AlarmChange | AlarmReset] = []
    lat, lon = location.latitude, location.longitude
    if previous != current:  # the common case, nothing changed, costs one comparison
        now_set = set(kinds(*current))
        if previous is None:
            out.append(AlarmReset(device_id, time, tuple(sorted(now_set))))
            was_set: set[str] = set()
        else:
            was_set = set(kinds(*previous))
        for kind in sorted(now_set - was_set):
            out.append(AlarmChange(device_id, kind, time, True, lat, lon))
        for kind in sorted(was_set - now_set):
            out.append(AlarmChange(device_id, kind, time, False))
    for item in location.extras.values():
        name = _SAFETY.get(type(item))
        if name is not None:
            out.append(_safety_event(device_id, name, item, time, lat, lon))
    return out


def _safety_event(
    device_id: int, name: str, item: Any, time: datetime, lat: float, lon: float
) -> AlarmChange:
    kind = f"{name}:{getattr(item, 'alarm_type', 0)}:{item.alarm_id}"
    details = json.dumps(jsonable(item), ensure_ascii=False)
    return AlarmChange(device_id, kind, time, True, lat, lon, details, instant=True)
