from __future__ import annotations

import json
from pathlib import Path
from textwrap import dedent

import pytest

from ivr.channels.console import play_call
from ivr.engine import state as state_module
from ivr.engine.interpreter import CallEnded, Interpreter
from ivr.engine.state import CallState, StateError
from ivr.engine.turn import CallerHangup, Digits, Gather, Hangup, NoInput, Transfer
from ivr.flow.loader import load_flows
from tests.conftest import run_both_ways

CARD = "4111111111111111"


def make(tmp_path: Path, text: str, name: str = "main.yaml", **files: str) -> Interpreter:
    for file_name, body in files.items():
        (tmp_path / f"{file_name}.yaml").write_text(dedent(body), encoding="utf-8")
    path = tmp_path / name
    path.write_text(dedent(text), encoding="utf-8")
    return Interpreter(load_flows(path))


HEADER = """\
flow: demo
version: 1
language: zh-CN
languages: [zh-CN, en-US]
start: first
nodes:
"""


# --- the hotline, end to end --------------------------------------------------


def test_hotline_transfer_request_in_english(hotline: Interpreter) -> None:
    keys = ["2", "1", "1", f"{CARD}#", "2", "12000#", "3", "1", "2"]
    result = run_both_ways(hotline, keys)
    assert result.lines == [
        "IVR: 您好，欢迎致电银行客户服务热线。",
        "IVR: 普通话服务请按1，For English, press 2.",
        "CALLER: 2",
        "IVR: For accounts and transfers, press 1. To report a lost card, press 2. "
        "To choose the language again, press 9. To speak to an agent, press 0.",
        "CALLER: 1",
        "IVR: To identify yourself with your card number, press 1. "
        "With your resident ID number, press 2.",
        "CALLER: 1",
        "IVR: Please enter your card number, followed by the hash key.",
        "CALLER: ****************",
        "IVR: For your balance, press 1. To transfer to a registered payee, press 2. "
        "For the main menu, press star. To speak to an agent, press 0.",
        "CALLER: 2",
        "IVR: Please enter the amount, using star for the decimal point, followed by hash.",
        "CALLER: 12000",
        "IVR: Please note that this is a large transfer. Beware of fraud.",
        "IVR: Please enter the number of the registered payee.",
        "CALLER: 3",
        "IVR: You are transferring 12000.00 yuan to payee number 3. "
        "To confirm, press 1. To cancel, press 2.",
        "CALLER: 1",
        "IVR: Your transfer request has been accepted.",
        "IVR: For another service, press 1. To end the call, press 2.",
        "CALLER: 2",
        "IVR: Thank you for calling. Goodbye.",
        "END: hung up (completed)",
    ]
    assert result.ended_normally
    assert result.state is not None
    assert result.state.variables["transfers_requested"] == 1
    assert CARD not in result.state.to_json()


def test_hotline_resident_id_with_star_for_x(hotline: Interpreter) -> None:
    result = run_both_ways(hotline, ["1", "1", "2", "11010519491231002*#", "0"])
    assert result.lines[-2:] == [
        "IVR: 正在为您转接人工服务，请稍候。",
        "END: transferred to queue 'agents' (transfer) with identified_by=resident_id, card_tail=",
    ]
    assert result.state is not None
    assert result.state.variables["id_tail"] == "002X"
    assert "11010519491231002X" not in result.state.to_json()


def test_hotline_card_loss_passes_only_the_last_four_digits(hotline: Interpreter) -> None:
    result = run_both_ways(hotline, ["1", "2", f"{CARD}#"])
    assert result.lines[-1] == (
        "END: transferred to queue 'cards' (transfer) with reason=card_loss, card_tail=1111"
    )
    assert all(CARD not in line for line in result.lines)


def test_hotline_silent_caller_reaches_an_agent(hotline: Interpreter) -> None:
    # Language menu times out into Chinese, then the main menu asks three times.
    result = run_both_ways(hotline, ["", "", "", ""])
    assert result.lines.count("IVR: 对不起，没有收到您的按键。") == 2
    assert result.lines[-1].startswith("END: transferred to queue 'agents'")


