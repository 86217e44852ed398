"""The prompt catalog: `prompts/<language>.yaml` maps prompt ids to their text.

    welcome: 欢迎致电九五五五八。
    balance_is:
      text: 您的可用余额合计{balance.total:amount}。
      voice: {rate: 150}          # optional: name, rate, pitch, volume for the renderer
    _style:                       # optional, for the whole language
      one_as_yao: true            # digit strings read 1 as 幺
      voice: {rate: 170}

A text may hold placeholders filled from the call's variables when the prompt is
played: `{name}` (the value as it is, dotted lookups allowed; nothing is evaluated)
or `{name:kind}`, read out by a composer (`ivr.speech.say`: amount, number, digits,
date, time, percent, rate).

Rendered audio (see `ivr.speech.build`): a prompt without placeholders is one file,
`<id>.wav`; a template prompt is its literal pieces, `<id>/1.wav`, `<id>/2.wav` ...,
around the composers' fragments, `_say/<word>.wav`. `Catalog.render` gives the text
and that sequence of audio ids for one playing of a prompt.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ivr.flow.diagnostics import Diagnostics, Pos, did_you_mean
from ivr.flow.source import YamlSyntaxError, YEntry, YMap, YScalar, parse_yaml
from ivr.speech.say import KINDS, ComposeError, Style, compose, speaks, vocabulary, write

log = logging.getLogger("ivr.speech")

_NAME = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
PLACEHOLDER = re.compile(r"\{(" + _NAME + r")(?::([A-Za-z_]+))?\}")
LANGUAGE = re.compile(r"[a-z]{2,3}(-[A-Z][a-z]{3})?(-[A-Z]{2})?")
#: the folder (under each language) of the composers' fragment words
FRAGMENTS = "_say"
#: a piece of text worth a file of its own: something a voice can say
SPEAKABLE = re.compile(r"[^\W_]", re.UNICODE)
VOICE_KEYS = {"name": str, "rate": int, "pitch": int, "volume": float}
VOICE_RANGES = {"rate": (80, 450), "pitch": (0, 99), "volume": (0.1, 1.0)}


@dataclass(frozen=True)
class Field:
    name: str
    kind: str  # "" for a value said as it is


@dataclass(frozen=True)
class CatalogEntry:
    id: str
    text: str
    pos: Pos
    voice: Mapping[str, Any] = field(default_factory=dict)
    #: the text cut at its placeholders: literal pieces (str) and fields, in order
    pieces: tuple[str | Field, ...] = ()
    #: the placeholders among `pieces` (worked out once: rendering asks on every call)
    fields: tuple[Field, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "fields", tuple(p for p in self.pieces if isinstance(p, Field)))

    def audio_pieces(self) -> Iterator[tuple[str, str]]:
        """(audio id, text) for each file this prompt's own words are rendered to."""
        if not self.fields:
            yield self.id, self.text
            return
        for index, piece in enumerate(self.pieces, 1):
            if isinstance(piece, str) and SPEAKABLE.search(piece):
                yield f"{self.id}/{index}", piece


@dataclass(frozen=True)
class Spoken:
    """One playing of a prompt: its text and the audio ids that say it, in order."""

    text: str
    parts: tuple[str, ...]
    #: False when some words have no audio (a value said as it is, or one that failed)
    complete: bool = True


