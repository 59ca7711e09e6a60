"""``cmsv6 sim`` options."""

from __future__ import annotations

import argparse
import io

import pytest

from cmsv6.sim.cli import add_arguments, config_from_args, default_cache_dir, run


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


def test_defaults() -> None:
    """Without options: one 2013 device at the local gateway, reports every 10 s,
    heartbeats every 30 s, T = 10 s with 3 retransmissions, until stopped."""
    config = config_from_args(_args())
    assert config.server == "tcp:127.0.0.1:7611" and config.devices == 1
    assert config.version == "2013" and config.duration is None
    d = config.device
    assert (d.interval, d.heartbeat, d.timeout, d.retries) == (10.0, 30.0, 10.0, 3)
    assert d.max_unacked == 10_000 and d.area.latitude == 22.54


def test_options_reach_the_configuration() -> None:
    """Every option ends up in the fleet or device configuration."""
    config = config_from_args(
        _args(
            "--server", "tcp:10.0.0.1:6608", "--devices", "50", "--first-phone", "013900000000",
            "--version", "mixed", "--interval", "0.5", "--duration", "60", "--heartbeat", "20",
            "--gap-probability", "0.01", "--alarm-probability", "0.02", "--seed", "9",
            "--state", "s.json", "--ack-log", "a.jsonl", "--plate-prefix", "京A",
            "--center", "39.9,116.4", "--fallback-after", "5", "--max-unacked", "100",
        )
    )
    assert (config.server, config.devices, config.first_phone) == ("tcp:10.0.0.1:6608", 50, "013900000000")
    assert (config.version, config.duration, config.seed) == ("mixed", 60.0, 9)
    assert (config.state, config.ack_log, config.plate_prefix) == ("s.json", "a.jsonl", "京A")
    d = config.device
    assert (d.interval, d.heartbeat, d.gap_probability, d.alarm_probability) == (0.5, 20.0, 0.01, 0.02)
    assert (d.area.latitude, d.area.longitude, d.fallback_after, d.max_unacked) == (39.9, 116.4, 5, 100)


@pytest.mark.parametrize("argv", [["--interval", "0"], ["--gap-probability", "2"], ["--devices", "0"], ["--center", "x"]])
def test_bad_values_are_refused(argv: list[str]) -> None:
    """Out-of-range values are usage errors."""
    with pytest.raises(SystemExit):
        _args(*argv)


def test_phone_too_long_for_2013() -> None:
    """Phones beyond the 12 digits of a 2013 header are refused before anything runs."""
    err = io.StringIO()
    assert run(_args("--first-phone", "999999999999", "--devices", "2"), err) == 2
    assert "12 digits" in err.getvalue()
    config = config_from_args(_args("--first-phone", "999999999999", "--devices", "2", "--version", "2019"))
    assert config.devices == 2


def test_camera_options() -> None:
    """Cameras: 4 channels, HiSilicon audio headers, real time and a clip cache in the
    temporary directory unless told; every option reaches the configuration."""
    config = config_from_args(_args())
    assert config.device.channels == 4
    assert (config.video.audio_header, config.video.pace) == ("hisilicon", 1.0)
    assert config.video.cache_dir == default_cache_dir()
    config = config_from_args(
        _args("--channels", "0", "--audio-header", "none", "--video-pace", "4", "--cache-dir", "c")
    )
    assert config.device.channels == 0
    assert (config.video.audio_header, config.video.pace, config.video.cache_dir) == ("none", 4.0, "c")
    for argv in (["--audio-header", "x"], ["--channels", "-1"], ["--video-pace", "0"]):
        with pytest.raises(SystemExit):
            _args(*argv)


def test_issue_12_options() -> None:
    """G.711A, a loudspeaker, H.264 everywhere, three days of recordings and nothing lost
    unless told; every option reaches the device configuration; bad values are refused."""
    device = config_from_args(_args()).device
    assert (device.audio_codec, device.audio_output, device.h265_channels) == ("g711a", True, frozenset())
    assert (device.recording_days, device.lose_packet) == (3, 0)
    device = config_from_args(_args(
        "--audio-codec", "adpcm", "--no-audio-output", "--h265-channels", "2,3",
        "--recording-days", "7", "--lose-packet", "2",
    )).device
    assert (device.audio_codec, device.audio_output, device.h265_channels) == ("adpcm", False, frozenset({2, 3}))
    assert (device.recording_days, device.lose_packet) == (7, 2)
    for argv in (["--audio-codec", "aac"], ["--h265-channels", "0"], ["--h265-channels", "x"],
                 ["--recording-days", "0"], ["--lose-packet", "-1"]):
        with pytest.raises(SystemExit):
            _args(*argv)
