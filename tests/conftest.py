from __future__ import annotations

from pathlib import Path

import pytest

from ivr.channels.console import ConsoleResult, play_call
from ivr.engine.interpreter import Interpreter
from ivr.flow.loader import load_flows
from ivr.speech.catalog import Catalog

ROOT = Path(__file__).resolve().parent.parent


def run_both_ways(interpreter: Interpreter, keys: list[str], **kwargs: object) -> ConsoleResult:
    """Play a scripted call straight through and with a JSON save/restore at every
    wait; the two transcripts must be identical. Returns the straight run."""
    straight = play_call(interpreter, iter(keys), **kwargs)  # type: ignore[arg-type]
    resumed = play_call(interpreter, iter(keys), save_restore=True, **kwargs)  # type: ignore[arg-type]
    assert resumed.lines == straight.lines
    assert resumed.end_reason == straight.end_reason
    assert resumed.state is not None and straight.state is not None
    assert resumed.state.to_dict() == straight.state.to_dict()
    return straight


@pytest.fixture(scope="session")
def hotline() -> Interpreter:
    catalog = Catalog.load(ROOT / "prompts")
    return Interpreter(load_flows(ROOT / "flows" / "hotline.yaml", catalog), catalog)
