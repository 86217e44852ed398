"""The FastAGI server on a real port, in front of a seeded bank, with real prompt audio."""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import struct
import wave
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from ivr.bank.service import Bank
from ivr.channels.asterisk.call import PromptAudio
from ivr.channels.asterisk.fastagi import FastAgiServer
from ivr.clock import FixedClock
from ivr.config import Settings
from ivr.engine.interpreter import Interpreter
from ivr.engine.services import Services
from ivr.flow.loader import load_flows
from ivr.speech.catalog import Catalog
from ivr.switch.ledger import LedgerSwitch
from tests.bank.conftest import demo, engine, postgres_url, settings  # noqa: F401  (fixtures)

ROOT = Path(__file__).resolve().parents[2]
NOON = dt.datetime(2026, 11, 28, 4, 0, tzinfo=dt.UTC)


def write_tone(path: Path, seconds: float, hz: float = 440.0, rate: int = 8000) -> None:
    """A real 8 kHz 16-bit mono WAV: a tone at -6 dBFS."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = int(seconds * rate)
    samples = (int(16383 * math.sin(2 * math.pi * hz * i / rate)) for i in range(frames))
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(b"".join(struct.pack("<h", s) for s in samples))


def render_catalog(catalog: Catalog, prompts: Path) -> None:
    """Audio for every file the catalog needs (prompts, template pieces, composers'
    words), as long as a voice would take to say it (about 0.25 s a Chinese character,
    0.06 s an English one; at least 0.2 s, at most 8 s)."""
    for language in catalog.languages:
        for audio_id, text, _ in catalog.audio_items(language):
            per_char = 0.25 if language.startswith("zh") else 0.06
            write_tone(prompts / "build" / language / f"{audio_id}.wav",
                       min(8.0, max(0.2, per_char * len(text))))


@pytest.fixture(scope="session")
def prompt_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The hotline's catalog with rendered audio, in a folder of its own."""
    folder = tmp_path_factory.mktemp("prompts")
    for source in (ROOT / "prompts").glob("*.yaml"):
        (folder / source.name).write_bytes(source.read_bytes())
    render_catalog(Catalog.load(folder), folder)
    return folder


@contextlib.asynccontextmanager
async def fastagi(engine: AsyncEngine, settings: Settings, prompts: Path, *,  # noqa: F811
                  max_calls: int = 1000, command_timeout: float = 10.0,
                  header_timeout: float = 5.0) -> AsyncIterator[FastAgiServer]:
    catalog = Catalog.load(prompts)
    flows = load_flows(ROOT / "flows" / "hotline.yaml", catalog)
    clock = FixedClock(NOON)
    ledger = LedgerSwitch(engine, settings, clock)
    interpreter = Interpreter(flows, catalog, Services(Bank(engine, settings, clock), ledger))
    server = FastAgiServer({"hotline": interpreter}, "hotline", PromptAudio(prompts),
                           max_calls=max_calls, command_timeout=command_timeout,
                           header_timeout=header_timeout)
    await server.start("127.0.0.1", 0)
    try:
        yield server
    finally:
        await server.drain(5)
        ledger.close()


@pytest.fixture
async def server(engine: AsyncEngine, settings: Settings, demo: dict[str, object],  # noqa: F811
                 prompt_folder: Path) -> AsyncIterator[FastAgiServer]:
    async with fastagi(engine, settings, prompt_folder) as running:
        yield running
