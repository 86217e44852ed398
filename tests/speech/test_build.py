"""`ivr prompts build` with the real espeak-ng: formats, increments, recordings, the CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from ivr.speech import tts
from ivr.speech.audio import RATE, read_wav, verify
from ivr.speech.build import MANIFEST, BuildError, build
from ivr.speech.catalog import Catalog

ROOT = Path(__file__).resolve().parents[2]

# espeak-ng comes from the system (.ci/run and `./dev test` install it where they may)
pytestmark = pytest.mark.skipif(
    tts.ctypes.util.find_library("espeak-ng") is None,
    reason="espeak-ng is not installed: apt-get install espeak-ng")
IVR = [sys.executable, "-c", "from ivr.cli import main; main()"]

ZH = ("_style: {one_as_yao: true}\n"
      "welcome: 您好，欢迎致电银行客户服务热线。\n"
      "choose: 普通话服务请按1，For English, press 2.\n"
      "balance: 您的余额是{balance:amount}。\n")
EN = ("welcome: Hello, and welcome to the bank.\n"
      "balance:\n  text: Your balance is {balance:amount}.\n  voice: {rate: 150}\n")


def catalog_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "prompts"
    folder.mkdir()
    (folder / "zh-CN.yaml").write_text(ZH, encoding="utf-8")
    (folder / "en-US.yaml").write_text(EN, encoding="utf-8")
    return folder


def wav_files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted((folder / "build").rglob("*.wav"))}


def test_a_build_renders_telephone_audio_then_only_what_changed(tmp_path: Path) -> None:
    folder = catalog_folder(tmp_path)
    first = build(Catalog.load(folder), folder)
    assert first.ok and first.unchanged == 0
    files = wav_files(folder)
    # whole prompts, template pieces and the composers' words, for both languages
    assert {"build/zh-CN/welcome.wav", "build/zh-CN/balance/1.wav", "build/zh-CN/_say/wan.wav",
            "build/zh-CN/_say/yao.wav", "build/en-US/balance/1.wav",
            "build/en-US/_say/thousand.wav"} <= set(files)
    assert len(first.rendered) == len(files)
    for name in files:
        with wave.open(str(folder / name), "rb") as w:
            assert (w.getframerate(), w.getsampwidth(), w.getnchannels(), w.getcomptype()) == \
                (RATE, 2, 1, "NONE"), name
        checked = verify(folder / name)
        assert checked.ok, (name, checked.problems)
        assert -1.2 < checked.peak_db <= -0.9, name  # 1 dB of headroom, nothing clipped
    # the bilingual prompt is longer than either half alone would be
    assert verify(folder / "build/zh-CN/choose.wav").seconds > 2.5

    second = build(Catalog.load(folder), folder)
    assert second.rendered == [] and second.unchanged == len(files)
    assert wav_files(folder) == files

    (folder / "zh-CN.yaml").write_text(ZH.replace("欢迎致电", "感谢致电"), encoding="utf-8")
    third = build(Catalog.load(folder), folder)
    assert third.rendered == ["zh-CN/welcome"] and third.unchanged == len(files) - 1
    changed = {k for k, v in wav_files(folder).items() if files.get(k) != v}
    assert changed == {"build/zh-CN/welcome.wav"}


def test_the_same_catalog_always_gives_the_same_audio(tmp_path: Path) -> None:
    folder = catalog_folder(tmp_path)
    build(Catalog.load(folder), folder, jobs=2)
    once = wav_files(folder)
    # rendered again, alone and in another order: espeak-ng's state must not leak in
    shutil.rmtree(folder / "build")
    (folder / "en-US.yaml").unlink()
    build(Catalog.load(folder), folder, jobs=1)
    again = wav_files(folder)
    assert again == {k: v for k, v in once.items() if "/zh-CN/" in k}


def test_a_recording_wins_and_a_removed_prompt_goes(tmp_path: Path) -> None:
    folder = catalog_folder(tmp_path)
    recorded = folder / "recorded" / "en-US" / "welcome.wav"
    recorded.parent.mkdir(parents=True)
    t = np.arange(44100) / 44100  # one second of a 300 Hz tone, stereo, 44.1 kHz, at full scale
    tone = (np.sin(2 * np.pi * 300 * t) * 32767).astype("<i2")
    with wave.open(str(recorded), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(44100)
        w.writeframes(np.repeat(tone, 2).tobytes())
    (folder / "recorded" / "en-US" / "stray.wav").write_bytes(recorded.read_bytes())
    report = build(Catalog.load(folder), folder)
    assert report.converted == ["en-US/welcome"] and "en-US/welcome" not in report.rendered
    assert report.unmatched_recordings == ["en-US/stray"]
    samples, rate = read_wav(folder / "build/en-US/welcome.wav")
    assert rate == RATE and abs(len(samples) - RATE) <= 2
    assert verify(folder / "build/en-US/welcome.wav").ok  # lowered under full scale, not clipped
    manifest = json.loads((folder / "build" / MANIFEST).read_text())["files"]
    assert manifest["en-US/welcome"]["source"] == "recorded"

    (folder / "en-US.yaml").write_text("balance: Your balance is {balance:amount}.\n", encoding="utf-8")
    gone = build(Catalog.load(folder), folder)
    assert "en-US/welcome" in gone.removed and not (folder / "build/en-US/welcome.wav").exists()


def test_a_file_deleted_by_hand_is_rendered_again(tmp_path: Path) -> None:
    folder = catalog_folder(tmp_path)
    build(Catalog.load(folder), folder)
    (folder / "build/zh-CN/_say/wan.wav").unlink()
    (folder / "build" / MANIFEST).write_text("{ not json")  # a damaged manifest: all again
    report = build(Catalog.load(folder), folder)
    assert report.ok and report.unchanged == 0 and (folder / "build/zh-CN/_say/wan.wav").exists()


def test_without_espeak_the_build_says_how_to_install_it(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    folder = catalog_folder(tmp_path)
    monkeypatch.setattr(tts.ctypes.util, "find_library", lambda name: None)
    with pytest.raises(BuildError, match="apt-get install espeak-ng"):
        build(Catalog.load(folder), folder)
    assert not (folder / "build" / "zh-CN").exists()


def test_an_unknown_voice_fails_that_prompt_only(tmp_path: Path) -> None:
    folder = catalog_folder(tmp_path)
    (folder / "en-US.yaml").write_text(EN + "odd:\n  text: Odd.\n  voice: {name: klingon}\n")
    report = build(Catalog.load(folder), folder)
    assert report.failed == [("en-US/odd", "'klingon' is not an espeak-ng voice here; "
                                           "'espeak-ng --voices' lists them")]
    assert len(report.rendered) > 10 and not (folder / "build/en-US/odd.wav").exists()


def test_the_hotline_catalog_builds_and_every_file_is_telephone_audio(tmp_path: Path) -> None:
    folder = tmp_path / "prompts"
    folder.mkdir()
    for source in (ROOT / "prompts").glob("*.yaml"):
        shutil.copy(source, folder)
    env = dict(os.environ)
    done = subprocess.run([*IVR, "prompts", "build", "--prompts", str(folder)], capture_output=True,
                          text=True, timeout=300, env=env, check=False)
    assert done.returncode == 0, done.stderr
    assert "0 unchanged" in done.stderr and "rendered" in done.stderr
    files = sorted((folder / "build").rglob("*.wav"))
    assert len(files) > 200
    assert all(verify(f).ok for f in files)
    warm = subprocess.run([*IVR, "prompts", "build", "--prompts", str(folder)], capture_output=True,
                          text=True, timeout=60, env=env, check=False)
    assert f"0 rendered, {len(files)} unchanged" in warm.stderr

    listed = subprocess.run([*IVR, "prompts", "list", "--prompts", str(folder), "--lang", "zh-CN"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert listed.returncode == 0
    assert any(line.startswith("zh-CN\twelcome\t") and " s tts\t" in line
               for line in listed.stdout.splitlines())
    missing = subprocess.run([*IVR, "prompts", "list", "--prompts", str(folder), "--missing"],
                             capture_output=True, text=True, timeout=60, check=False)
    assert missing.stdout == ""

    out = tmp_path / "balance.wav"
    played = subprocess.run([*IVR, "prompts", "play", "balance_is", "--prompts", str(folder),
                             "--lang", "zh-CN", "--set", "balance.total_available=10005.05",
                             "--out", str(out)], capture_output=True, text=True, timeout=60, check=False)
    assert played.returncode == 0, played.stderr
    assert played.stdout.strip() == "您的可用余额合计一万零五元零五分。"
    assert verify(out).ok and verify(out).seconds > 2
    unknown = subprocess.run([*IVR, "prompts", "play", "balance_si", "--prompts", str(folder),
                              "--lang", "zh-CN"], capture_output=True, text=True, timeout=60, check=False)
    assert unknown.returncode == 2 and "did you mean 'balance_is'" in unknown.stderr


def test_say_shows_a_composer_reading(tmp_path: Path) -> None:
    done = subprocess.run([*IVR, "prompts", "say", "amount", "10005.05"], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.stdout == "一万零五元零五分\n" and done.stderr.split() == \
        ["n1", "wan", "n0", "n5", "yuan", "n0", "n5", "fen"]
    wrong = subprocess.run([*IVR, "prompts", "say", "amount", "12.345", "--lang", "en-US"],
                           capture_output=True, text=True, timeout=60, check=False)
    assert wrong.returncode == 2 and "more than two decimals" in wrong.stderr
