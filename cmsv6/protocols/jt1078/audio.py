"""JT/T 1078 audio payloads, sans-IO: which codec, and the bytes a decoder should get.

Decoding itself is FFmpeg's (PyAV), in the media server; this module only says what a
payload is. Units send G.711A/U, G.726 (16/24/32/40 kbit/s), IMA-ADPCM or AAC (payload
type, table 12). HiSilicon-based units (Streamax and many others) put a 4-byte header in
front of the samples::

    00 01 LL 00        LL = the length of what follows, in 16-bit words

which is stripped here. IMA-ADPCM then starts with its 4-byte state (the predictor, int16
little-endian, which is the previous block's last sample and not a sample of its own; step
index; a reserved byte) followed by two 4-bit samples a byte, high nibble first
(HiSilicon's "DVI4"). G.726 code words are packed from the low bits (FFmpeg's ``g726le``):
the captured units decode to sound that way and to noise the other way.
cmsv6.media.audio decodes both.
"""

from __future__ import annotations

from attrs import frozen

from cmsv6.protocols.jt808.messages.jt1078 import AvCodec, codec_name

#: Payload type → codec name, as FFmpeg names the decoder where one name fits
#: ("adpcm_ima": the HiSilicon state + nibbles layout above; cmsv6.media.audio feeds it to
#: FFmpeg).
AUDIO_CODECS: dict[int, str] = {
    AvCodec.G711A: "pcm_alaw",
    AvCodec.G711U: "pcm_mulaw",
    AvCodec.G726: "g726",
    AvCodec.ADPCMA: "adpcm_ima",
    AvCodec.AAC: "aac",
    AvCodec.AACLC: "aac",
    AvCodec.HEAAC: "aac",
}

HISILICON_HEADER_SIZE = 4
#: IMA-ADPCM's state in front of the samples.
IMA_STATE_SIZE = 4
#: G.726 rates by bits per sample (8000 samples a second).
G726_RATES = {2: 16000, 3: 24000, 4: 32000, 5: 40000}


class AudioError(ValueError):
    """A payload that cannot be given to a decoder, in words."""


@frozen
class AudioPayload:
    """One audio frame's payload, classified.

    ``codec`` is one of ``AUDIO_CODECS``' names; ``data`` is what the decoder gets (the
    HiSilicon header removed, ``hisilicon`` says whether there was one); ``samples`` is
    how many 8 kHz samples it holds where the bytes alone say (G.711: one a byte;
    IMA-ADPCM: two a byte after the state), else None (G.726 needs its rate, AAC its own
    headers).
    """

    codec: str
    payload_type: int
    data: bytes
    hisilicon: bool
    samples: int | None

    @property
    def ima_state(self) -> tuple[int, int] | None:
        """IMA-ADPCM's (first sample, step index), else None."""
        if self.codec != "adpcm_ima":
            return None
        return int.from_bytes(self.data[0:2], "little", signed=True), self.data[2]


def has_hisilicon_header(payload: bytes) -> bool:
    """True when the payload starts ``00 01 LL 00`` and LL words are exactly what follows
    (the length check keeps G.711 samples that happen to start 00 01 from matching)."""
    return (
        len(payload) >= HISILICON_HEADER_SIZE
        and payload[0] == 0x00
        and payload[1] == 0x01
        and payload[3] == 0x00
        and payload[2] * 2 == len(payload) - HISILICON_HEADER_SIZE
    )


def strip_hisilicon(payload: bytes) -> tuple[bytes, bool]:
    """The payload without its HiSilicon header, and whether it had one."""
    if has_hisilicon_header(payload):
        return payload[HISILICON_HEADER_SIZE:], True
    return payload, False


def classify_audio(payload_type: int, payload: bytes) -> AudioPayload:
    """What an audio frame of this payload type holds. Raises AudioError for a codec we do
    not take, or an IMA-ADPCM frame too short for its state."""
    codec = AUDIO_CODECS.get(payload_type)
    if codec is None:
        raise AudioError(f"audio coding {codec_name(payload_type)} is not supported")
    if codec == "aac":  # ADTS carries its own headers; nothing to strip
        return AudioPayload(codec, payload_type, payload, False, None)
    data, hisilicon = strip_hisilicon(payload)
    samples: int | None = None
    if codec in ("pcm_alaw", "pcm_mulaw"):
        samples = len(data)
    elif codec == "adpcm_ima":
        if len(data) < IMA_STATE_SIZE:
            raise AudioError(f"IMA-ADPCM frame of {len(data)} bytes has no 4-byte state")
        samples = (len(data) - IMA_STATE_SIZE) * 2
    return AudioPayload(codec, payload_type, data, hisilicon, samples)


def g726_bits_per_sample(size: int, duration_ms: int) -> int | None:
    """G.726's bits per sample (2-5: 16-40 kbit/s) for ``size`` bytes lasting
    ``duration_ms`` at 8 kHz (the gap between two audio timestamps, or 0x1003's frame
    length), or None when no rate fits exactly."""
    if duration_ms <= 0:
        return None
    bits, rest = divmod(size * 8 * 1000, duration_ms * 8000)
    return bits if rest == 0 and bits in G726_RATES else None
