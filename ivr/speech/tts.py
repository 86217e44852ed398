"""Text to speech at build time: pyttsx3 driving espeak-ng, a fresh engine for every run.

What is done about pyttsx3 2.99's faults, so a build gives the same files every time:
- `runAndWait()` returns as soon as espeak-ng starts speaking, and the next one
  cancels whatever is still playing: after each utterance espeak-ng is waited for
  (`espeak_Synchronize`) and the file is awaited until its header matches its length.
- settings (rate, volume, pitch) are held back until `runAndWait()`, whose stop()
  can cancel them in espeak-ng's queue before they apply (the text is then spoken
  at the default speed): they are handed over and applied before speaking.
- the samples that arrive with the end-of-message event miss pyttsx3's file: every
  sample is taken from espeak-ng's callback instead.
- the first utterance of an engine is the least reliable: a throw-away word first.
- it prints "Audio saved to ..." for every file: its output is sent to /dev/null.
- it takes any voice name without complaint: voices are looked up first.
- espeak-ng itself carries state from one utterance to the next: every run of a
  prompt is spoken by a child process of its own (see `synthesise`), and a render
  that fails is done again (three tries, then an error).

What is done about espeak-ng: digits are turned into words first (it reads "95558"
as a number), and a text mixing Chinese and Latin script is cut into runs, each
spoken by a voice of its script ("普通话服务请按1，For English, press 2.").
"""

from __future__ import annotations

import contextlib
import ctypes.util
import os
import re
import tempfile
import time
import wave
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ivr.speech.audio import Samples

#: espeak-ng voice and speed per language family
DEFAULT_VOICES: dict[str, dict[str, Any]] = {
    "zh": {"name": "cmn-latn-pinyin", "rate": 165},
    "en": {"name": "en-us", "rate": 165},
}
FALLBACK_VOICE: dict[str, Any] = {"name": "en-us", "rate": 165}
#: silence between runs of different script in one prompt
RUN_GAP_SECONDS = 0.12
TRIES = 3
#: the longest a child may take to speak one prompt
CHILD_SECONDS = 30.0

HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
CJK_PUNCTUATION = "\u3000-\u303f\uff00-\uffef"
_HAN_RUN = re.compile(f"[{HAN}{CJK_PUNCTUATION}]+(?:\\s+[{HAN}{CJK_PUNCTUATION}]+)*")
_DIGITS = re.compile(r"[0-9]+")
_HAN_CHAR = re.compile(f"[{HAN}{CJK_PUNCTUATION}]")
_ZH_DIGITS = "零一二三四五六七八九"
_SPEAKABLE = re.compile(r"[^\W_]")

INSTALL_HINT = ("install it with 'apt-get install espeak-ng' (Debian, Ubuntu), "
                "'dnf install espeak-ng' (Fedora) or 'brew install espeak-ng' (macOS)")


class TtsError(RuntimeError):
    """Speech could not be rendered; the message says what to do."""


def check_espeak() -> None:
    """Raise TtsError, saying how to install it, if espeak-ng's library is missing."""
    if ctypes.util.find_library("espeak-ng") is None and ctypes.util.find_library("espeak") is None:
        raise TtsError(f"espeak-ng is not installed, and prompts are rendered with it: {INSTALL_HINT}; "
                       "or place recorded audio under prompts/recorded/")


