from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import settings

from ivr.channels.console import ConsoleResult, play_call
from ivr.engine.interpreter import Interpreter
from ivr.flow.loader import load_flows
from ivr.speech.catalog import Catalog

# Property tests draw the same examples on every run, so CI is repeatable; set
# IVR_FUZZ_SCALE (see test_property.py) to explore more widely by hand.
settings.register_profile("repeatable", derandomize=True)
settings.load_profile("repeatable")

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


PURE_FLOWS = ROOT / "tests" / "fixtures" / "flows"


@pytest.fixture(scope="session")
def hotline() -> Interpreter:
    """The first hotline (no bank verbs), kept as a fixture for interpreter tests."""
    catalog = Catalog.load(PURE_FLOWS / "prompts")
    return Interpreter(load_flows(PURE_FLOWS / "hotline_v1.yaml", catalog), catalog)
