"""Data-driven tests of the flow checker, over the fixture flows in fixtures/checker/.

- `good/*.yaml` are valid flows (their sub-flows are in `good/sub/`): they check
  with no diagnostics and load.
- `bad/*.yaml` break one checker rule each. Their first lines say exactly what
  the checker must report, one line per diagnostic:

      # expect: 12:7: error: 'main_manu' is not a node of flow 'demo' (did you mean 'main_menu'?)
      # expect: sub/same_id.yaml:2:1: error: ...   (a problem in another file, relative to the fixture)

  `{dir}` in a message stands for the fixture's folder and `{prompts}` for the
  prompt catalog folder, both as the checker prints them. A line
  `# xfail: REASON` marks a fixture whose expectation is what the checker should
  say but does not yet (a known checker problem); the test is a strict xfail.

The prompt catalog the checker uses is `fixtures/checker/prompts/` (the nearest
`prompts/` folder above each flow).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from ivr.cli import check_paths
from ivr.engine.validators import VALIDATORS
from ivr.engine.verbs import REGISTRY
from ivr.flow.diagnostics import FlowError
from ivr.flow.loader import load_flows
from ivr.flow.model import FlowSet
from ivr.speech.catalog import Catalog, find_catalog_folder

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "checker"
GOOD = sorted((FIXTURES / "good").glob("*.yaml"))
BAD = sorted((FIXTURES / "bad").glob("*.yaml"))

_EXPECT = "# expect: "
_XFAIL = "# xfail: "
_IN_FIXTURE = re.compile(r"^\d+:\d+: (error|warning): .")
_IN_OTHER_FILE = re.compile(r"^[\w./-]+\.ya?ml:\d+:\d+: (error|warning): .")


@dataclass(frozen=True)
class Header:
    """What a fixture's leading comment lines say about it."""

    expect: tuple[str, ...]
    xfail: str | None


def read_header(path: Path) -> Header:
    expect: list[str] = []
    xfail: str | None = None
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        if line.startswith(_EXPECT):
            expect.append(line.removeprefix(_EXPECT))
        elif line.startswith(_XFAIL):
            xfail = line.removeprefix(_XFAIL)
    return Header(tuple(expect), xfail)


def expected_diagnostics(path: Path) -> list[str]:
    """The fixture's `# expect:` lines as the checker prints them for `path`."""
    prompts = find_catalog_folder(path)
    out: list[str] = []
    for line in read_header(path).expect:
        if _IN_FIXTURE.match(line):
            where = f"{path}:{line}"
        elif _IN_OTHER_FILE.match(line):
            relative, rest = line.split(":", 1)
            where = f"{path.parent / relative}:{rest}"
        else:
            raise ValueError(f"{path}: malformed '# expect:' line: {line!r}")
        out.append(where.replace("{dir}", str(path.parent)).replace("{prompts}", str(prompts)))
    return sorted(out)


def checker_output(path: Path) -> list[str]:
    return [str(d) for d in check_paths((path,), None)]


def catalog_for(path: Path) -> Catalog:
    folder = find_catalog_folder(path)
    assert folder is not None, f"no prompts/ folder above {path}"
    return Catalog.load(folder)


def fixture_params(paths: list[Path], *, with_xfail: bool) -> list[object]:
    params: list[object] = []
    for path in paths:
        reason = read_header(path).xfail
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if with_xfail and reason else []
        params.append(pytest.param(path, marks=marks, id=f"{path.parent.name}/{path.stem}"))
    return params


def test_fixture_folders_are_not_empty() -> None:
    assert len(GOOD) >= 4
    assert len(BAD) >= 40


# --- bad flows --------------------------------------------------------------


@pytest.mark.parametrize("path", fixture_params(BAD, with_xfail=True))
def test_bad_flow_gets_exactly_the_expected_diagnostics(path: Path) -> None:
    assert checker_output(path) == expected_diagnostics(path)


@pytest.mark.parametrize("path", fixture_params(BAD, with_xfail=False))
def test_bad_flow_never_loads(path: Path) -> None:
    """load_flows refuses each bad fixture, with the problems `ivr check` reports."""
    assert read_header(path).expect, f"{path.name} has no '# expect:' line"
    with pytest.raises(FlowError) as caught:
        load_flows(path, catalog_for(path))
    raised = {str(d) for d in caught.value.diagnostics}
    assert raised
    assert raised == set(checker_output(path))


# --- good flows -------------------------------------------------------------