def test_hotline_wrong_keys_are_apologised_for(hotline: Interpreter) -> None:
    result = run_both_ways(hotline, ["1", "7", "1", "2", f"{CARD}#"])
    assert result.lines[4:8] == [
        "CALLER: 7",
        "IVR: 对不起，您的输入有误。",
        "IVR: 账户查询和转账请按1，信用卡或借记卡挂失请按2，重听语言选择请按9，人工服务请按0。",
        "CALLER: 1",
    ]


def test_typed_ahead_keys_give_the_same_call_as_waiting(hotline: Interpreter) -> None:
    waited = run_both_ways(hotline, ["1", "2", f"{CARD}#"])
    typed_ahead = run_both_ways(hotline, [f"12{CARD}#"])
    assert typed_ahead.lines == waited.lines


def test_keys_running_out_is_a_caller_hangup(hotline: Interpreter) -> None:
    result = run_both_ways(hotline, ["1"])
    assert result.lines[-2:] == ["CALLER: (hangs up)", "END: hung up (caller_hangup)"]
    assert not result.ended_normally


# --- verbs, on small flows ------------------------------------------------------


def test_menu_gives_up_after_its_retries(tmp_path: Path) -> None:
    interp = make(tmp_path, HEADER + """\
  first:
    menu: {prompt: pick, options: {"1": done}, retries: 1, no_input_prompt: nothing,
           no_match_prompt: wrong}
    on: {agent: done, failed: gave_up}
  done:
    hangup: {reason: completed}
  gave_up:
    hangup: {reason: gave_up}
""")
    result = run_both_ways(interp, ["", "5"])
    assert result.lines == [
        "IVR: [pick]",
        "CALLER: (no input; timed out after 5 s)",
        "IVR: [nothing]",
        "IVR: [pick]",
        "CALLER: 5",
        "END: hung up (gave_up)",
    ]


def test_menu_agent_key(tmp_path: Path) -> None:
    interp = make(tmp_path, HEADER + """\
  first:
    menu: {prompt: pick, options: {"1": done}}
    on: {agent: agent, failed: done}
  done:
    hangup: {}
  agent:
    transfer: {queue: vip, data: {menu: "'first'"}}
""")
    result = run_both_ways(interp, ["0"])
    assert result.lines[-1] == "END: transferred to queue 'vip' (transfer) with menu=first"


def test_retry_counters_start_afresh_each_visit(tmp_path: Path) -> None:
    interp = make(tmp_path, HEADER + """\
  first:
    menu: {prompt: pick, options: {"1": again}, retries: 1}
    on: {agent: gave_up, failed: gave_up}
  again:
    say: once_more
    next: first
  gave_up:
    hangup: {reason: gave_up}
""")
    # One miss, a good key, back to the menu: one miss is allowed again.
    result = run_both_ways(interp, ["9", "1", "9", "1", "9", "9"])
    assert result.lines.count("IVR: [once_more]") == 2
    assert result.lines[-1] == "END: hung up (gave_up)"


def test_collect_validates_and_stores(tmp_path: Path) -> None:
    interp = make(tmp_path, HEADER + """\
  first:
    collect: {prompt: amount, into: amount, validate: amount, max_value: 500,
              invalid_prompt: bad}
    on: {next: done, failed: done}
  done:
    hangup: {}
""")
    result = run_both_ways(interp, ["600#", "12*5#"])
    assert result.lines[:4] == ["IVR: [amount]", "CALLER: 600", "IVR: [bad]", "IVR: [amount]"]
    assert result.state is not None and result.state.variables["amount"] == "12.50"


def test_collect_length_bounds_and_max_digits_stop(tmp_path: Path) -> None:
    interp = make(tmp_path, HEADER + """\
  first:
    collect: {prompt: code, into: code, min_digits: 4, max_digits: 4, terminator: ""}
    on: {next: done, failed: done}
  done:
    hangup: {}
""")
    state = interp.start("c1")
    turn = interp.advance(state)
    assert isinstance(turn.wait, Gather)
    assert (turn.wait.min_digits, turn.wait.max_digits, turn.wait.terminator) == (4, 4, "")
    turn = interp.advance(state, Digits("12", "timeout"))
    assert isinstance(turn.wait, Gather)  # too short: asked again
    turn = interp.advance(state, Digits("1234", "max"))
    assert turn.ended and state.variables["code"] == "1234"


