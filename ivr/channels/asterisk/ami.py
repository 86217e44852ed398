"""AMI: originating outbound calls and following queue and hang-up events.

A layer over panoramisk's `Manager`, which logs in, reconnects when the connection
drops and logs in again. On top of it this module adds what the engine needs:

* `AmiUrl`: ``ami://user:secret@host:5038``, with the secret kept out of every
  message, repr and log line;
* a deadline on every action, and an action caught by a dropped connection fails
  at once with `AmiError` instead of hanging, or being sent a second time after
  the reconnection (panoramisk would re-send it, and a re-sent Originate dials
  the customer twice);
* `Ami.originate`, which waits for the call's real outcome (the
  ``OriginateResponse`` event with the same ActionID) instead of "queued";
* typed, frozen queue and hang-up events with caller numbers masked;
* a keepalive Ping that notices a silent (half-open) connection and reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from panoramisk import Manager  # type: ignore[import-untyped]

log = logging.getLogger("ivr.ami")
#: panoramisk's own messages (connections, every message received at DEBUG)
wire_log = logging.getLogger("ivr.ami.wire")

DEFAULT_PORT = 5038
CONTEXT = "ivr-outbound"
CHANNEL_TEMPLATE = "PJSIP/{number}@trunk"

#: OriginateResponse's Reason (the last control frame the channel saw) in words
REASONS: Mapping[str, str] = {
    "0": "failed: no such extension or channel",
    "1": "no answer (hung up before answering)",
    "3": "no answer (rang until the timeout)",
    "5": "busy",
    "8": "congestion (the network refused the call)",
}

_NUMBER = re.compile(r"\+?[0-9]{3,20}")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_LONG_DIGITS = re.compile(r"(?<![\w.+-])\+?\d{7,}(?![\w.])")
_UNSAFE = re.compile(r"[\r\n]")


class AmiError(Exception):
    """AMI refused us, could not be reached, or did not answer in time."""


class OriginateFailed(AmiError):
    """The outbound call was not answered or could not be placed."""


# -- masking ---------------------------------------------------------------------------


def mask_number(number: str) -> str:
    """``+8613800000001`` → ``+86138*****0001``: the first 5 and last 4 digits.

    Shorter numbers keep at most their last 4 digits and always hide at least 5;
    anything that is not a number has its long digit runs masked."""
    text = number.strip()
    plus = "+" if text.startswith("+") else ""
    digits = text[len(plus):]
    if not digits.isdigit() or not digits.isascii():
        return mask_text(text)
    if len(digits) > 9:
        return plus + digits[:5] + "*" * (len(digits) - 9) + digits[-4:]
    keep = min(4, max(0, len(digits) - 5))
    return plus + "*" * (len(digits) - keep) + digits[len(digits) - keep:]


def mask_text(text: str) -> str:
    """Every run of 7 or more digits standing alone (a phone or account number)
    masked; ids such as ``1795870864.77`` or ``PJSIP/trunk-00000001`` are left alone."""
    return _LONG_DIGITS.sub(lambda m: mask_number(m.group()), text)


class _Redact(logging.Filter):
    """Masks numbers, and replaces known AMI secrets, in every record."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        for secret in self.secrets:
            text = text.replace(secret, "***")
        record.msg, record.args = mask_text(text), None
        return True


_redact = _Redact()
for _logger in (log, wire_log):
    _logger.addFilter(_redact)


# -- the URL ---------------------------------------------------------------------------

_URL_FORM = "ami://USER:SECRET@HOST:5038"


