"""The catalog: template prompts, their audio ids, and what the checker says of it."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from ivr.cli import check_paths
from ivr.flow.diagnostics import Diagnostics
from ivr.speech.catalog import Catalog
from ivr.speech.say import compose


def project(tmp_path: Path, catalogs: dict[str, str], flows: dict[str, str]) -> Path:
    (tmp_path / "prompts").mkdir()
    for language, text in catalogs.items():
        (tmp_path / "prompts" / f"{language}.yaml").write_text(text, encoding="utf-8")
    (tmp_path / "flows").mkdir()
    for name, text in flows.items():
        (tmp_path / "flows" / name).write_text(text, encoding="utf-8")
    return tmp_path


def flow(flow_id: str, *prompts: str, extra: str = "") -> str:
    return (f"flow: {flow_id}\nversion: 1\nlanguage: zh-CN\nlanguages: [zh-CN]\nstart: hello\nnodes:\n"
            f"  hello:\n    say: [{', '.join(prompts)}]\n    next: bye\n  bye:\n    hangup:\n{extra}")


def messages(paths: tuple[Path, ...]) -> list[str]:
    return [f"{d.pos.line}:{d.pos.column}: {d.severity}: {d.message}" for d in check_paths(paths, None)]


def test_a_catalog_entry_no_flow_uses_is_a_warning(tmp_path: Path) -> None:
    root = project(tmp_path, {"zh-CN": "hello: 您好。\nspare: 备用。\n"},
                   {"main.yaml": flow("main", "hello")})
    expected = ["2:1: warning: prompt 'spare' is not used by any flow (zh-CN)"]
    assert messages((root / "flows",)) == expected
    # checking one file of the hotline still counts the prompts the other flows use
    (root / "flows" / "other.yaml").write_text(flow("other", "spare"), encoding="utf-8")
    assert messages((root / "flows" / "main.yaml",)) == []


def test_a_prompt_missing_in_a_sub_flow_is_an_error(tmp_path: Path) -> None:
    sub = ("flow: sub\nversion: 1\nlanguage: zh-CN\nlanguages: [zh-CN]\nstart: ask\nnodes:\n"
           "  ask:\n    say: [nowhere]\n    next: done\n  done:\n    return: finished\n")
    main = ("flow: main\nversion: 1\nlanguage: zh-CN\nlanguages: [zh-CN]\nstart: go\nnodes:\n"
            "  go:\n    call: sub.yaml\n    on: {finished: bye}\n  bye:\n    say: [nowhere_either]\n"
            "    next: end\n  end:\n    hangup:\n")
    root = project(tmp_path, {"zh-CN": "hello: 您好。\n"}, {"main.yaml": main, "sub.yaml": sub})
    found = messages((root / "flows" / "main.yaml",))
    # both flows' prompts are checked, not only those of the flow loaded last
    assert "8:11: error: prompt 'nowhere' is not in the catalog for zh-CN" in found
    assert "11:11: error: prompt 'nowhere_either' is not in the catalog for zh-CN" in found


@pytest.mark.parametrize(("entry", "message"), [
    ("x: 余额{b:amout}。", "'{b:amout}' asks for an unknown kind 'amout' (kinds: amount, number, digits, "
                         "date, time, percent, rate, currency) (did you mean 'amount'?)"),
    ("x:\n  text: 你好\n  voice: {rate: 900}", "voice: rate 900 is out of range 80-450"),
    ("x:\n  text: 你好\n  voice: {speed: 100}", "voice: unknown setting 'speed'"),
    ("x:\n  text: 你好\n  tone: calm", "prompt 'x': unknown setting 'tone' (settings: text, voice)"),
    ("_style: {one_as_yao: 1}", "_style: one_as_yao is true or false"),
    ("_x: 你好", "'_x' is not a valid prompt id"),
    ("x: ''", "prompt 'x' needs a text"),
])
def test_catalog_mistakes_are_errors_with_a_position(tmp_path: Path, entry: str, message: str) -> None:
    (tmp_path / "zh-CN.yaml").write_text(entry + "\n", encoding="utf-8")
    diags = Diagnostics()
    Catalog.load(tmp_path, diags)
    errors = [d for d in diags.sorted() if d.severity == "error"]
    assert len(errors) == 1 and message in errors[0].message, errors
    assert errors[0].pos.file.endswith("zh-CN.yaml") and errors[0].pos.line >= 1


def test_a_kind_needs_a_language_the_composers_speak(tmp_path: Path) -> None:
    (tmp_path / "fr-FR.yaml").write_text("x: Votre solde est {b:amount}.\n", encoding="utf-8")
    diags = Diagnostics()
    Catalog.load(tmp_path, diags)
    assert ["no composer reads amount values in fr-FR" in d.message for d in diags.items] == [True]


def test_a_template_gives_its_text_and_the_audio_that_says_it(tmp_path: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "zh-CN.yaml").write_text(
        "_style: {one_as_yao: true}\n"
        "balance: 您的余额是{account.balance:amount}，尾号{tail:digits}。\n"
        "hello: 您好{name}。\nplain: 再见。\n", encoding="utf-8")
    (tmp_path / "en-US.yaml").write_text("balance: Your balance is {account.balance:amount}.\n",
                                         encoding="utf-8")
    catalog = Catalog.load(tmp_path)
    spoken = catalog.render("balance", "zh-CN", {"account": {"balance": "10005.05"}, "tail": "0001"})
    assert spoken.text == "您的余额是一万零五元零五分，尾号零零零幺。"
    words = [f"_say/{w}" for w in compose("amount", "10005.05", "zh-CN").parts]
    assert spoken.parts == ("balance/1", *words, "balance/3", "_say/n0", "_say/n0", "_say/n0",
                            "_say/yao")
    assert spoken.complete
    english = catalog.render("balance", "en-US", {"account": {"balance": "0.30"}})
    assert english.text == "Your balance is thirty fen."
    assert catalog.render("plain", "zh-CN", {}).parts == ("plain",)
    # a value said as it is has no audio: the channel should speak the text
    named = catalog.render("hello", "zh-CN", {"name": "李娜"})
    assert named.text == "您好李娜。" and not named.complete
    with caplog.at_level(logging.WARNING, "ivr.speech"):
        broken = catalog.render("balance", "zh-CN", {"account": {"balance": "lots"}, "tail": "12"})
    assert broken.text == "您的余额是，尾号幺二。" and not broken.complete
    assert "'lots' is not a number" in caplog.text
    items = {audio_id: text for audio_id, text, _ in catalog.audio_items("zh-CN")}
    assert items["balance/1"] == "您的余额是" and items["balance/3"] == "，尾号"
    assert "balance/5" not in items  # "。" alone is nothing to say
    assert items["_say/wan"] == "万" and items["plain"] == "再见。"


def test_a_text_message_writes_values_in_figures(tmp_path: Path) -> None:
    (tmp_path / "zh-CN.yaml").write_text(
        "sms_done: 转账{amount:amount}已到账，余额{balance:amount}，{day:date}，尾号{tail:digits}。\n",
        encoding="utf-8")
    catalog = Catalog.load(tmp_path)
    values = {"amount": "100.5", "balance": "12245.17", "day": "2026-12-03", "tail": "0001"}
    assert catalog.written("sms_done", "zh-CN", values) == \
        "转账100.50元已到账，余额12,245.17元，2026年12月3日，尾号0001。"