def voice_for(language: str, settings: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The voice a prompt in `language` is spoken with: the language's default, then
    the catalog's settings (`_style.voice`, then the prompt's `voice`)."""
    voice = dict(DEFAULT_VOICES.get(language.split("-")[0], FALLBACK_VOICE))
    voice.update(settings or {})
    return voice


@dataclass(frozen=True)
class Run:
    text: str
    voice: Mapping[str, Any]


def speech_runs(text: str, language: str, voice: Mapping[str, Any]) -> list[Run]:
    """What to synthesise for `text`: runs of one script each, digits as words."""
    chinese = language.startswith("zh")
    text = _DIGITS.sub(lambda m: _digits_as_words(text, m, chinese), text)
    zh_voice = voice if chinese else {**DEFAULT_VOICES["zh"], **_speed(voice)}
    other_voice = voice if not chinese else {**DEFAULT_VOICES["en"], **_speed(voice)}
    runs: list[Run] = []
    at = 0
    for match in _HAN_RUN.finditer(text):
        if match.start() > at:
            runs.append(Run(text[at:match.start()], other_voice))
        runs.append(Run(match.group(), zh_voice))
        at = match.end()
    if at < len(text):
        runs.append(Run(text[at:], other_voice))
    return [Run(r.text.lstrip(" ,.;:!?").rstrip(), r.voice) for r in runs if _SPEAKABLE.search(r.text)]


def _digits_as_words(text: str, match: re.Match[str], chinese: bool) -> str:
    """Digits said in the script around them: Chinese digits after Chinese text ("按1",
    and at the start of a Chinese prompt), else left to the English voice, three or
    more one by one ("95558" is a hotline number, not a quantity)."""
    before = text[:match.start()].rstrip()
    digits = match.group()
    if _HAN_CHAR.fullmatch(before[-1:]) or (chinese and not before):
        return "".join(_ZH_DIGITS[int(d)] for d in digits)
    if chinese and not (before[-1:].isascii() and (before[-1:].isalpha() or before[-1:] in ",.;:!?'\"")):
        return "".join(_ZH_DIGITS[int(d)] for d in digits)
    return " ".join(digits) if len(digits) >= 3 else digits


def _speed(voice: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in voice.items() if k != "name"}


def synthesise(text: str, language: str, voice: Mapping[str, Any]) -> tuple[Samples, int]:
    """`text` spoken: mono samples in -1..1 and their rate (espeak-ng's, 22 050 Hz).

    espeak-ng keeps state from one utterance to the next (its pitch flutter goes on
    where the last one stopped), and a change of voice or speed does not always reach
    the very next utterance. So each run of a prompt is spoken by a child forked for it,
    whose engine is set to the run's voice, says one throw-away word, then the text:
    the same text and voice always give the same samples, whatever else a build
    renders and in whatever order."""
    runs = speech_runs(text, language, voice)
    if not runs:
        raise TtsError(f"nothing to say in {text!r}")
    check_espeak()
    pieces: list[Samples] = []
    rate = 0
    for run in runs:
        samples, rate = _speak_run(run)
        if pieces:
            pieces.append(np.zeros(int(RUN_GAP_SECONDS * rate), np.float32))
        pieces.append(samples)
    return np.concatenate(pieces), rate


def _speak_run(run: Run) -> tuple[Samples, int]:
    problem = ""
    for _ in range(TRIES):
        with tempfile.TemporaryDirectory(prefix="ivr-tts-") as folder:
            spoken = Path(folder) / "run.wav"
            problem = _speak_in_child(run, spoken)
            if problem.startswith("voice:"):
                raise TtsError(problem.removeprefix("voice:"))
            found = None if problem else _await_wav(spoken)
            if found is not None and len(found[0]):
                return found
            problem = problem or "espeak-ng wrote no audio"
    raise TtsError(f"espeak-ng gave no audio for {run.text[:40]!r} in {TRIES} tries ({problem})")


def _speak_in_child(run: Run, path: Path) -> str:
    """Fork, speak `run` into `path`; '' or what went wrong."""
    error = path.with_suffix(".error")
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 0
        try:
            _speak(run, path)
        except TtsError as exc:
            error.write_text(f"voice:{exc}", encoding="utf-8")
            code = 3
        except BaseException as exc:  # reported through the file, then exit
            error.write_text(f"{type(exc).__name__}: {exc}", encoding="utf-8")
            code = 2
        os._exit(code)
    deadline = time.monotonic() + CHILD_SECONDS
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            return f"espeak-ng took over {CHILD_SECONDS:.0f} s"
        time.sleep(0.002)
    if error.exists():
        return error.read_text(encoding="utf-8")
    return "" if os.waitstatus_to_exitcode(status) == 0 else f"exit status {status}"


def _speak(run: Run, path: Path) -> None:
    """In a fresh child: set the voice, say a throw-away word, then the run's text."""
    import ctypes

    with _quiet():
        import pyttsx3
        from pyttsx3.drivers import _espeak

        engine = pyttsx3.init("espeak")
        voices = {}
        for v in engine.getProperty("voices"):
            voices[v.id.lower()] = voices[v.id.rsplit("/", 1)[-1].lower()] = v.id
        name = str(run.voice.get("name", "en-us"))
        found = voices.get(name.lower())
        if found is None:
            raise TtsError(f"'{name}' is not an espeak-ng voice here; 'espeak-ng --voices' lists them")
        # pyttsx3 holds settings back until runAndWait, which then stops "whatever is
        # playing" right after handing them to espeak-ng: when espeak-ng's thread has not
        # yet applied them, that stop throws them away and the text is spoken at the
        # default speed (one render in twenty on a busy machine). So the settings are
        # given now, and espeak-ng is waited for until it has applied them.
        engine.proxy.setBusy(False)
        engine.setProperty("voice", found)
        engine.setProperty("rate", int(run.voice.get("rate", 165)))
        engine.setProperty("volume", float(run.voice.get("volume", 1.0)))
        engine.setProperty("pitch", int(run.voice.get("pitch", 50)))
        _espeak.Synchronize()

        # pyttsx3 writes its file when espeak-ng says the message ended, and only then adds
        # the samples that came with that news, so the last of them can miss the file. The
        # samples are taken here too, all of them, before pyttsx3 sees them.
        driver = engine.proxy._driver
        heard: list[bytes] = []

        def on_synth(wav: Any, samples: int, events: Any) -> int:
            if samples > 0 and driver._speaking:
                heard.append(ctypes.string_at(wav, samples * 2))
            return int(driver._onSynth(wav, samples, events))

        _espeak.SetSynthCallback(on_synth)

        def speak(text: str, target: Path) -> None:
            heard.clear()
            engine.save_to_file(text, str(target))
            engine.runAndWait()
            # runAndWait returns as soon as espeak-ng starts speaking; the next runAndWait
            # would then cancel what is still being spoken (its stop() cancels whatever
            # is playing). Wait for the end, and for pyttsx3's file.
            _espeak.Synchronize()
            written = _await_wav(target)
            if written is None:
                raise RuntimeError(f"no audio in {target.name}")
            with wave.open(str(target), "wb") as whole:
                whole.setnchannels(1)
                whole.setsampwidth(2)
                whole.setframerate(written[1])
                whole.writeframes(b"".join(heard))

        # the first utterance of an engine is the one most likely to come back early, and
        # the one a new setting may not reach yet
        speak("ready", path.with_name("warm-up.wav"))
        speak(run.text, path)


def _await_wav(path: Path, wait: float = 2.0) -> tuple[Samples, int] | None:
    """The WAV at `path` once it is whole (its header's length matches the file)."""
    deadline = time.monotonic() + wait
    while True:
        try:
            with wave.open(str(path), "rb") as w:
                frames, width, rate = w.getnframes(), w.getsampwidth(), w.getframerate()
                raw = w.readframes(frames)
            if width == 2 and len(raw) == frames * 2:
                return (np.frombuffer(raw, "<i2") / 32768).astype(np.float32), rate
        except (OSError, EOFError, wave.Error):
            pass
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.01)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """pyttsx3 prints a line per file: to /dev/null with it."""
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        yield