@dataclass(frozen=True)
class AmiUrl:
    """Where AMI listens and who we log in as; str() and repr() hide the secret."""

    host: str
    port: int
    username: str
    secret: str = field(repr=False)

    @classmethod
    def parse(cls, url: str) -> AmiUrl:
        parts = urllib.parse.urlsplit(url.strip())
        if parts.scheme.lower() != "ami":
            got = f"{parts.scheme}://" if parts.scheme else "no scheme"
            raise ValueError(f"the AMI URL must start with ami:// ({_URL_FORM}), not {got}")
        if not parts.hostname:
            raise ValueError(f"the AMI URL has no host ({_URL_FORM})")
        if not parts.username:
            raise ValueError(f"the AMI URL has no user ({_URL_FORM})")
        if not parts.password:
            raise ValueError(f"the AMI URL has no secret for user {urllib.parse.unquote(parts.username)} "
                             f"({_URL_FORM})")
        try:
            port = parts.port
        except ValueError:
            port = 0
        if port is None:
            port = DEFAULT_PORT
        if not 1 <= port <= 65535:
            raise ValueError("the AMI URL's port must be a number from 1 to 65535 (AMI's is 5038)")
        return cls(parts.hostname, port, urllib.parse.unquote(parts.username),
                   urllib.parse.unquote(parts.password))

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def __str__(self) -> str:
        return f"ami://{urllib.parse.quote(self.username, safe='')}:***@{self.address}"


# -- events ----------------------------------------------------------------------------


def _text(message: Mapping[str, Any], key: str) -> str:
    value = message.get(key, "")
    if isinstance(value, list):  # a header repeated: keep the last one
        value = value[-1] if value else ""
    return str(value).strip()


def _int(message: Mapping[str, Any], key: str) -> int | None:
    value = _text(message, key)
    return int(value) if value.isdigit() else None


def _ivr_variables(message: Mapping[str, Any]) -> dict[str, str]:
    """The IVR_* channel variables of the event's channel: panoramisk gives one
    ``ChanVariable`` line as a str and several as a list of ``NAME=value``."""
    raw = message.get("ChanVariable", [])
    lines: Iterable[Any] = [raw] if isinstance(raw, str) else raw if isinstance(raw, list) else []
    found: dict[str, str] = {}
    for line in lines:
        name, sep, value = str(line).partition("=")
        if sep and name.strip().startswith("IVR_"):
            found[name.strip()] = value.strip()
    return found


@dataclass(frozen=True, kw_only=True)
class AmiEvent:
    """An event about a caller's channel; `caller` is already masked."""

    name: ClassVar[str] = ""

    channel: str = ""
    uniqueid: str = ""
    caller: str = ""
    variables: Mapping[str, str] = field(default_factory=dict, hash=False)

    @classmethod
    def from_message(cls, message: Mapping[str, Any]) -> AmiEvent:
        """The typed event for an AMI message (a plain AmiEvent for other names)."""
        kind = EVENT_TYPES.get(_text(message, "Event"), AmiEvent)
        return kind(channel=_text(message, "Channel"), uniqueid=_text(message, "Uniqueid"),
                    caller=mask_number(_text(message, "CallerIDNum")),
                    variables=_ivr_variables(message), **kind._details(message))

    @classmethod
    def _details(cls, message: Mapping[str, Any]) -> dict[str, Any]:
        return {}

    def describe(self) -> str:
        """One line for a screen or a log: numbers masked."""
        parts = [self.name or "Event"]
        for item in fields(self):
            value = getattr(self, item.name)
            if item.name != "variables" and value not in ("", None):
                parts.append(f"{item.name}={mask_text(str(value))}")
        parts += [f"{key}={mask_text(value)}" for key, value in sorted(self.variables.items())]
        return " ".join(parts)


@dataclass(frozen=True, kw_only=True)
class QueueEvent(AmiEvent):
    queue: str = ""
    position: int | None = None
    #: seconds the caller has waited in the queue
    hold_time: int | None = None

    @classmethod
    def _details(cls, message: Mapping[str, Any]) -> dict[str, Any]:
        return {"queue": _text(message, "Queue"), "position": _int(message, "Position"),
                "hold_time": _int(message, "HoldTime")}


@dataclass(frozen=True, kw_only=True)
class QueueCallerJoin(QueueEvent):
    name = "QueueCallerJoin"
    #: callers in the queue now
    count: int | None = None

    @classmethod
    def _details(cls, message: Mapping[str, Any]) -> dict[str, Any]:
        return {**super()._details(message), "count": _int(message, "Count")}