class Catalog:
    """Prompt texts per language, loaded from a folder of `<language>.yaml` files."""

    def __init__(self, entries: Mapping[str, Mapping[str, CatalogEntry]], root: str = "",
                 styles: Mapping[str, Style] | None = None,
                 voices: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        self._entries = {lang: dict(items) for lang, items in entries.items()}
        self.root = root
        self.styles = dict(styles or {})
        self.voices = {lang: dict(v) for lang, v in (voices or {}).items()}

    @property
    def languages(self) -> tuple[str, ...]:
        return tuple(sorted(self._entries))

    def has(self, prompt_id: str, language: str) -> bool:
        return prompt_id in self._entries.get(language, {})

    def ids(self, language: str) -> tuple[str, ...]:
        return tuple(self._entries.get(language, {}))

    def entry(self, prompt_id: str, language: str) -> CatalogEntry | None:
        return self._entries.get(language, {}).get(prompt_id)

    def entries(self, language: str) -> tuple[CatalogEntry, ...]:
        return tuple(self._entries.get(language, {}).values())

    def style(self, language: str) -> Style:
        return self.styles.get(language, Style())

    def text(self, prompt_id: str, language: str, variables: Mapping[str, Any]) -> str:
        return self.render(prompt_id, language, variables).text

    def written(self, prompt_id: str, language: str, variables: Mapping[str, Any]) -> str:
        """The prompt as a text message writes it: values in figures (10,005.05元)."""
        entry = self.entry(prompt_id, language)
        if entry is None:
            return f"[{prompt_id}]"
        out: list[str] = []
        for piece in entry.pieces or (entry.text,):
            if isinstance(piece, str):
                out.append(piece)
                continue
            value = lookup(variables, piece.name)
            if value is None or value == "":
                continue
            try:
                out.append(write(piece.kind, value, language) if piece.kind else str(value))
            except ComposeError as exc:
                log.warning("prompt '%s' (%s): {%s:%s} is left out: %s",
                            prompt_id, language, piece.name, piece.kind, exc)
        return "".join(out)

    def render(self, prompt_id: str, language: str, variables: Mapping[str, Any]) -> Spoken:
        """The prompt filled in from `variables`: its text, and the audio ids to play.

        A value a composer cannot read (a missing variable, an amount that is not one)
        is left out, and said once in the log; the rest of the prompt is still played."""
        entry = self.entry(prompt_id, language)
        if entry is None:
            return Spoken(f"[{prompt_id}]", (prompt_id,), complete=False)
        if not entry.fields:  # the interpreter keeps these per prompt and language
            return Spoken(entry.text, (prompt_id,))
        texts: list[str] = []
        parts: list[str] = []
        complete = True
        for index, piece in enumerate(entry.pieces, 1):
            if isinstance(piece, str):
                texts.append(piece)
                if SPEAKABLE.search(piece):
                    parts.append(f"{prompt_id}/{index}")
                continue
            value = lookup(variables, piece.name)
            if not piece.kind:
                texts.append("" if value is None else str(value))
                complete = complete and value in (None, "")
                continue
            if value is None or value == "":
                log.warning("prompt '%s' (%s): no value for {%s:%s}; it is left out",
                            prompt_id, language, piece.name, piece.kind)
                complete = False
                continue
            try:
                said = compose(piece.kind, value, language, self.style(language))
            except ComposeError as exc:
                log.warning("prompt '%s' (%s): {%s:%s} is left out: %s",
                            prompt_id, language, piece.name, piece.kind, exc)
                complete = False
                continue
            texts.append(said.text if language.startswith("zh") else f" {said.text} ")
            parts.extend(f"{FRAGMENTS}/{word}" for word in said.parts)
        text = re.sub(r" {2,}", " ", "".join(texts)).strip()
        text = re.sub(r" ([,.;:!?])", r"\1", text)
        return Spoken(text, tuple(parts), complete)

    def audio_items(self, language: str) -> Iterator[tuple[str, str, Mapping[str, Any]]]:
        """Everything to render for `language`: (audio id, text, voice settings)."""
        base = self.voices.get(language, {})
        for entry in self.entries(language):
            for audio_id, text in entry.audio_pieces():
                yield audio_id, text, {**base, **entry.voice}
        if any(e.fields for e in self.entries(language)):
            for word, text in vocabulary(language).items():
                yield f"{FRAGMENTS}/{word}", text, base

    @classmethod
    def load(cls, folder: str | Path, diagnostics: Diagnostics | None = None) -> Catalog:
        diags = diagnostics if diagnostics is not None else Diagnostics()
        root = Path(folder)
        entries: dict[str, dict[str, CatalogEntry]] = {}
        styles: dict[str, Style] = {}
        voices: dict[str, dict[str, Any]] = {}
        for path in sorted(root.glob("*.yaml")):
            language = path.stem
            if not LANGUAGE.fullmatch(language):
                continue
            loaded = _load_language(path, language, diags)
            entries[language], styles[language], voices[language] = loaded
        return cls(entries, str(root), styles, voices)


def lookup(variables: Mapping[str, Any], dotted: str) -> Any:
    """`a.b.c` in nested mappings, or None."""
    value: Any = variables
    for part in dotted.split("."):
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        else:
            return None
    return value


def split_template(text: str) -> tuple[str | Field, ...]:
    pieces: list[str | Field] = []
    at = 0
    for match in PLACEHOLDER.finditer(text):
        if match.start() > at:
            pieces.append(text[at:match.start()])
        pieces.append(Field(match.group(1), match.group(2) or ""))
        at = match.end()
    if at < len(text):
        pieces.append(text[at:])
    return tuple(pieces)


def _load_language(path: Path, language: str,
                   diags: Diagnostics) -> tuple[dict[str, CatalogEntry], Style, dict[str, Any]]:
    file = str(path)
    out: dict[str, CatalogEntry] = {}
    style: Style = Style()
    voice: dict[str, Any] = {}
    try:
        tree = parse_yaml(path.read_text(encoding="utf-8"), file)
    except YamlSyntaxError as exc:
        diags.error(exc.pos, exc.message)
        return out, style, voice
    except (OSError, UnicodeDecodeError) as exc:
        diags.error(Pos(file), f"cannot read prompt catalog: {exc}")
        return out, style, voice
    if isinstance(tree, YScalar) and tree.value is None:
        return out, style, voice
    if not isinstance(tree, YMap):
        diags.error(tree.pos, "a prompt catalog maps prompt ids to texts")
        return out, style, voice
    for entry in tree.entries:
        if entry.key == "_style":
            style, voice = _load_style(entry, diags)
            continue
        loaded = _load_entry(entry, language, diags)
        if loaded is not None:
            out[entry.key] = loaded
    return out, style, voice


def _load_entry(entry: YEntry, language: str, diags: Diagnostics) -> CatalogEntry | None:
    value = entry.value
    voice: dict[str, Any] = {}
    if not re.fullmatch(r"[A-Za-z0-9_.\-]+", entry.key) or entry.key.startswith("_"):
        diags.error(entry.key_pos, f"'{entry.key}' is not a valid prompt id (letters, digits, "
                    "_ . and -, not starting with _)")
        return None
    if isinstance(value, YMap):
        for key in value.keys():  # noqa: SIM118 (a YMap, not a dict)
            if key not in ("text", "voice"):
                item = value.get(key)
                assert item is not None
                diags.error(item.key_pos, f"prompt '{entry.key}': unknown setting '{key}' "
                            f"(settings: text, voice){did_you_mean(key, ('text', 'voice'))}")
        voice_entry = value.get("voice")
        if voice_entry is not None:
            voice = _load_voice(voice_entry, diags)
        text_entry = value.get("text")
        value = text_entry.value if text_entry else value
    if not isinstance(value, YScalar) or not isinstance(value.value, str) or not value.value.strip():
        diags.error(entry.value.pos, f"prompt '{entry.key}' needs a text")
        return None
    text = value.value
    pieces = split_template(text)
    for piece in pieces:
        if isinstance(piece, str) or not piece.kind:
            continue
        if piece.kind not in KINDS:
            diags.error(value.pos, f"prompt '{entry.key}': '{{{piece.name}:{piece.kind}}}' asks for "
                        f"an unknown kind '{piece.kind}' (kinds: {', '.join(KINDS)})"
                        f"{did_you_mean(piece.kind, KINDS)}")
        elif not speaks(language):
            diags.error(value.pos, f"prompt '{entry.key}': no composer reads {piece.kind} values "
                        f"in {language}; say the value as it is with '{{{piece.name}}}'")
    return CatalogEntry(entry.key, text, entry.key_pos, voice, pieces)


def _load_style(entry: YEntry, diags: Diagnostics) -> tuple[Style, dict[str, Any]]:
    style: Style = Style()
    voice: dict[str, Any] = {}
    if not isinstance(entry.value, YMap):
        diags.error(entry.value.pos, "_style maps settings (one_as_yao, voice) to values")
        return style, voice
    for item in entry.value.entries:
        if item.key == "one_as_yao":
            if not isinstance(item.value, YScalar) or not isinstance(item.value.value, bool):
                diags.error(item.value.pos, "_style: one_as_yao is true or false")
            else:
                style = Style(one_as_yao=item.value.value)
        elif item.key == "voice":
            voice = _load_voice(item, diags)
        else:
            diags.error(item.key_pos, f"_style: unknown setting '{item.key}' (settings: one_as_yao, "
                        f"voice){did_you_mean(item.key, ('one_as_yao', 'voice'))}")
    return style, voice


def _load_voice(entry: YEntry, diags: Diagnostics) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if not isinstance(entry.value, YMap):
        diags.error(entry.value.pos, "voice maps settings (name, rate, pitch, volume) to values")
        return out
    for item in entry.value.entries:
        kind = VOICE_KEYS.get(item.key)
        raw = item.value.value if isinstance(item.value, YScalar) else None
        if kind is None:
            diags.error(item.key_pos, f"voice: unknown setting '{item.key}' (settings: "
                        f"{', '.join(VOICE_KEYS)}){did_you_mean(item.key, VOICE_KEYS)}")
            continue
        ok = isinstance(raw, kind) or (kind is float and isinstance(raw, int))
        if isinstance(raw, bool) or not ok:
            diags.error(item.value.pos, f"voice: {item.key} must be a {kind.__name__}")
            continue
        low_high = VOICE_RANGES.get(item.key)
        if low_high is not None and not low_high[0] <= raw <= low_high[1]:  # type: ignore[operator]
            diags.error(item.value.pos, f"voice: {item.key} {raw} is out of range "
                        f"{low_high[0]}-{low_high[1]}")
            continue
        out[item.key] = raw
    return out


def find_catalog_folder(start: str | Path) -> Path | None:
    """The nearest `prompts/` folder at or above `start` that has catalog files."""
    here = Path(start).resolve()
    if here.is_file():
        here = here.parent
    for folder in (here, *here.parents):
        candidate = folder / "prompts"
        if candidate.is_dir() and any(candidate.glob("*.yaml")):
            return candidate
    return None
