"""The prompt catalog: `prompts/<language>.yaml` maps prompt ids to their text.

    welcome: 欢迎致电九五五五八。
    balance_is:
      text: 您的余额是{balance}元。

A text may hold `{name}` placeholders, filled from the call's variables when the
prompt is played (only plain names and dotted lookups; nothing is evaluated).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ivr.flow.diagnostics import Diagnostics, Pos
from ivr.flow.source import YamlSyntaxError, YMap, YScalar, parse_yaml

PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)\}")
LANGUAGE = re.compile(r"[a-z]{2,3}(-[A-Z][a-z]{3})?(-[A-Z]{2})?")


@dataclass(frozen=True)
class CatalogEntry:
    id: str
    text: str
    pos: Pos


class Catalog:
    """Prompt texts per language, loaded from a folder of `<language>.yaml` files."""

    def __init__(self, entries: Mapping[str, Mapping[str, CatalogEntry]], root: str = "") -> None:
        self._entries = {lang: dict(items) for lang, items in entries.items()}
        self.root = root

    @property
    def languages(self) -> tuple[str, ...]:
        return tuple(sorted(self._entries))

    def has(self, prompt_id: str, language: str) -> bool:
        return prompt_id in self._entries.get(language, {})

    def ids(self, language: str) -> tuple[str, ...]:
        return tuple(self._entries.get(language, {}))

    def entry(self, prompt_id: str, language: str) -> CatalogEntry | None:
        return self._entries.get(language, {}).get(prompt_id)

    def text(self, prompt_id: str, language: str, variables: Mapping[str, Any]) -> str:
        entry = self.entry(prompt_id, language)
        if entry is None:
            return f"[{prompt_id}]"
        return PLACEHOLDER.sub(lambda m: _lookup(variables, m.group(1)), entry.text)

    @classmethod
    def load(cls, folder: str | Path, diagnostics: Diagnostics | None = None) -> Catalog:
        diags = diagnostics if diagnostics is not None else Diagnostics()
        root = Path(folder)
        entries: dict[str, dict[str, CatalogEntry]] = {}
        for path in sorted(root.glob("*.yaml")):
            language = path.stem
            if not LANGUAGE.fullmatch(language):
                continue
            entries[language] = _load_language(path, diags)
        return cls(entries, str(root))


def _lookup(variables: Mapping[str, Any], dotted: str) -> str:
    value: Any = variables
    for part in dotted.split("."):
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        else:
            return ""
    return "" if value is None else str(value)


def _load_language(path: Path, diags: Diagnostics) -> dict[str, CatalogEntry]:
    file = str(path)
    try:
        tree = parse_yaml(path.read_text(encoding="utf-8"), file)
    except YamlSyntaxError as exc:
        diags.error(exc.pos, exc.message)
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        diags.error(Pos(file), f"cannot read prompt catalog: {exc}")
        return {}
    out: dict[str, CatalogEntry] = {}
    if isinstance(tree, YScalar) and tree.value is None:
        return out
    if not isinstance(tree, YMap):
        diags.error(tree.pos, "a prompt catalog maps prompt ids to texts")
        return out
    for entry in tree.entries:
        value = entry.value
        if isinstance(value, YMap):
            text_entry = value.get("text")
            value = text_entry.value if text_entry else value
        if not isinstance(value, YScalar) or not isinstance(value.value, str):
            diags.error(entry.value.pos, f"prompt '{entry.key}' needs a text")
            continue
        out[entry.key] = CatalogEntry(entry.key, value.value, entry.key_pos)
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
