"""`ivr prompts`: build the catalog's audio, list it, play a prompt, hear a composer."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import click

from ivr.flow.diagnostics import Diagnostics
from ivr.speech.catalog import Catalog, find_catalog_folder

#: what `ivr prompts play` fills a template's values with when none is given
SAMPLES: dict[str, str] = {
    "amount": "12345.67", "number": "3", "digits": "1234", "date": dt.date.today().isoformat(),
    "time": "09:30", "percent": "3.25", "rate": "7.1234", "currency": "USD",
}
PLAYERS = (("aplay", "-q"), ("paplay",), ("play", "-q"), ("afplay",))

prompts_option = click.option(
    "--prompts", "folder", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="The prompt catalog folder (default: the nearest prompts/ at or above here).")


def _catalog(folder: Path | None) -> tuple[Catalog, Path]:
    found = folder if folder is not None else find_catalog_folder(Path.cwd())
    if found is None or not found.is_dir():
        raise click.UsageError("no prompt catalog here: run in a project with prompts/<language>.yaml "
                               "or pass --prompts FOLDER")
    diags = Diagnostics()
    catalog = Catalog.load(found, diags)
    errors = [d for d in diags.sorted() if d.severity == "error"]
    for d in errors:
        click.echo(str(d), err=True)
    if errors:
        raise click.ClickException(f"the prompt catalog {found} has errors; fix them first")
    return catalog, found


@click.group()
def prompts() -> None:
    """The prompt catalog and its audio (prompts/<language>.yaml, prompts/build/)."""


@prompts.command("build")
@prompts_option
@click.option("--jobs", "-j", type=click.IntRange(1, 64), default=None,
              help="Prompts rendered at once (default: one per CPU).")
@click.option("--force", is_flag=True, help="Render everything again, changed or not.")
def build_command(folder: Path | None, jobs: int | None, force: bool) -> None:
    """Render every prompt to 8 kHz 16-bit mono WAV under prompts/build/.

    Only what changed is rendered again. A recording at
    prompts/recorded/<language>/<id>.wav is used instead of speech."""
    from ivr.speech.build import BuildError, build

    catalog, root = _catalog(folder)
    bar: Any = None

    def progress(done: int, total: int, key: str) -> None:
        nonlocal bar
        if bar is None:
            bar = click.progressbar(length=total, label="rendering", file=sys.stderr,
                                    item_show_func=lambda k: k, show_pos=True)
            bar.__enter__()
        bar.update(1, key)

    try:
        report = build(catalog, root, jobs=jobs, force=force, progress=progress)
    except BuildError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
    for key, why in report.failed:
        click.echo(f"{root / 'build' / key}.wav: {why}", err=True)
    for key in report.unmatched_recordings:
        click.echo(f"warning: {root / 'recorded' / key}.wav matches no prompt in the catalog", err=True)
    parts = [f"{len(report.rendered)} rendered"]
    if report.converted:
        parts.append(f"{len(report.converted)} recorded converted")
    parts.append(f"{report.unchanged} unchanged")
    if report.removed:
        parts.append(f"{len(report.removed)} removed")
    if report.failed:
        parts.append(f"{len(report.failed)} failed")
    click.echo(f"prompts: {', '.join(parts)} in {report.seconds:.2f} s -> {root / 'build'}", err=True)
    if report.failed:
        sys.exit(1)


@prompts.command("list")
@prompts_option
@click.option("--lang", "language", default=None, help="Only this language.")
@click.option("--missing", is_flag=True, help="Only prompts whose audio is missing or out of date.")
def list_command(folder: Path | None, language: str | None, missing: bool) -> None:
    """Every prompt: language, id, audio (length and source, or why there is none), text."""
    from ivr.speech.build import MANIFEST, plan

    catalog, root = _catalog(folder)
    if language is not None and language not in catalog.languages:
        raise click.UsageError(f"no {language}.yaml in {root} (languages: {', '.join(catalog.languages)})")
    try:
        manifest = json.loads((root / "build" / MANIFEST).read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError):
        manifest = {}
    state: dict[str, str] = {}
    for job in plan(catalog, root):
        known = manifest.get(job.key)
        if not known or not Path(job.output).is_file():
            state[job.key] = "not built"
        elif known.get("digest") != job.digest:
            state[job.key] = "out of date"
        else:
            state[job.key] = f"{known.get('seconds', 0):.2f} s {known.get('source', '')}"
    shown = 0
    for lang in catalog.languages:
        if language is not None and lang != language:
            continue
        for entry in catalog.entries(lang):
            pieces = [audio_id for audio_id, _ in entry.audio_pieces()]
            states = [state.get(f"{lang}/{p}", "not built") for p in pieces]
            bad = [s for s in states if not s[0].isdigit()]
            if missing and not bad:
                continue
            # a template prompt is several files: its state is the first bad one's
            audio = states[0] if len(pieces) == 1 else bad[0] if bad else f"{len(pieces)} pieces"
            click.echo(f"{lang}\t{entry.id}\t{audio}\t{entry.text}")
            shown += 1
    click.echo(f"{shown} prompt(s)", err=True)


@prompts.command("play")
@click.argument("prompt_id")
@prompts_option
@click.option("--lang", "language", default=None, help="Language (default: the catalog's first).")
@click.option("--set", "values", multiple=True, metavar="NAME=VALUE",
              help="A value for a template placeholder (default: a sample per kind).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the WAV here instead of playing it.")
def play_command(prompt_id: str, folder: Path | None, language: str | None, values: tuple[str, ...],
                 out: Path | None) -> None:
    """Play a prompt as a caller hears it on Asterisk (or write it with --out)."""
    import numpy as np

    from ivr.speech import audio

    catalog, root = _catalog(folder)
    lang = language or (catalog.languages[0] if catalog.languages else "")
    entry = catalog.entry(prompt_id, lang)
    if entry is None:
        from ivr.flow.diagnostics import did_you_mean

        hint = did_you_mean(prompt_id, catalog.ids(lang))
        raise click.UsageError(f"no prompt '{prompt_id}' in {lang}{hint}")
    variables: dict[str, Any] = {}
    for field in entry.fields:
        _put(variables, field.name, SAMPLES.get(field.kind, f"<{field.name}>"))
    for item in values:
        name, sep, value = item.partition("=")
        if not sep:
            raise click.UsageError(f"--set {item!r}: write NAME=VALUE")
        _put(variables, name.strip(), value)
    spoken = catalog.render(prompt_id, lang, variables)
    click.echo(spoken.text)
    pieces = []
    for part in spoken.parts:
        path = root / "build" / lang / f"{part}.wav"
        if not path.is_file():
            raise click.ClickException(f"no audio for {lang}/{part}: run 'ivr prompts build'")
        samples, _ = audio.read_wav(path)
        pieces.append(samples)
    if not spoken.complete:
        click.echo("note: some of the text has no audio (a value said as it is) and is not heard "
                   "on Asterisk", err=True)
    if not pieces:
        raise click.ClickException(f"{prompt_id} has no audio to play")
    target = out or Path(tempfile.mkdtemp(prefix="ivr-play-")) / f"{prompt_id}.wav"
    audio.write_wav(target, np.concatenate(pieces))
    if out is not None:
        click.echo(f"wrote {out}", err=True)
        return
    for player in PLAYERS:
        if shutil.which(player[0]):
            done = subprocess.run([*player, str(target)], check=False, capture_output=True, text=True)
            if done.returncode != 0:
                why = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
                raise click.ClickException(f"{player[0]} could not play it ({why}); the prompt is "
                                           f"in {target}, or use --out FILE")
            return
    click.echo(f"no audio player found (aplay, paplay, play, afplay); the prompt is in {target}",
               err=True)


@prompts.command("say")
@click.argument("kind")
@click.argument("value")
@click.option("--lang", "language", default="zh-CN", show_default=True)
@click.option("--yao", is_flag=True, help="Read 1 as 幺 in digit strings.")
def say_command(kind: str, value: str, language: str, yao: bool) -> None:
    """How a composer reads VALUE as KIND (amount, number, digits, date, time, percent,
    rate, currency): the words, then the fragment files that say them."""
    from ivr.speech.say import ComposeError, Style, compose

    try:
        spoken = compose(kind, value, language, Style(one_as_yao=yao))
    except ComposeError as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(spoken.text)
    click.echo(" ".join(spoken.parts), err=True)


def _put(variables: dict[str, Any], dotted: str, value: Any) -> None:
    *path, last = dotted.split(".")
    here = variables
    for part in path:
        here = here.setdefault(part, {})
    here[last] = value
