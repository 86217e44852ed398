"""The compiled hot path: built with mypyc, used only while it matches its sources."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from dataclasses import fields
from pathlib import Path

import pytest

import ivr.channels.asterisk.fastagi
import ivr.engine.interpreter
from ivr import native
from ivr.engine.state import CallState, Frame

needs_compiler = pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")

FAST = '''
from hotdemo.money import Fen


def total(amounts: list[Fen]) -> int:
    """Sums in whole fen."""
    result = 0
    for amount in amounts:
        result += amount
    return result
'''
MONEY = "Fen = int\n"


def make_package(root: Path) -> None:
    (root / "hotdemo").mkdir()
    (root / "hotdemo" / "__init__.py").write_text("")
    (root / "hotdemo" / "fast.py").write_text(FAST)
    (root / "hotdemo" / "money.py").write_text(MONEY)


def probe(root: Path, folder: Path) -> dict[str, object]:
    """Import the package in a new interpreter, the way `ivr/__init__.py` installs the
    finder, and say what was loaded."""
    code = textwrap.dedent(f"""
        import json, sys
        from pathlib import Path
        sys.path.insert(0, {str(root)!r})
        from ivr import native
        found = native.install(Path({str(folder)!r}), ["hotdemo.fast"], Path({str(root)!r}),
                               "hotdemo.hp__mypyc")
        import hotdemo.fast
        print(json.dumps({{"usable": found.usable, "reason": found.reason,
                          "compiled": native.compiled(hotdemo.fast),
                          "total": hotdemo.fast.total([1, 2, 3])}}))
    """)
    env = {k: v for k, v in os.environ.items() if k != "IVR_NATIVE"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    result: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return result


@needs_compiler
def test_a_build_is_used_until_a_source_changes(tmp_path: Path) -> None:
    make_package(tmp_path)
    folder = tmp_path / "native"
    unbuilt = f"not built (run 'ivr native build' to compile it into {folder})"
    assert probe(tmp_path, folder) == {"usable": False, "compiled": False, "total": 6, "reason": unbuilt}

    native.build(folder, ["hotdemo.fast"], tmp_path, group="hotdemo.hp")
    assert probe(tmp_path, folder) == {"usable": True, "compiled": True, "total": 6,
                                       "reason": f"compiled ({folder})"}

    # An edit, even one that changes nothing the compiler sees, falls back to the source.
    source = tmp_path / "hotdemo" / "fast.py"
    source.write_text(FAST + "# edited\n")
    edited = probe(tmp_path, folder)
    assert edited["compiled"] is False and edited["total"] == 6
    assert edited["reason"] == "hotdemo.fast changed since the build; run 'ivr native build'"
    source.write_text(FAST)
    assert probe(tmp_path, folder)["compiled"] is True

    # So does an edit to a module it imports: the compiled code relies on its types.
    money = tmp_path / "hotdemo" / "money.py"
    money.write_text(MONEY + "# edited\n")
    stale = probe(tmp_path, folder)
    assert stale["reason"] == "hotdemo.money changed since the build; run 'ivr native build'"
    money.write_text(MONEY)
    assert probe(tmp_path, folder)["compiled"] is True

    # A build for another Python is not loaded.
    manifest = folder / native.MANIFEST
    data = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**data, "python": "3.99.0 (other)"}))
    other = probe(tmp_path, folder)
    assert other["compiled"] is False
    assert str(other["reason"]).startswith("built for Python 3.99.0, not ")
    manifest.write_text(json.dumps(data))

    # A damaged manifest leaves the package importable, as plain Python.
    manifest.write_text(json.dumps(["not", "a", "manifest"]))
    damaged = probe(tmp_path, folder)
    assert damaged["compiled"] is False and damaged["total"] == 6
    assert str(damaged["reason"]).startswith("the build could not be checked (AttributeError(")
    manifest.write_text(json.dumps(data))

    # Nor one with a file gone.
    library = next(folder.joinpath("hotdemo").glob("hp__mypyc*"))
    library.unlink()
    gone = probe(tmp_path, folder)
    assert gone["compiled"] is False and "hotdemo.hp__mypyc missing" in str(gone["reason"])


@needs_compiler
def test_a_source_mypyc_cannot_compile_is_named_and_the_old_build_is_kept(tmp_path: Path) -> None:
    make_package(tmp_path)
    folder = tmp_path / "native"
    (tmp_path / "hotdemo" / "fast.py").write_text(FAST + "\nwrong: int = 'text'\n")
    with pytest.raises(native.NativeBuildError, match=r"fast\.py:\d+: error: Incompatible types"):
        native.build(folder, ["hotdemo.fast"], tmp_path, group="hotdemo.hp")
    assert not folder.exists()


def test_this_checkout_runs_compiled_exactly_when_its_build_matches() -> None:
    """What `ivr/__init__.py` decided holds for the modules the calls run."""
    expected = native.status.usable
    assert native.compiled(ivr.engine.interpreter) is expected
    assert native.compiled(ivr.channels.asterisk.fastagi) is expected
    if os.environ.get("IVR_NATIVE") == "0":
        assert native.status.reason == "off (IVR_NATIVE=0)"
        return
    assert native.check(native.default_folder()).usable is expected
    if os.environ.get("IVR_REQUIRE_NATIVE") == "1":  # CI builds it: a build that broke fails here
        assert expected, native.status.reason


def test_a_state_copy_and_take_carry_every_field() -> None:
    """The interpreter works on a copy and takes it over after the turn; both name the
    fields one by one (the compiled class has no __dict__ to copy)."""
    state = CallState(call_id="c1", flow="main", node="menu", language="zh-CN", caller="+8613800000001",
                      status="waiting", variables={"amount": {"fen": 100}}, counters={"menu": 2},
                      stack=[Frame("main", "pay")], steps=7, turns=3, end_reason="x", customer_id=42,
                      auth="pin", version=2)
    twin = state.copy()
    assert twin == state
    assert twin.variables is not state.variables and twin.stack[0] is not state.stack[0]
    blank = CallState(call_id="c0", flow="f", node="n", language="en-US")
    assert blank != state
    blank.take(state)
    for item in fields(CallState):
        assert getattr(blank, item.name) == getattr(state, item.name), item.name