@dataclass(frozen=True, kw_only=True)
class QueueCallerLeave(QueueEvent):
    name = "QueueCallerLeave"
    count: int | None = None

    @classmethod
    def _details(cls, message: Mapping[str, Any]) -> dict[str, Any]:
        return {**super()._details(message), "count": _int(message, "Count")}


@dataclass(frozen=True, kw_only=True)
class QueueCallerAbandon(QueueEvent):
    name = "QueueCallerAbandon"
    original_position: int | None = None

    @classmethod
    def _details(cls, message: Mapping[str, Any]) -> dict[str, Any]:
        return {**super()._details(message), "original_position": _int(message, "OriginalPosition")}


@dataclass(frozen=True, kw_only=True)
class AgentConnect(QueueEvent):
    name = "AgentConnect"
    member: str = ""
    ring_time: int | None = None

    @classmethod
    def _details(cls, message: Mapping[str, Any]) -> dict[str, Any]:
        return {**super()._details(message), "member": _text(message, "MemberName"),
                "ring_time": _int(message, "RingTime")}


@dataclass(frozen=True, kw_only=True)
class AgentComplete(QueueEvent):
    name = "AgentComplete"
    member: str = ""
    talk_time: int | None = None
    #: who ended the call: caller, agent or transfer
    reason: str = ""

    @classmethod
    def _details(cls, message: Mapping[str, Any]) -> dict[str, Any]:
        return {**super()._details(message), "member": _text(message, "MemberName"),
                "talk_time": _int(message, "TalkTime"), "reason": _text(message, "Reason")}


@dataclass(frozen=True, kw_only=True)
class Hangup(AmiEvent):
    name = "Hangup"
    #: the Q.850 cause code (16 is a normal clearing)
    cause: int | None = None
    cause_text: str = ""

    @classmethod
    def _details(cls, message: Mapping[str, Any]) -> dict[str, Any]:
        return {"cause": _int(message, "Cause"), "cause_text": _text(message, "Cause-txt")}


EVENT_TYPES: Mapping[str, type[AmiEvent]] = {
    kind.name: kind for kind in (QueueCallerJoin, QueueCallerLeave, QueueCallerAbandon,
                                 AgentConnect, AgentComplete, Hangup)}
EVENTS: tuple[str, ...] = tuple(EVENT_TYPES)


class EventStream:
    """Events as they come, from the moment `Ami.events` is called (so nothing is
    missed between asking and iterating); ends when the `Ami` is closed.

    Holds at most `limit` unread events, dropping the oldest beyond that."""

    _END: ClassVar[object] = object()

    def __init__(self, owner: Ami, names: frozenset[str], limit: int = 10_000) -> None:
        self._owner = owner
        self.names = names
        self._queue: asyncio.Queue[AmiEvent | object] = asyncio.Queue()
        self._limit = limit
        self._done = False

    def wants(self, event: AmiEvent) -> bool:
        return event.name in self.names

    def put(self, item: AmiEvent | object) -> None:
        if self._queue.qsize() >= self._limit:
            with contextlib.suppress(asyncio.QueueEmpty):
                self._queue.get_nowait()
            log.warning("AMI: events are read too slowly: dropped the oldest")
        self._queue.put_nowait(item)

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> AmiEvent:
        if self._done:
            raise StopAsyncIteration
        item = await self._queue.get()
        if not isinstance(item, AmiEvent):
            self._done = True
            raise StopAsyncIteration
        return item

    async def aclose(self) -> None:
        """Stop listening."""
        self._owner._streams.discard(self)
        self._done = True