def test_secret_keys_never_reach_the_state(tmp_path: Path) -> None:
    interp = make(tmp_path, HEADER + """\
  first:
    collect: {prompt: pin, into: pin, min_digits: 6, max_digits: 6, secret: true}
    on: {next: show, failed: done}
  show:
    set: {pin_seen: "pin"}
    next: done
  done:
    hangup: {}
""")
    state = interp.start("c1")
    first = interp.advance(state)
    assert isinstance(first.wait, Gather) and first.wait.secret
    interp.advance(state, Digits("654321", "max"))
    assert state.variables["pin_seen"] == "******"
    assert "654321" not in state.to_json()


def test_branch_and_set(tmp_path: Path) -> None:
    interp = make(tmp_path, HEADER + """\
  first:
    set: {segment: "'vip'", tries: 0}
    next: count
  count:
    set: {tries: "tries + 1"}
    next: route
  route:
    branch:
      - {if: "segment == 'private'", goto: private}
      - {if: "segment == 'vip' and tries >= 1", goto: vip}
    next: standard
  private:
    hangup: {reason: private}
  vip:
    hangup: {reason: vip}
  standard:
    hangup: {reason: standard}
""")
    result = run_both_ways(interp, [])
    assert result.lines == ["END: hung up (vip)"]
    assert result.state is not None and result.state.variables == {"segment": "vip", "tries": 1}


def test_set_language_switches_prompts(tmp_path: Path) -> None:
    interp = make(tmp_path, HEADER + """\
  first:
    set: {language: "'en-US'"}
    next: bye
  bye:
    hangup: {prompt: goodbye}
""")
    state = interp.start("c1")
    turn = interp.advance(state)
    assert [s.language for s in turn.media] == ["en-US"]
    assert state.language == "en-US"


def test_unknown_language_goes_to_the_fallback_queue(tmp_path: Path) -> None:
    interp = make(tmp_path, HEADER.replace("start: first", "start: first\nfallback_queue: help") + """\
  first:
    say: hello
    next: switch
  switch:
    set: {language: "'fr-FR'"}
    next: bye
  bye:
    hangup: {}
""")
    state = interp.start("c1")
    turn = interp.advance(state)
    assert [s.prompt for s in turn.media] == ["hello"]
    assert turn.wait == Transfer("help", {"fault": "demo/switch"}, "flow_error")
    assert state.status == "ended" and state.end_reason == "flow_error"


def test_expression_failure_at_run_time_reaches_an_agent(tmp_path: Path) -> None:
    interp = make(tmp_path, HEADER + """\
  first:
    set: {x: "'a' + 1"}
    next: bye
  bye:
    hangup: {}
""")
    state = interp.start("c1")
    turn = interp.advance(state)
    assert isinstance(turn.wait, Transfer) and turn.wait.reason == "flow_error"


SUB = """\
flow: sub
version: 1
language: zh-CN
languages: [zh-CN, en-US]
start: ask
nodes:
  ask:
    menu: {prompt: sub_pick, options: {"1": yes, "2": no}}
    on: {agent: no, failed: no}
  yes:
    set: {answered: "'yes'"}
    next: back_yes
  back_yes:
    return: {outcome: agreed}
  no:
    return: refused
"""


def test_call_and_return_with_outcomes(tmp_path: Path) -> None:
    interp = make(tmp_path, HEADER + """\
  first:
    call: {flow: sub}
    on: {agreed: ok, refused: not_ok}
  ok:
    hangup: {reason: agreed}
  not_ok:
    hangup: {reason: refused}
""", sub=SUB)
    agreed = run_both_ways(interp, ["1"])
    assert agreed.lines == ["IVR: [sub_pick]", "CALLER: 1", "END: hung up (agreed)"]
    assert agreed.state is not None and agreed.state.variables["answered"] == "yes"
    assert run_both_ways(interp, ["2"]).end_reason == "refused"


def test_state_while_in_a_sub_flow_has_the_return_address(tmp_path: Path) -> None:
    interp = make(tmp_path, HEADER + """\
  first:
    call: sub
    on: {agreed: ok, refused: ok}
  ok:
    hangup: {}
""", sub=SUB)
    state = interp.start("c1")
    interp.advance(state)
    saved = json.loads(state.to_json())
    assert (saved["flow"], saved["node"]) == ("sub", "ask")
    assert saved["stack"] == [{"flow": "demo", "node": "first"}]


