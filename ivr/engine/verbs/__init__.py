"""The verbs a flow can use. Each module registers one verb; add new ones here."""

from __future__ import annotations

from ivr.engine.verbs import (  # noqa: F401  (imported to register)
    authenticate,
    branch,
    call,
    collect,
    hangup,
    identify,
    menu,
    return_,
    say,
    set,
    sms,
    transact,
    transfer,
)
from ivr.engine.verbs.base import REGISTRY, Verb

__all__ = ["REGISTRY", "Verb"]