def originate_action(number: str, flow: str, *, caller_id: str,
                     variables: Mapping[str, str] | None = None, timeout: float = 30.0,
                     channel_template: str = CHANNEL_TEMPLATE) -> dict[str, Any]:
    """The Originate action `Ami.originate` sends; ValueError for a malformed number,
    flow, variable, caller id, channel template or timeout."""
    if not _NUMBER.fullmatch(number):
        raise ValueError(f"the number must be 3 to 20 digits with an optional leading +, "
                         f"not {mask_text(number)!r}")
    if not _NAME.fullmatch(flow):
        raise ValueError(f"the flow must be a name such as collections (letters, digits and _), "
                         f"not {flow!r}")
    pairs = {"IVR_FLOW": flow}
    for key, value in (variables or {}).items():
        if key == "IVR_FLOW":
            raise ValueError("IVR_FLOW is set from the flow argument")
        if not _NAME.fullmatch(key):
            raise ValueError(f"a channel variable's name must be letters, digits and _, not {key!r}")
        if _UNSAFE.search(str(value)) or "," in str(value):
            raise ValueError(f"channel variable {key}'s value cannot hold a comma or a line break")
        pairs[key] = str(value)
    if _UNSAFE.search(caller_id):
        raise ValueError("the caller id cannot hold a line break")
    if "{number}" not in channel_template or _UNSAFE.search(channel_template):
        raise ValueError("the channel template must be one line holding {number}, "
                         "such as PJSIP/{number}@trunk")
    if timeout <= 0:
        raise ValueError("the ringing timeout must be positive")
    return {
        "Action": "Originate", "ActionID": f"ivr-originate-{uuid.uuid4().hex[:16]}",
        "Channel": channel_template.replace("{number}", number),
        "Context": CONTEXT, "Exten": "s", "Priority": "1", "Async": "true",
        "Timeout": str(int(timeout * 1000)), "CallerID": caller_id,
        # one Variable line each: Asterisk splits a line's value at commas
        "Variable": [f"{key}={value}" for key, value in pairs.items()],
    }


# -- the client ------------------------------------------------------------------------


class _Manager(Manager):  # type: ignore[misc]
    """panoramisk's Manager, telling its `Ami` about logins and drops, and dialling
    no more once closed."""

    def __init__(self, owner: Ami, **config: Any) -> None:
        super().__init__(**config)
        self.owner = owner
        self.closing = False

    def connect(self, *args: Any, **kwargs: Any) -> Any:
        if self.closing:
            return None
        return super().connect(*args, **kwargs)

    def connection_made(self, f: asyncio.Future[Any]) -> None:
        if f.cancelled():
            return
        if self.closing:
            if f.exception() is None:
                f.result()[0].close()
            return
        if isinstance(f.exception(), OSError):
            self.owner._unreachable(f.exception())
        super().connection_made(f)
        if f.exception() is None and self.authenticated_future is not None:
            self.authenticated_future.add_done_callback(self.owner._login_answered)

    def ping(self) -> None:
        """panoramisk's unanswered pings are replaced by `Ami`'s keepalive."""
        self.pinger = None

    def connection_lost(self, exc: Any) -> None:
        super().connection_lost(exc)
        self.owner._connection_lost()


