"""`ivr prompts build`: the catalog rendered to audio Asterisk and Twilio can play.

Everything the catalog says is turned into `prompts/build/<language>/<audio id>.wav`,
8 kHz 16-bit mono: whole prompts, the literal pieces of template prompts, and the
composers' fragment words (`_say/...`). A recording placed at
`prompts/recorded/<language>/<audio id>.wav` (any rate, converted) wins over speech.

The build is incremental: `prompts/build/manifest.json` keeps a hash of everything
that makes each file (text, voice, recording, renderer version), so an unchanged
prompt is not rendered again, a changed one is, and files for prompts that are gone
are removed. Rendering runs in parallel worker processes; every file written is
checked (format, length, not silent), and the manifest is saved as files finish, so
an interrupted build keeps what it did.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import json
import multiprocessing
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ivr.speech.catalog import FRAGMENTS, Catalog

#: bump when rendering changes in a way that should re-render everything
RENDERER_VERSION = 1
MANIFEST = "manifest.json"


class BuildError(RuntimeError):
    """The build cannot start (the message says what to do)."""


@dataclass(frozen=True)
class Job:
    language: str
    audio_id: str
    text: str
    voice: Mapping[str, Any]
    recorded: str  # path of a recording that wins over speech, or ""
    output: str
    digest: str

    @property
    def key(self) -> str:
        return f"{self.language}/{self.audio_id}"

    @property
    def fragment(self) -> bool:
        return self.audio_id.startswith(f"{FRAGMENTS}/")


@dataclass(frozen=True)
class Made:
    key: str
    digest: str
    source: str  # "tts" or "recorded"
    seconds: float
    size: int
    problems: tuple[str, ...] = ()


@dataclass
class Report:
    rendered: list[str] = field(default_factory=list)
    converted: list[str] = field(default_factory=list)
    unchanged: int = 0
    removed: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    unmatched_recordings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed


Progress = Callable[[int, int, str], None]


def plan(catalog: Catalog, prompts: Path) -> list[Job]:
    """Every file the catalog needs, with the hash of what makes it."""
    from ivr.speech.tts import voice_for

    build = prompts / "build"
    jobs: list[Job] = []
    for language in catalog.languages:
        for audio_id, text, settings in catalog.audio_items(language):
            recorded = prompts / "recorded" / language / f"{audio_id}.wav"
            voice = voice_for(language, settings)
            made_of: dict[str, Any] = {"renderer": RENDERER_VERSION, "language": language}
            if recorded.is_file():
                made_of["recording"] = _file_digest(recorded)
            else:
                made_of.update(text=text, voice=voice, trim=audio_id.startswith(f"{FRAGMENTS}/"))
            digest = hashlib.sha256(json.dumps(made_of, sort_keys=True, ensure_ascii=False)
                                    .encode()).hexdigest()[:24]
            jobs.append(Job(language, audio_id, text, voice,
                            str(recorded) if recorded.is_file() else "",
                            str(build / language / f"{audio_id}.wav"), digest))
    return jobs


def build(catalog: Catalog, prompts: Path, *, jobs: int | None = None, force: bool = False,
          progress: Progress | None = None) -> Report:
    """Render what changed; remove what is gone. See the module's docstring."""
    started = time.perf_counter()
    report = Report()
    folder = prompts / "build"
    manifest = _load_manifest(folder)
    work = plan(catalog, prompts)
    wanted = {job.key for job in work}
    todo: list[Job] = []
    for job in work:
        known = manifest.get(job.key)
        if not force and known and known.get("digest") == job.digest and _same_size(job.output, known):
            report.unchanged += 1
        else:
            todo.append(job)
    for key in sorted(set(manifest) - wanted):
        Path(folder, f"{key}.wav").unlink(missing_ok=True)
        _prune(Path(folder, key).parent, folder)
        del manifest[key]
        report.removed.append(key)
    report.unmatched_recordings = _unmatched_recordings(prompts, wanted)
    if todo:
        if any(not job.recorded for job in todo):
            from ivr.speech.tts import TtsError, check_espeak

            try:
                check_espeak()
            except TtsError as exc:
                raise BuildError(str(exc)) from None
        _render_all(todo, manifest, folder, report, jobs, progress)
    if todo or report.removed or not (folder / MANIFEST).exists():
        _save_manifest(folder, manifest)
    report.seconds = time.perf_counter() - started
    return report


