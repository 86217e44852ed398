"""Telephone audio: what Asterisk plays is 8 kHz, 16-bit, mono PCM WAV.

`to_telephone` turns any rendered or recorded audio into that (resampled with soxr,
peaks kept 1 dB under full scale so nothing clips), and `verify` checks a written
file is what Asterisk needs and that somebody will hear something in it.
"""

from __future__ import annotations

import os
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

RATE = 8000
#: peak level after conversion: 1 dB under full scale
HEADROOM_DB = 1.0
PEAK = 10 ** (-HEADROOM_DB / 20)
#: a file whose loudest sample is under this (-40 dBFS) is taken for silence
SILENT_PEAK = 10 ** (-40 / 20)
MIN_SECONDS = 0.05
MAX_SECONDS = 120.0

Samples = npt.NDArray[np.float32]


class AudioError(ValueError):
    """Audio that cannot be read or converted, with what is wrong."""


def read_wav(path: str | Path) -> tuple[Samples, int]:
    """A PCM WAV file (8, 16, 24 or 32 bit, any rate, mono or more channels) as mono
    float samples in -1..1, and its rate."""
    try:
        with wave.open(str(path), "rb") as w:
            channels, width, rate = w.getnchannels(), w.getsampwidth(), w.getframerate()
            raw = w.readframes(w.getnframes())
    except (wave.Error, EOFError) as exc:
        raise AudioError(f"{path}: not a PCM WAV file ({exc})") from None
    except OSError as exc:
        raise AudioError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    if width == 1:
        data = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128) / 128
    elif width == 2:
        data = np.frombuffer(raw, "<i2").astype(np.float32) / 32768
    elif width == 3:
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        data = ((b[:, 0] | b[:, 1] << 8 | b[:, 2] << 16) << 8 >> 8).astype(np.float32) / 2**23
    elif width == 4:
        data = np.frombuffer(raw, "<i4").astype(np.float32) / 2**31
    else:
        raise AudioError(f"{path}: {width * 8}-bit samples are not supported")
    if channels > 1:
        data = data[: len(data) // channels * channels].reshape(-1, channels).mean(axis=1)
    return data.astype(np.float32), rate


def to_telephone(samples: Samples, rate: int, *, normalise: bool = True,
                 trim: bool = False) -> Samples:
    """Resampled to 8 kHz. `normalise` brings the peak to 1 dB under full scale (TTS
    voices differ in loudness); otherwise the level is kept and only lowered if it
    would clip. `trim` cuts silence at both ends, leaving 20 ms (for fragments that
    are played one after another)."""
    import soxr  # imported here: serving calls never needs it

    out = soxr.resample(samples, rate, RATE, quality="HQ") if rate != RATE else samples.copy()
    out = np.asarray(out, dtype=np.float32)
    if trim and len(out):
        loud = np.flatnonzero(np.abs(out) >= SILENT_PEAK)
        if len(loud):
            pad = int(0.02 * RATE)
            out = out[max(0, loud[0] - pad): loud[-1] + pad + 1]
    peak = float(np.max(np.abs(out))) if len(out) else 0.0
    if peak > 0 and (normalise or peak > PEAK):
        out = out * (PEAK / peak)
    return out


def write_wav(path: str | Path, samples: Samples) -> None:
    """8 kHz 16-bit mono WAV, written whole under a temporary name then moved into
    place, so a reader never sees half a file."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    pcm = np.clip(np.round(samples * 32767), -32768, 32767).astype("<i2")
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with wave.open(str(temporary), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(RATE)
            w.writeframes(pcm.tobytes())
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


@dataclass(frozen=True)
class Checked:
    seconds: float
    peak_db: float
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(path: str | Path) -> Checked:
    """Whether `path` is a WAV Asterisk plays as it is and that is not silent."""
    problems: list[str] = []
    try:
        with wave.open(str(path), "rb") as w:
            channels, width, rate = w.getnchannels(), w.getsampwidth(), w.getframerate()
            frames = w.getnframes()
            raw = w.readframes(frames)
            compression = w.getcomptype()
    except (wave.Error, EOFError, OSError) as exc:
        return Checked(0.0, -120.0, (f"not a readable PCM WAV file ({exc})",))
    if compression != "NONE":
        problems.append(f"compressed ({compression}), not PCM")
    if rate != RATE:
        problems.append(f"{rate} Hz, not {RATE} Hz")
    if width != 2:
        problems.append(f"{width * 8}-bit, not 16-bit")
    if channels != 1:
        problems.append(f"{channels} channels, not mono")
    if len(raw) != frames * channels * width:
        problems.append("truncated")
    seconds = frames / rate if rate else 0.0
    if seconds < MIN_SECONDS:
        problems.append(f"{seconds * 1000:.0f} ms long: too short to hear")
    elif seconds > MAX_SECONDS:
        problems.append(f"{seconds:.0f} s long: longer than {MAX_SECONDS:.0f} s")
    peak = 0.0
    if width == 2 and raw:
        pcm = np.frombuffer(raw[: len(raw) // 2 * 2], "<i2")
        peak = float(np.max(np.abs(pcm.astype(np.int32)))) / 32768 if len(pcm) else 0.0
        if peak < SILENT_PEAK:
            problems.append("silent")
        elif peak >= 32767 / 32768:
            problems.append("clipped: samples at full scale")
    peak_db = 20 * float(np.log10(peak)) if peak > 0 else -120.0
    return Checked(seconds, peak_db, tuple(problems))
