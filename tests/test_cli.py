from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.conftest import ROOT

IVR = [sys.executable, "-m", "ivr.cli"]
HOTLINE = str(ROOT / "flows" / "hotline.yaml")


def ivr(*args: str, env: dict[str, str] | None = None, input: str | None = None
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*IVR, *args], capture_output=True, text=True, cwd=ROOT, env=env,
                          input=input, timeout=60, check=False)


def test_scripted_call_completes() -> None:
    keys = "2,1,1,4111111111111111#,1,*,2,4111111111111111#"
    done = ivr("call", HOTLINE, "--lang", "en-US", "--keys", keys)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "IVR: Hello, and welcome to the bank's customer service line."
    assert "CALLER: ****************" in lines
    assert "IVR: Sorry, balances cannot be read out at the moment." in lines
    assert lines[-1] == "END: transferred to queue 'cards' (transfer) with reason=card_loss, card_tail=1111"
    assert "4111111111111111" not in done.stdout + done.stderr


def test_scripted_call_with_save_restore_prints_the_same() -> None:
    keys = "2,1,1,4111111111111111#,2,100*5#,3,1,2"
    plain = ivr("call", HOTLINE, "--keys", keys)
    resumed = ivr("call", HOTLINE, "--keys", keys, "--save-restore")
    assert plain.returncode == resumed.returncode == 0
    assert plain.stdout == resumed.stdout
    assert "You are transferring 100.50 yuan to payee number 3." in plain.stdout


def test_scripted_keys_that_run_out_exit_1() -> None:
    done = ivr("call", HOTLINE, "--keys", "1")
    assert done.returncode == 1
    assert "the scripted keys ran out before the call ended" in done.stderr


def test_keys_with_letters_are_refused() -> None:
    done = ivr("call", HOTLINE, "--keys", "1,a")
    assert done.returncode == 2
    assert "keys may hold 0-9, * and # only, not 'a'" in done.stderr


def test_interactive_call_reads_keys_from_the_terminal() -> None:
    done = ivr("call", HOTLINE, input="1\n0\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == (
        "END: transferred to queue 'agents' (transfer) with identified_by=none, card_tail="
    )


def test_a_flow_with_errors_does_not_run(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("flow: x\nversion: 1\nlanguage: zh-CN\nstart: a\nnodes:\n  a:\n    sya: hi\n")
    done = ivr("call", str(bad), "--keys", "")
    assert done.returncode == 1
    assert f"{bad}:7:5: error: unknown verb or key 'sya' (did you mean 'say'?)" in done.stderr
    assert done.stdout == ""


def test_graph_svg_is_valid_and_shows_every_node() -> None:
    done = ivr("graph", HOTLINE, "--format", "svg")
    assert done.returncode == 0, done.stderr
    root = ET.fromstring(done.stdout)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    titles = {t.text for t in root.iter("{http://www.w3.org/2000/svg}title")}
    assert {"welcome", "main_menu", "agent", "main_menu->agent"} <= titles


def test_graph_writes_a_file_and_marks_unreachable_nodes(tmp_path: Path) -> None:
    flow = tmp_path / "f.yaml"
    flow.write_text(
        "flow: f\nversion: 1\nlanguage: zh-CN\nstart: a\nnodes:\n"
        "  a:\n    hangup: {}\n  orphan:\n    say: x\n    next: a\n"
    )
    out = tmp_path / "f.dot"
    done = ivr("graph", str(flow), "--format", "dot", "-o", str(out))
    assert done.returncode == 0, done.stderr
    dot = out.read_text()
    assert '"orphan" [label="orphan\\n(say)\\nUNREACHABLE"' in dot
    assert '"orphan" -> "a" [label="next"];' in dot
    mermaid = ivr("graph", str(flow), "--format", "mermaid").stdout
    assert mermaid.startswith("flowchart TD\n")
    assert "style n1 fill:#fcc" in mermaid


def test_graph_without_graphviz_says_how_to_get_it(tmp_path: Path) -> None:
    env = dict(os.environ, PATH=str(tmp_path))
    done = subprocess.run([*IVR, "graph", HOTLINE], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=60, check=False)
    assert done.returncode == 1
    assert "apt-get install graphviz" in done.stderr


@pytest.mark.parametrize("fmt", ["dot", "mermaid"])
def test_graph_text_formats_label_outcomes(fmt: str) -> None:
    done = ivr("graph", HOTLINE, "--format", fmt)
    assert done.returncode == 0
    assert "identified" in done.stdout and "failed" in done.stdout