# --- call life cycle and state --------------------------------------------------


def test_caller_hangup_ends_the_call_and_it_stays_ended(hotline: Interpreter) -> None:
    state = hotline.start("c1")
    hotline.advance(state)
    turn = hotline.advance(state, CallerHangup())
    assert turn.wait == Hangup("caller_hangup") and state.status == "ended"
    with pytest.raises(CallEnded):
        hotline.advance(state, NoInput())


def test_failed_advance_leaves_state_unchanged(hotline: Interpreter) -> None:
    state = hotline.start("c1")
    hotline.advance(state)
    before = state.to_json()
    state.node = "no_such_node"
    broken = state.to_json()
    with pytest.raises(StateError, match="no_such_node"):
        hotline.advance(state, Digits("1"))
    assert state.to_json() == broken != before


def test_a_waiting_call_needs_an_event(hotline: Interpreter) -> None:
    state = hotline.start("c1")
    hotline.advance(state)
    with pytest.raises(StateError, match="needs the caller's event"):
        hotline.advance(state)


def test_state_from_a_newer_engine_is_refused() -> None:
    data = {"version": 99, "call_id": "x", "flow": "f", "node": "n", "language": "zh-CN"}
    with pytest.raises(StateError, match="version 99, newer than this engine's 2"):
        CallState.from_json(json.dumps(data))


@pytest.mark.parametrize(
    ("text", "message"),
    [("{", "not JSON"), ("[]", "not a JSON object"), ('{"call_id": "x"}', "no version"),
     ('{"version": 2, "call_id": "x"}', "wrong shape"),
     ('{"version": 2, "call_id": "x", "flow": "f", "node": "n", "language": "l", "status": "odd"}',
      "unknown status"),
     ('{"version": 2, "call_id": "x", "flow": "f", "node": "n", "language": "l", "auth": "god"}',
      "unknown auth level")],
)
def test_broken_state_is_refused_clearly(text: str, message: str) -> None:
    with pytest.raises(StateError, match=message):
        CallState.from_json(text)


def test_version_1_state_is_migrated(hotline: Interpreter) -> None:
    state = hotline.start("c1")
    hotline.advance(state)
    old = state.to_dict()
    del old["customer_id"], old["auth"]
    old["version"] = 1
    restored = CallState.from_dict(old)
    assert restored == state
    assert (restored.customer_id, restored.auth, restored.version) == (None, "none", 2)


def test_migrations_chain(monkeypatch: pytest.MonkeyPatch, hotline: Interpreter) -> None:
    state = hotline.start("c1")
    hotline.advance(state)
    old = state.to_dict()
    del old["customer_id"], old["auth"]
    old["version"] = 1
    old["vars"] = old.pop("variables")  # as a version 1 state might have called it

    def v1_to_v2(data: dict[str, object]) -> dict[str, object]:
        data = dict(data)
        data["variables"] = data.pop("vars")
        return {**data, "customer_id": None, "auth": "none", "version": 2}

    def v2_to_v3(data: dict[str, object]) -> dict[str, object]:
        return {**data, "version": 3}

    monkeypatch.setattr(state_module, "STATE_VERSION", 3)
    monkeypatch.setitem(state_module.MIGRATIONS, 1, v1_to_v2)
    monkeypatch.setitem(state_module.MIGRATIONS, 2, v2_to_v3)
    restored = CallState.from_dict(old)
    assert restored.variables == state.variables and restored.version == 3


def test_too_old_state_without_a_migration_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(state_module, "STATE_VERSION", 4)
    monkeypatch.delitem(state_module.MIGRATIONS, 1)
    data = {"version": 1, "call_id": "x", "flow": "f", "node": "n", "language": "zh-CN"}
    with pytest.raises(StateError, match="version 1 is too old"):
        CallState.from_dict(data)


def test_console_result_without_catalog_shows_prompt_ids(tmp_path: Path) -> None:
    interp = make(tmp_path, HEADER + """\
  first:
    hangup: {prompt: [a, b]}
""")
    assert play_call(interp, iter([])).lines == ["IVR: [a]", "IVR: [b]", "END: hung up (completed)"]
