from __future__ import annotations

import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.conftest import ROOT

IVR = [sys.executable, "-m", "ivr.cli"]
# The console mechanics run on the first hotline, which needs no bank.
HOTLINE = str(ROOT / "tests" / "fixtures" / "flows" / "hotline_v1.yaml")
BANK_HOTLINE = str(ROOT / "flows" / "hotline.yaml")


def ivr(*args: str, env: dict[str, str] | None = None, input: str | None = None
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*IVR, *args], capture_output=True, text=True, cwd=ROOT, env=env,
                          input=input, timeout=120, check=False)


@pytest.fixture(scope="module")
def bank_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """An environment whose DATABASE_URL is a fresh, migrated and seeded demo bank."""
    folder = tmp_path_factory.mktemp("bank")
    env = dict(os.environ, DATABASE_URL=f"sqlite:///{folder / 'ivr.db'}", IVR_PIN_HASH_COST="10")
    assert ivr("db", "upgrade", env=env).returncode == 0
    seeded = ivr("bank", "seed", env=env)
    assert seeded.returncode == 0, seeded.stderr
    return env


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


def test_seed_prints_identities_and_calls_use_them(bank_env: dict[str, str]) -> None:
    seeded = ivr("bank", "seed", "--if-empty", env=bank_env)
    assert seeded.returncode == 0 and "nothing seeded" in seeded.stderr
    again = ivr("bank", "seed", env=bank_env)
    assert again.returncode == 1
    assert "already has 12 customers; use --reset" in again.stderr
    listing = ivr("bank", "seed", "--reset", env=bank_env).stdout.splitlines()
    header = listing[1].split("\t")
    zhang = dict(zip(header, listing[2].split("\t"), strict=True))
    keys = f"1,1,1,{zhang['card']}#,{zhang['PIN']},1,0"
    done = ivr("call", BANK_HOTLINE, "--keys", keys, env=bank_env)
    assert done.returncode == 0, done.stderr
    assert "IVR: 您的可用余额合计一万八千五百一十八元五角。" in done.stdout
    assert zhang["card"] not in done.stdout and zhang["PIN"] not in done.stdout


def test_interactive_call_hides_the_pin(bank_env: dict[str, str]) -> None:
    listing = ivr("bank", "seed", "--reset", env=bank_env).stdout.splitlines()
    zhang = dict(zip(listing[1].split("\t"), listing[2].split("\t"), strict=True))
    typed = f"1\n1\n1\n{zhang['card']}#\n{zhang['PIN']}\n1\n0\n"
    done = ivr("call", BANK_HOTLINE, env=bank_env, input=typed)
    assert done.returncode == 0, done.stderr
    assert "IVR: 您的可用余额合计一万八千五百一十八元五角。" in done.stdout
    assert "keys (hidden)> " in done.stderr
    assert zhang["PIN"] not in done.stdout + done.stderr
    assert zhang["card"] not in done.stdout + done.stderr


def test_operator_commands_are_masked(bank_env: dict[str, str]) -> None:
    shown = ivr("bank", "show", "C0002", env=bank_env)
    assert shown.returncode == 0, shown.stderr
    assert "************0002" in shown.stdout and "6217000000000002" not in shown.stdout
    assert "**** ****" in shown.stdout
    listing = ivr("bank", "show", env=bank_env)
    assert "C0005" in listing.stdout and "locked" in listing.stdout
    unlocked = ivr("bank", "unlock", "C0005", "--operator", "ops-7", env=bank_env)
    assert unlocked.returncode == 0
    assert unlocked.stdout.strip() == "phone banking unlocked for C0005 (by ops-7, audited)"
    missing = ivr("bank", "unlock", "C0099", env=bank_env)
    assert missing.returncode == 1 and "no customer C0099" in missing.stderr
    assert ivr("bank", "show", "C0099", env=bank_env).returncode == 1


def test_a_call_without_a_bank_says_what_to_run(tmp_path: Path) -> None:
    env = dict(os.environ, DATABASE_URL=f"sqlite:///{tmp_path / 'empty.db'}")
    done = ivr("call", BANK_HOTLINE, "--keys", "1", env=env)
    assert done.returncode == 1
    assert "has no bank tables yet: run 'ivr db upgrade', then 'ivr bank seed'" in done.stderr
    assert ivr("db", "upgrade", env=env).returncode == 0
    empty = ivr("call", BANK_HOTLINE, "--keys", "1", env=env)
    assert "has no customers: run 'ivr bank seed'" in empty.stderr
    bad = ivr("db", "upgrade", env=dict(os.environ, DATABASE_URL="mysql://x@y/z"))
    assert bad.returncode == 1 and "use sqlite or postgresql" in bad.stderr


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


@pytest.mark.skipif(shutil.which("dot") is None,
                    reason="Graphviz's dot is not installed (apt-get install graphviz)")
def test_graph_svg_is_valid_and_shows_every_node() -> None:
    done = ivr("graph", BANK_HOTLINE, "--format", "svg")
    assert done.returncode == 0, done.stderr
    root = ET.fromstring(done.stdout)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    titles = {t.text for t in root.iter("{http://www.w3.org/2000/svg}title")}
    assert {"welcome", "main_menu", "check_pin", "send_transfer", "main_menu->agent"} <= titles


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