@pytest.mark.parametrize("path", fixture_params(GOOD, with_xfail=False))
def test_good_flow_checks_clean(path: Path) -> None:
    assert read_header(path).expect == ()
    assert checker_output(path) == []
    flows = load_flows(path, catalog_for(path))
    assert flows.entry.path == str(path)


def _verbs_and_validators(flows: FlowSet) -> tuple[set[str], set[str]]:
    verbs: set[str] = set()
    validators: set[str] = set()
    for flow in flows.flows.values():
        for node in flow.nodes.values():
            verbs.add(node.verb)
            if node.verb == "collect":
                validators.add(node.params.validate)
    return verbs, validators


def test_all_verbs_fixture_uses_every_verb_and_validator() -> None:
    path = FIXTURES / "good" / "all_verbs.yaml"
    flows = load_flows(path, catalog_for(path))
    verbs, validators = _verbs_and_validators(flows)
    assert verbs == set(REGISTRY)
    assert validators == set(VALIDATORS)
    assert len(flows.flows) == 2  # all_verbs and its sub-flow good/sub/identify.yaml


# --- the `ivr check` command --------------------------------------------------


def _ivr() -> list[str]:
    script = Path(sys.executable).with_name("ivr")
    if script.exists():
        return [str(script)]
    found = shutil.which("ivr")
    return [found] if found else [sys.executable, "-m", "ivr.cli"]


def run_ivr_check(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1"}
    return subprocess.run(
        [*_ivr(), "check", *args], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=120, check=False,
    )


def test_cli_check_reports_a_bad_flow_and_exits_1() -> None:
    result = run_ivr_check("tests/fixtures/checker/bad/unknown_parameter.yaml")
    assert result.returncode == 1, result.stderr
    assert result.stdout == (
        "tests/fixtures/checker/bad/unknown_parameter.yaml:12:7: error: "
        "collect has no parameter 'max_digit' (did you mean 'max_digits'?)\n"
    )
    assert "checked 1 flow file(s): 1 error(s), 0 warning(s)" in result.stderr


def test_cli_check_good_folder_exits_0() -> None:
    result = run_ivr_check("tests/fixtures/checker/good")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""
    files = len(list((FIXTURES / "good").rglob("*.yaml")))
    assert f"checked {files} flow file(s): 0 error(s), 0 warning(s)" in result.stderr


def test_cli_check_shipped_flows_exits_0() -> None:
    result = run_ivr_check("flows/")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


def test_return_in_a_flow_nobody_calls_is_a_warning(tmp_path: Path) -> None:
    flow = tmp_path / "lonely.yaml"
    flow.write_text(
        "flow: lonely\nversion: 1\nlanguage: en-US\nstart: done\nnodes:\n"
        "  done:\n    return: finished\n"
    )
    assert [str(d) for d in check_paths((flow,), None)] == [
        f"{flow}:6:3: warning: no checked flow calls 'lonely', so its 'return' has nothing "
        "to return to; run on its own, the call goes to an agent here"
    ]
    caller = tmp_path / "main.yaml"
    caller.write_text(
        "flow: main\nversion: 1\nlanguage: en-US\nstart: go\nnodes:\n"
        "  go:\n    call: lonely\n    on: {finished: bye}\n  bye:\n    hangup:\n"
    )
    assert check_paths((tmp_path,), None) == []
    done = subprocess.run([*_ivr(), "check", str(flow)], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0 and "warning:" in done.stdout


def test_folders_are_checked_without_their_prompt_catalogs() -> None:
    folder = ROOT / "tests" / "fixtures" / "flows"
    assert (folder / "prompts" / "zh-CN.yaml").exists()
    assert check_paths((folder,), None) == []


def test_a_sub_flow_calling_itself_before_any_wait_is_refused(tmp_path: Path) -> None:
    (tmp_path / "main.yaml").write_text(
        "flow: main\nversion: 1\nlanguage: zh-CN\nstart: go\nnodes:\n"
        "  go:\n    call: sub\n    on: {identified: done}\n  done:\n    hangup: {}\n")
    (tmp_path / "sub.yaml").write_text(
        "flow: sub\nversion: 1\nlanguage: zh-CN\nstart: again\nnodes:\n"
        "  again:\n    call: sub\n    on: {identified: back}\n  back:\n    return: identified\n")
    assert [str(d) for d in check_paths((tmp_path / "main.yaml",), None)] == [
        f"{tmp_path / 'sub.yaml'}:6:3: error: call of sub-flow 'sub' can nest forever without "
        "waiting for the caller (flows sub)"]
