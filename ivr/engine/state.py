"""A call's state: plain, versioned, JSON-serialisable data.

It holds where the call is (flow, node, the sub-flow stack), the flow's variables,
retry counters and the call's language. It never holds a PIN or a full card
number: keys collected with `secret: true` live only until the next wait.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, Literal

STATE_VERSION = 2

Status = Literal["new", "waiting", "ended"]
#: how far the caller has proved who they are: not at all, identified, or with the PIN
AuthLevel = Literal["none", "identified", "pin"]


class StateError(Exception):
    """Saved state that cannot be resumed, with the reason."""


@dataclass
class Frame:
    """Where to come back to when a sub-flow returns: the `call` node."""

    flow: str
    node: str


@dataclass
class CallState:
    call_id: str
    flow: str
    node: str
    language: str
    caller: str | None = None
    status: Status = "new"
    variables: dict[str, Any] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    stack: list[Frame] = field(default_factory=list)
    steps: int = 0
    turns: int = 0
    end_reason: str | None = None
    #: the bank's internal id of the identified customer (never a card or ID number)
    customer_id: int | None = None
    auth: AuthLevel = "none"
    version: int = STATE_VERSION

    def copy(self) -> CallState:
        """A copy sharing nothing (variables hold JSON-like data: no deepcopy needed)."""
        return CallState(self.call_id, self.flow, self.node, self.language, self.caller, self.status,
                         _plain(self.variables), dict(self.counters),
                         [Frame(f.flow, f.node) for f in self.stack], self.steps, self.turns,
                         self.end_reason, self.customer_id, self.auth, self.version)

    def take(self, other: CallState) -> None:
        """Become `other` (the interpreter's working copy, once its turn is done)."""
        self.call_id, self.flow, self.node = other.call_id, other.flow, other.node
        self.language, self.caller, self.status = other.language, other.caller, other.status
        self.variables, self.counters, self.stack = other.variables, other.counters, other.stack
        self.steps, self.turns, self.end_reason = other.steps, other.turns, other.end_reason
        self.customer_id, self.auth, self.version = other.customer_id, other.auth, other.version

    def to_dict(self) -> dict[str, Any]:
        """A plain copy (JSON types only), sharing nothing with the state."""
        data = {name: _plain(getattr(self, name)) for name in _FIELDS}
        data["stack"] = [{"flow": f.flow, "node": f.node} for f in self.stack]
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> CallState:
        try:
            data = json.loads(text)
        except (ValueError, TypeError) as exc:
            raise StateError(f"saved call state is not JSON: {exc}") from None
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: Any) -> CallState:
        if not isinstance(data, dict):
            raise StateError("saved call state is not a JSON object")
        data = migrate(data)
        try:
            stack = [Frame(**f) for f in data.pop("stack", [])]
            state = cls(**data, stack=stack)
        except TypeError as exc:
            raise StateError(f"saved call state has the wrong shape: {exc}") from None
        if state.status not in ("new", "waiting", "ended"):
            raise StateError(f"saved call state has unknown status '{state.status}'")
        if state.auth not in ("none", "identified", "pin"):
            raise StateError(f"saved call state has unknown auth level '{state.auth}'")
        return state


_FIELDS = tuple(f.name for f in fields(CallState) if f.name != "stack")


def _plain(value: Any) -> Any:
    """A copy of JSON-like data (what call variables hold), faster than deepcopy."""
    if isinstance(value, dict):
        return {k: _plain(v) if isinstance(v, _CONTAINERS) else v for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) if isinstance(v, _CONTAINERS) else v for v in value]
    return value


_CONTAINERS = (dict, list, tuple)


def _v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """Version 2 knows who the caller is: nobody yet, for calls saved before it."""
    return {**data, "customer_id": None, "auth": "none", "version": 2}


# Each migration takes a state dict of version N and returns version N + 1.
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: _v1_to_v2}


def migrate(data: dict[str, Any]) -> dict[str, Any]:
    """Bring a saved state up to STATE_VERSION, or say why it cannot be."""
    data = dict(data)
    version = data.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise StateError("saved call state has no version number")
    if version > STATE_VERSION:
        raise StateError(
            f"saved call state is version {version}, newer than this engine's "
            f"{STATE_VERSION}: upgrade the engine before resuming this call"
        )
    while version < STATE_VERSION:
        step = MIGRATIONS.get(version)
        if step is None:
            raise StateError(
                f"saved call state version {version} is too old to resume "
                f"(this engine reads versions {min(MIGRATIONS, default=STATE_VERSION)}"
                f" to {STATE_VERSION})"
            )
        data = step(data)
        version = data["version"]
    return data
