"""The verbs a flow can use. Each module registers one verb; add new ones here."""

from __future__ import annotations

from ivr.engine.verbs import (  # noqa: F401  (imported to register)
    branch,
    call,
    collect,
    hangup,
    menu,
    return_,
    say,
    set,
    transfer,
)
from ivr.engine.verbs.base import REGISTRY, Verb

__all__ = ["REGISTRY", "Verb"]
