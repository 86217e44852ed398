"""Prompt builds: `ivr prompts build` timed as a flow author runs it (a process each).

(a) A generated catalog of 300 prompts (150 Mandarin, 150 English, sentences like a
    hotline's, a fifth of them templates with amounts, digits and dates, so the
    composers' words are rendered too): a cold build, a warm build (nothing
    changed), and a build after one prompt changed.
(b) The hotline's own catalog (prompts/*.yaml): cold and warm.

Each build is a separate `ivr prompts build` process, timed from start to exit;
the figure is the best of `--repeat` runs (cold builds start from an empty build
folder each time).

    python bench/bench_prompts.py [--quick] [--repeat 3] [--jobs N]

Targets: a warm build under 1 s; a cold build of 300 prompts under 30 s.
"""

from __future__ import annotations

import argparse
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IVR = [sys.executable, "-c", "from ivr.cli import main; main()"]

ZH_WORDS = (
    "账户", "余额", "转账", "挂失", "信用卡", "还款", "理财", "外汇", "贷款", "密码",
    "验证", "服务", "客户", "网点", "查询", "办理", "业务", "确认", "取消", "返回",
    "人工", "菜单", "按键", "输入", "号码", "身份证", "银行卡", "储蓄", "定期", "活期"
)
EN_WORDS = (
    "account", "balance", "transfer", "card", "loss", "credit", "repayment", "fund", "exchange",
    "loan", "PIN", "check", "service", "customer", "branch", "enquiry", "request", "business",
    "confirm", "cancel", "return", "agent", "menu", "key", "enter", "number", "identity", "savings",
    "deposit", "current", "statement"
)
ZH_FIELDS = ("{amount:amount}", "{tail:digits}", "{due:date}", "{count:number}")
EN_FIELDS = ("{amount:amount}", "{tail:digits}", "{due:date}", "{count:number}")


def catalog(folder: Path, per_language: int, seed: int = 7) -> None:
    """`per_language` prompts in zh-CN and in en-US, each a different sentence."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    zh, en = [], []
    for i in range(per_language):
        words = rng.sample(ZH_WORDS, 4)
        text = f"{words[0]}{words[1]}请按{i % 10}，{words[2]}{words[3]}请按井号键。"
        if i % 5 == 0:
            text = f"您的{words[0]}是{rng.choice(ZH_FIELDS)}，{words[1]}{words[2]}。"
        zh.append(f"p{i:03d}: {text}")
        picked = rng.sample(EN_WORDS, 4)
        line = (f"For {picked[0]} {picked[1]}, press {i % 10}. "
                f"For {picked[2]} {picked[3]}, press the hash key.")
        if i % 5 == 0:
            line = f"Your {picked[0]} is {rng.choice(EN_FIELDS)}, {picked[1]} {picked[2]}."
        en.append(f"p{i:03d}: \"{line}\"")
    (folder / "zh-CN.yaml").write_text("\n".join(zh) + "\n", encoding="utf-8")
    (folder / "en-US.yaml").write_text("\n".join(en) + "\n", encoding="utf-8")


def timed_build(folder: Path, jobs: int | None) -> tuple[float, str]:
    command = [*IVR, "prompts", "build", "--prompts", str(folder)]
    if jobs:
        command += ["--jobs", str(jobs)]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=600)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"build failed:\n{done.stderr}")
    return seconds, done.stderr.strip().splitlines()[-1]


def best(runs: list[tuple[float, str]]) -> tuple[float, str]:
    return min(runs, key=lambda r: r[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one run of each, 60 prompts")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=None, help="renderers (default: one per CPU)")
    args = parser.parse_args()
    repeat = 1 if args.quick else args.repeat
    per_language = 30 if args.quick else 150
    rows: list[tuple[str, float, str]] = []
    with tempfile.TemporaryDirectory(prefix="bench-prompts-") as tmp:
        folder = Path(tmp) / "generated" / "prompts"
        catalog(folder, per_language)
        cold = []
        for _ in range(repeat):
            shutil.rmtree(folder / "build", ignore_errors=True)
            cold.append(timed_build(folder, args.jobs))
        rows.append((f"cold, {2 * per_language} prompts", *best(cold)))
        rows.append((f"warm, {2 * per_language} prompts",
                     *best([timed_build(folder, args.jobs) for _ in range(repeat)])))
        changed = []
        for n in range(repeat):
            text = (folder / "zh-CN.yaml").read_text(encoding="utf-8")
            first, rest = text.split("\n", 1)
            (folder / "zh-CN.yaml").write_text(first.rstrip("。") + f"{n}。\n" + rest, encoding="utf-8")
            changed.append(timed_build(folder, args.jobs))
        rows.append(("one prompt changed", *best(changed)))

        hotline = Path(tmp) / "hotline" / "prompts"
        hotline.mkdir(parents=True)
        for source in (ROOT / "prompts").glob("*.yaml"):
            shutil.copy(source, hotline)
        cold = []
        for _ in range(repeat):
            shutil.rmtree(hotline / "build", ignore_errors=True)
            cold.append(timed_build(hotline, args.jobs))
        rows.append(("cold, the hotline's catalog", *best(cold)))
        rows.append(("warm, the hotline's catalog",
                     *best([timed_build(hotline, args.jobs) for _ in range(repeat)])))

    print(f"\nivr prompts build, best of {repeat} (a process each, wall time)")
    print(f"{'build':32} {'seconds':>8}  what it said")
    for name, seconds, said in rows:
        print(f"{name:32} {seconds:8.2f}  {said.split(' -> ')[0]}")


if __name__ == "__main__":
    main()