class Ami:
    """An AMI client.

    >>> ami = Ami(AmiUrl.parse("ami://ivr:secret@127.0.0.1:5038"))
    >>> await ami.connect()
    >>> uniqueid = await ami.originate("+8613800000001", "collections", caller_id="95558")

    `action_timeout` bounds every action's answer; `reconnect_delay` is the pause
    before each new connection attempt after a drop; a Ping every `keepalive`
    seconds that gets no answer within `action_timeout` drops the connection, to
    reconnect (0 turns the keepalive off).
    """

    def __init__(self, url: AmiUrl | str, *, action_timeout: float = 10.0, reconnect_delay: float = 2.0,
                 keepalive: float = 20.0) -> None:
        self.url = url if isinstance(url, AmiUrl) else AmiUrl.parse(url)
        self.action_timeout = action_timeout
        self.keepalive = keepalive
        if len(self.url.secret) >= 3:
            _redact.secrets.add(self.url.secret)
        self.manager = _Manager(self, host=self.url.host, port=self.url.port,
                                username=self.url.username, secret=self.url.secret, log=wire_log)
        # panoramisk truncates these to whole seconds; a fraction is fine for call_later
        self.manager.reconnect_timeout = reconnect_delay
        for name in EVENTS:
            self.manager.register_event(name, self._dispatch)
        self._ready = asyncio.Event()
        self._login: asyncio.Future[bool] | None = None
        self._inflight: dict[asyncio.Future[Any], str] = {}
        self._streams: set[EventStream] = set()
        self._keepalive: asyncio.Task[None] | None = None
        self._closed = False
        #: logins so far (the first one and each one after a reconnection)
        self.logins = 0

    @property
    def connected(self) -> bool:
        """Logged in now (False while reconnecting)."""
        return self._ready.is_set()

    # -- connection --------------------------------------------------------------------

    async def connect(self, timeout: float = 5.0) -> None:
        """Connect and log in. AmiError if AMI cannot be reached, does not answer
        within `timeout` seconds, or refuses the login."""
        if self._closed:
            raise AmiError("this AMI client is closed")
        if self._login is not None:
            raise AmiError("this AMI client is already connected (it reconnects by itself)")
        loop = asyncio.get_running_loop()
        self.manager.loop = loop
        self._login = loop.create_future()
        where = self.url.address
        try:
            async with asyncio.timeout(timeout):
                await self.manager.connect()
                accepted = await self._login
        except TimeoutError:
            await self.close()
            raise AmiError(f"AMI at {where} did not let us log in within {timeout:g} s") from None
        except OSError as exc:
            await self.close()
            raise AmiError(f"cannot reach AMI at {where}: {exc.strerror or exc}") from None
        except AmiError:
            await self.close()
            raise
        if not accepted:
            await self.close()
            raise AmiError(f"AMI login refused for user {self.url.username} at {where}: "
                           "check manager.conf's secret and permit")
        if self.keepalive > 0:
            self._keepalive = loop.create_task(self._keep_alive())

    def _unreachable(self, exc: BaseException | None) -> None:
        if self.logins:
            log.warning("AMI: cannot reach %s (%s): trying again in %g s", self.url.address, exc,
                        self.manager.reconnect_timeout)

    def _login_answered(self, future: asyncio.Future[Any]) -> None:
        if future.cancelled():
            return
        accepted = bool(future.result().success)
        if accepted:
            self.logins += 1
            self._ready.set()
            log.info("AMI: logged in to %s as %s%s", self.url.address, self.url.username,
                     " again" if self.logins > 1 else "")
        else:
            log.error("AMI login refused for user %s at %s: check manager.conf's secret and permit",
                      self.url.username, self.url.address)
        if self._login is not None and not self._login.done():
            self._login.set_result(accepted)

    def _connection_lost(self) -> None:
        self._ready.clear()
        if self._login is not None and not self._login.done():
            self._login.set_exception(AmiError(f"AMI at {self.url.address} closed the connection "
                                               "before answering the login"))
        if not self._closed:
            log.warning("AMI: lost the connection to %s: reconnecting in %g s", self.url.address,
                        self.manager.reconnect_timeout)
        self._fail_inflight("the AMI connection was lost")

    def _fail_inflight(self, why: str) -> None:
        for future, name in list(self._inflight.items()):
            if not future.done():
                future.set_exception(AmiError(f"{why} while waiting for {name}'s answer"))

    async def _keep_alive(self) -> None:
        while not self._closed:
            await asyncio.sleep(self.keepalive)
            if not self.connected:
                continue
            try:
                await self.action({"Action": "Ping"})
            except AmiError as exc:
                if self.connected and not self._closed:
                    log.warning("AMI: %s: dropping the connection to reconnect", exc)
                    transport = getattr(self.manager.protocol, "transport", None)
                    if transport is not None:
                        transport.close()

    async def close(self) -> None:
        """Log off (without waiting), stop reconnecting, end every event stream."""
        if self._closed:
            return
        self._closed = True
        self._ready.clear()
        self.manager.closing = True
        if self._keepalive is not None:
            self._keepalive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keepalive
        self._fail_inflight("the AMI client was closed")
        if self._login is not None and not self._login.done():
            self._login.cancel()
        protocol = self.manager.protocol
        if protocol is not None and not getattr(protocol, "closed", True):
            with contextlib.suppress(Exception):
                protocol.transport.write(b"Action: Logoff\r\n\r\n")
        with contextlib.suppress(Exception):
            self.manager.close()
        for stream in list(self._streams):
            stream.put(EventStream._END)
        self._streams.clear()

    async def __aenter__(self) -> Ami:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- actions -----------------------------------------------------------------------

    async def action(self, fields: Mapping[str, Any], *, timeout: float | None = None) -> Any:
        """Send one action and return its answer (a panoramisk Message, or a list of
        them for actions answered with several). AmiError when there is no answer
        within `timeout` (default `action_timeout`) seconds, counting any wait for
        a reconnection, or when the connection drops first."""
        name = str(fields.get("Action", "?"))
        limit = self.action_timeout if timeout is None else timeout
        if self._closed or self._login is None:
            raise AmiError(f"AMI is not connected: cannot send {name}")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        if not self._ready.is_set():
            try:
                await asyncio.wait_for(self._ready.wait(), limit)
            except TimeoutError:
                raise AmiError(f"AMI at {self.url.address} is reconnecting: {name} not sent "
                               f"within {limit:g} s") from None
        future: asyncio.Future[Any] = self.manager.send_action(dict(fields))
        self._inflight[future] = name
        log.debug("AMI: sent %s", name)
        try:
            return await asyncio.wait_for(future, max(deadline - loop.time(), 0.001))
        except TimeoutError:
            raise AmiError(f"AMI gave no answer to {name} within {limit:g} s") from None
        finally:
            self._inflight.pop(future, None)

    async def originate(self, number: str, flow: str, *, caller_id: str,
                        variables: Mapping[str, str] | None = None, timeout: float = 30.0,
                        channel_template: str = CHANNEL_TEMPLATE) -> str:
        """Call `number` and, once it answers, run `flow` (dialplan context
        ivr-outbound, which passes the channel to FastAGI with ``IVR_FLOW``).

        `timeout` is how long it may ring. Returns the answered channel's Uniqueid;
        OriginateFailed with the reason in words when it is not answered; ValueError,
        before anything is sent, for a malformed number, flow or variable."""
        fields = originate_action(number, flow, caller_id=caller_id, variables=variables,
                                  timeout=timeout, channel_template=channel_template)
        log.info("AMI: calling %s for flow %s (%s)", mask_number(number), flow, fields["ActionID"])
        # Async: Asterisk answers "queued" at once, then OriginateResponse with the same
        # ActionID once the call is answered or has failed; panoramisk keeps the action
        # open until that event and answers with both messages.
        answer = await self.action(fields, timeout=self.action_timeout + timeout)
        messages = answer if isinstance(answer, list) else [answer]
        outcome = next((m for m in messages if _text(m, "Event") == "OriginateResponse"), None)
        if outcome is None:
            first = messages[0]
            if _text(first, "Response").lower() != "success":
                raise OriginateFailed(f"Asterisk refused the call: {_text(first, 'Message') or 'no reason'}")
            raise AmiError("Asterisk queued the call but sent no OriginateResponse")
        if _text(outcome, "Response").lower() != "success":
            reason = _text(outcome, "Reason")
            text = REASONS.get(reason, f"failed (reason {reason or '?'})")
            log.info("AMI: call to %s not answered: %s", mask_number(number), text)
            raise OriginateFailed(text)
        uniqueid = _text(outcome, "Uniqueid")
        log.info("AMI: call to %s answered: channel %s runs flow %s", mask_number(number), uniqueid, flow)
        return uniqueid

    # -- events ------------------------------------------------------------------------

    def events(self, *names: str) -> AsyncIterator[AmiEvent]:
        """Typed events named `names` (all of EVENTS when none is given), from now on:

        >>> async for event in ami.events("QueueCallerJoin", "Hangup"):
        ...     print(event.describe())
        """
        unknown = sorted(set(names) - set(EVENTS))
        if unknown:
            raise ValueError(f"unknown AMI event {', '.join(unknown)}; known: {', '.join(EVENTS)}")
        stream = EventStream(self, frozenset(names or EVENTS))
        if self._closed:
            stream.put(EventStream._END)
        else:
            self._streams.add(stream)
        return stream

    def _dispatch(self, manager: Any, message: Mapping[str, Any]) -> None:
        event = AmiEvent.from_message(message)
        log.debug("AMI: %s", event.describe())
        for stream in list(self._streams):
            if stream.wants(event):
                stream.put(event)