def _render_all(todo: list[Job], manifest: dict[str, dict[str, Any]], folder: Path,
                report: Report, jobs: int | None, progress: Progress | None) -> None:
    workers = max(1, min(jobs or os.cpu_count() or 1, len(todo)))
    done = 0
    last_save = time.monotonic()

    def finished(job: Job, made: Made | None, error: str) -> None:
        nonlocal done, last_save
        done += 1
        if made is not None and not made.problems:
            manifest[job.key] = {"digest": made.digest, "source": made.source,
                                 "seconds": round(made.seconds, 3), "size": made.size}
            (report.converted if made.source == "recorded" else report.rendered).append(job.key)
        else:
            manifest.pop(job.key, None)
            Path(job.output).unlink(missing_ok=True)  # no file is better than a bad one
            why = error or "; ".join(made.problems if made else ())
            report.failed.append((job.key, why))
        if progress is not None:
            progress(done, len(todo), job.key)
        if time.monotonic() - last_save > 1.0:  # an interrupted build keeps what it did
            _save_manifest(folder, manifest)
            last_save = time.monotonic()

    if workers == 1:
        for job in todo:
            try:
                finished(job, make(job), "")
            except Exception as exc:  # one prompt's failure is reported; the rest go on
                finished(job, None, str(exc))
        return
    # Workers are started fresh (not forked from a process that may hold threads);
    # each forks a child per prompt for speech (see ivr.speech.tts.synthesise).
    context = multiprocessing.get_context("forkserver" if os.name == "posix" else "spawn")
    with cf.ProcessPoolExecutor(workers, mp_context=context) as pool:
        futures = {pool.submit(make, job): job for job in todo}
        try:
            for future in cf.as_completed(futures):
                job = futures[future]
                try:
                    finished(job, future.result(), "")
                except Exception as exc:
                    finished(job, None, str(exc))
        except KeyboardInterrupt:
            for future in futures:
                future.cancel()
            _save_manifest(folder, manifest)
            raise


def make(job: Job) -> Made:
    """Render or convert one file, write it, and check what was written."""
    from ivr.speech import audio
    from ivr.speech.tts import synthesise

    if job.recorded:
        samples, rate = audio.read_wav(job.recorded)
        telephone = audio.to_telephone(samples, rate, normalise=False, trim=job.fragment)
        source = "recorded"
    else:
        samples, rate = synthesise(job.text, job.language, job.voice)
        telephone = audio.to_telephone(samples, rate, normalise=True, trim=job.fragment)
        source = "tts"
    audio.write_wav(job.output, telephone)
    checked = audio.verify(job.output)
    return Made(job.key, job.digest, source, checked.seconds, Path(job.output).stat().st_size,
                checked.problems)


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _same_size(output: str, known: Mapping[str, Any]) -> bool:
    try:
        return os.stat(output).st_size == known.get("size")
    except OSError:
        return False


def _load_manifest(folder: Path) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # no manifest, or a damaged one: everything is rendered again
    files = data.get("files") if isinstance(data, dict) else None
    return {k: v for k, v in files.items() if isinstance(v, dict)} if isinstance(files, dict) else {}


def _save_manifest(folder: Path, manifest: Mapping[str, Mapping[str, Any]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    temporary = folder / f".{MANIFEST}.{os.getpid()}.tmp"
    temporary.write_text(json.dumps({"version": RENDERER_VERSION, "files": dict(sorted(manifest.items()))},
                                    ensure_ascii=False, indent=1), encoding="utf-8")
    os.replace(temporary, folder / MANIFEST)


def _prune(folder: Path, root: Path) -> None:
    """Remove empty folders left under `root` once their files are gone."""
    while folder != root and root in folder.parents:
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent


def _unmatched_recordings(prompts: Path, wanted: set[str]) -> list[str]:
    recorded = prompts / "recorded"
    if not recorded.is_dir():
        return []
    found = (p.relative_to(recorded).with_suffix("").as_posix() for p in recorded.rglob("*.wav"))
    return sorted(key for key in found if key not in wanted)
