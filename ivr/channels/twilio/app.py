"""`ivr serve twilio`: the flows over Twilio's voice webhooks (a Starlette app).

    POST /twilio/voice     a call comes in (the number's voice URL)
    POST /twilio/gather    the caller's keys for one step (?step=N, set by the app)
    POST /twilio/status    call status callback (the caller hung up, ...)
    POST /twilio/fallback  the number's fallback URL: an apology and the agents' queue
    GET  /twilio/audio/LANG/ID.wav   rendered prompt audio (ID may be _say/WORD or PROMPT/N),
                                     with caching headers
    GET  /healthz

Every POST must carry a valid `X-Twilio-Signature` (403 otherwise, and nothing
changes). The call state lives in the database per CallSid, so any worker serves
any webhook; a webhook answers one step, and a repeated one gets the TwiML stored
for its step without running anything again. Keyed digits are never logged, put in
a URL or stored: the state keeps only what the flow keeps, and secrets not even that.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import urllib.parse
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import Route
from twilio.request_validator import RequestValidator, compare

from ivr.bank.db import make_engine
from ivr.bank.runtime import check_ready, open_services
from ivr.channels.twilio import twiml
from ivr.channels.twilio.store import CallStore
from ivr.clock import Clock, SystemClock
from ivr.config import Settings
from ivr.engine.interpreter import CallEnded, Interpreter, NeedsServices
from ivr.engine.state import CallState
from ivr.engine.turn import CallerHangup, Digits, Event, NoInput, Segment, Turn
from ivr.engine.verbs import uses_services
from ivr.flow.model import FlowSet
from ivr.speech.catalog import Catalog

log = logging.getLogger("ivr.twilio")

XML = "application/xml"
KEYS = re.compile(r"[0-9*#]{0,64}")
ENDED = {"completed", "busy", "failed", "no-answer", "canceled"}
#: how long a repeated webhook waits for the worker serving the same step
WAIT_FOR_OTHER_WORKER = 10.0
#: calls whose state a worker keeps at hand for their next webhook
STATES_KEPT = 20_000


class BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(eq=False)  # compared and hashed by identity (its audio_for keys the TwiML cache)
class TwilioChannel:
    settings: Settings
    interpreter: Interpreter
    store: CallStore
    catalog: Catalog | None
    prompts: Path | None = None
    clock: Clock = SystemClock()

    def __post_init__(self) -> None:
        self.validator = RequestValidator(self.settings.twilio_auth_token.get_secret_value())
        #: CallSid -> (step, state) this worker left each of its recent calls in
        self._states: OrderedDict[str, tuple[int, CallState]] = OrderedDict()

    # --- requests ---------------------------------------------------------------------

    async def params(self, request: Request) -> dict[str, str]:
        """The form Twilio posted, once its signature is checked."""
        if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            # What Twilio posts; parsed here in one call (Starlette's streaming form
            # parser costs a tenth of a webhook).
            body = (await request.body()).decode("utf-8", "replace")
            params = dict(urllib.parse.parse_qsl(body, keep_blank_values=True))
        else:
            form = await request.form()
            params = {key: str(value) for key, value in form.multi_items()}
        base = self.settings.twilio_public_url.rstrip("/")
        url = str(request.url) if not base else base + request.url.path + (
            f"?{request.url.query}" if request.url.query else "")
        signature = request.headers.get("X-Twilio-Signature", "")
        if not signature or not (
                # The URL as it came first (one HMAC); then with and without the port,
                # which Twilio may or may not have signed.
                compare(self.validator.compute_signature(url, params), signature)
                or self.validator.validate(url, params, signature)):
            log.warning("refused %s: the Twilio signature is missing or wrong (checked against "
                        "%s; set IVR_TWILIO_PUBLIC_URL if the app is behind a proxy)",
                        request.url.path, url)
            raise BadRequest(403, "invalid Twilio signature")
        if not params.get("CallSid"):
            raise BadRequest(400, "no CallSid in the request")
        return params

    def _language(self, state: dict[str, object] | None) -> str:
        if state and isinstance(state.get("language"), str):
            return str(state["language"])
        return self.interpreter.flows.entry.language

    def _text(self, prompt: str, language: str, fallback: str) -> str:
        if self.catalog is not None and self.catalog.has(prompt, language):
            return self.catalog.text(prompt, language, {})
        return fallback

    def goodbye(self, state: dict[str, object] | None = None) -> str:
        language = self._language(state)
        return twiml.goodbye(language, self._text("goodbye", language, "Goodbye."))

    def audio_for(self, segment: Segment) -> tuple[str, ...] | None:
        """The URLs of the files that say a segment (one for a plain prompt; a template
        prompt's pieces and composed words otherwise), or None to speak its text: when
        some file was not rendered, or some of the text has no audio (a value said as
        it is)."""
        if self.prompts is None or not segment.complete:
            return None
        base = self.settings.twilio_public_url.rstrip("/")
        folder = self.prompts / "build" / segment.language
        urls = []
        for part in segment.audio:
            if not (folder / f"{part}.wav").is_file():
                return None
            urls.append(f"{base}/twilio/audio/{segment.language}/{part}.wav")
        return tuple(urls)

    def render(self, turn: Turn, step: int) -> str:
        return twiml.render(turn, f"/twilio/gather?step={step}",
                            workflow_sid=self.settings.twilio_workflow_sid,
                            audio_for=self.audio_for)

    # --- webhooks ----------------------------------------------------------------------

    async def voice(self, params: dict[str, str]) -> str:
        """A new call (or Twilio asking again: then the first answer, from `begin`)."""
        sid = params["CallSid"]
        state = self.interpreter.start(sid, caller=params.get("From") or None)
        turn = await self.interpreter.advance_async(state)
        log.info("call %s: started", sid)
        document = self.render(turn, 1)
        served, stored = await self.store.begin(sid, state.to_dict(), turn.ended, document,
                                                self.clock.now())
        if stored and not turn.ended:
            self._remember(sid, 1, state)
        return served

    async def gather(self, params: dict[str, str], step_text: str | None) -> str:
        sid = params["CallSid"]
        if step_text is None or not re.fullmatch(r"[0-9]{1,9}", step_text):
            raise BadRequest(400, "the gather URL needs ?step=N")
        step = int(step_text)
        keys = params.get("Digits", "")
        if not KEYS.fullmatch(keys):
            raise BadRequest(400, "Digits may hold only 0-9, * and #")
        event: Event = NoInput() if not keys else Digits(
            keys, "terminator" if params.get("FinishedOnKey") else "complete")
        quick = await self._pure_step(sid, step, event)
        if quick is not None:
            return quick
        claimed = await self.store.claim(sid, step, self.clock.now())
        if claimed is None:
            return await self._not_claimed(sid, step)
        try:
            state = CallState.from_dict(claimed.state)
            turn = await self.interpreter.advance_async(state, event)
            document = self.render(turn, step + 1)
        except BaseException:
            await self.store.release(sid, step)
            raise
        if not await self.store.advance(sid, step, state.to_dict(), turn.ended, document,
                                        self.clock.now(), claimed_at=claimed.claimed_at):
            return await self._not_claimed(sid, step)
        self._remember(sid, step + 1, state, turn.ended)
        return document

    def _remember(self, sid: str, step: int, state: CallState, ended: bool = False) -> None:
        """Keep the state this worker left the call in, for its next webhook."""
        self._states.pop(sid, None)
        if ended:
            return
        self._states[sid] = (step, state)
        if len(self._states) > STATES_KEPT:
            self._states.popitem(last=False)

    async def _pure_step(self, sid: str, step: int, event: Event) -> str | None:
        """Most steps (a menu choice, keys for the next question) touch neither the bank
        nor the switch. When this worker left the call at `step`, such a step is run
        from the state it kept and stored in one go, without claiming it first: a copy
        of the webhook computes the same thing, and only one is stored. None when the
        step needs the bank or the switch, or the state is not at hand."""
        kept = self._states.get(sid)
        if kept is None or kept[0] != step:
            return None
        # A copy: the kept state must stay as it is until the move is stored, for a
        # twin of this webhook may run from it meanwhile.
        state = kept[1].copy()
        try:
            turn = self.interpreter.advance(state, event)
        except NeedsServices:
            return None
        except CallEnded:
            self._states.pop(sid, None)
            return await self._not_claimed(sid, step)
        document = self.render(turn, step + 1)
        try:
            moved = await self.store.advance(sid, step, state.to_dict(), turn.ended, document,
                                             self.clock.now(), claimed_at=None)
        except BaseException:
            self._states.pop(sid, None)
            raise
        if not moved:
            self._states.pop(sid, None)
            return await self._not_claimed(sid, step)
        self._remember(sid, step + 1, state, turn.ended)
        return document

    async def _not_claimed(self, sid: str, step: int) -> str:
        """Why the step could not be taken, and the answer for it."""
        served = await self.store.served(sid, step + 1)
        if served is not None:
            log.info("call %s: step %d asked again; the same answer", sid, step)
            return served
        call = await self.store.load(sid)
        if call is not None and call.step > step:
            # Served while we looked (a copy of this webhook, on another task or worker).
            served = await self.store.served(sid, step + 1)
            if served is not None:
                return served
        if call is None or call.finished:
            return self.goodbye(None if call is None else call.state)
        if step != call.step:
            raise BadRequest(409, f"step {step} is not the call's current step ({call.step})")
        return await self._served_by_another(sid, step)

    async def _served_by_another(self, sid: str, step: int) -> str:
        """Another worker serves this step now: give its answer when it is stored."""
        loop = asyncio.get_running_loop()
        until = loop.time() + WAIT_FOR_OTHER_WORKER
        while loop.time() < until:
            served = await self.store.served(sid, step + 1)
            if served is not None:
                return served
            await asyncio.sleep(0.05)
        raise BadRequest(503, "the step is being served by another worker")

    async def status(self, params: dict[str, str]) -> None:
        sid = params["CallSid"]
        if params.get("CallStatus") not in ENDED:
            return
        call = await self.store.load(sid)
        if call is None or call.finished:
            return
        self._states.pop(sid, None)
        if await self.store.claim(sid, call.step, self.clock.now()) is None:
            return  # a worker is serving a webhook of the call; it ends the call itself
        try:
            state = CallState.from_dict(call.state)
            await self.interpreter.advance_async(state, CallerHangup())
        except Exception:
            log.exception("call %s: ending it after the caller hung up failed", sid)
            await self.store.release(sid, call.step)
            return
        await self.store.finish(sid, call.step, state.to_dict(), self.clock.now())
        log.info("call %s: ended (%s)", sid, params.get("CallStatus"))

    async def fallback(self, params: dict[str, str]) -> str:
        call = await self.store.load(params["CallSid"])
        language = self._language(None if call is None else call.state)
        log.error("call %s: Twilio used the fallback URL (error %s)", params["CallSid"],
                  params.get("ErrorCode", "?"))
        return twiml.to_agents(language,
                               self._text("transferring", language, "Please hold for an agent."),
                               self.interpreter.fallback_queue)


def routes(opened: dict[str, TwilioChannel]) -> list[Route]:
    """The app's routes; `opened["channel"]` is set when the app has started."""

    async def handle(request: Request) -> Response:
        channel = opened["channel"]
        try:
            params = await channel.params(request)
            path = request.url.path
            if path == "/twilio/voice":
                return Response(await channel.voice(params), media_type=XML)
            if path == "/twilio/gather":
                return Response(await channel.gather(params, request.query_params.get("step")),
                                media_type=XML)
            if path == "/twilio/status":
                await channel.status(params)
                return Response(status_code=204)
            return Response(await channel.fallback(params), media_type=XML)
        except BadRequest as exc:
            return PlainTextResponse(str(exc), status_code=exc.status)

    async def audio(request: Request) -> Response:
        channel = opened["channel"]
        language, name = request.path_params["language"], request.path_params["name"]
        # a prompt id, or a template's piece or a composer's word under it ("_say/n5")
        if channel.prompts is None or not re.fullmatch(r"[A-Za-z-]+", language) \
                or not re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*(/[A-Za-z0-9_-][A-Za-z0-9_.-]*)?", name):
            return PlainTextResponse("not found", status_code=404)
        path = channel.prompts / "build" / language / f"{name}.wav"
        if not path.is_file():
            return PlainTextResponse("not found", status_code=404)
        return FileResponse(path, media_type="audio/wav",
                            headers={"Cache-Control": "public, max-age=86400"})

    async def health(request: Request) -> Response:
        return PlainTextResponse("ok")

    posts = ["/twilio/voice", "/twilio/gather", "/twilio/status", "/twilio/fallback"]
    return [*(Route(path, handle, methods=["POST"]) for path in posts),
            Route("/twilio/audio/{language}/{name:path}.wav", audio, methods=["GET"]),
            Route("/healthz", health, methods=["GET"])]


def create_app(settings: Settings, flows: FlowSet, catalog: Catalog | None,
               prompts: Path | None = None, clock: Clock | None = None) -> Starlette:
    """The ASGI app; the database and the bank are opened when it starts."""
    if not settings.twilio_auth_token.get_secret_value():
        raise ValueError("TWILIO_AUTH_TOKEN is not set: it is the auth token of your Twilio "
                         "account (Console > Account > API keys & tokens), and every webhook "
                         "is checked against it")
    opened: dict[str, TwilioChannel] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            engine = make_engine(settings.database_url)
            stack.push_async_callback(engine.dispose)
            await check_ready(engine, settings.database_url, need_customers=False)
            services = None
            if uses_services(flows):
                services = await stack.enter_async_context(open_services(settings, clock))
            store = CallStore(engine)
            stack.callback(store.close)
            channel = TwilioChannel(settings, Interpreter(flows, catalog, services),
                                    store, catalog, prompts, clock or SystemClock())
            opened["channel"] = channel
            yield

    return Starlette(routes=routes(opened), lifespan=lifespan)


def app_from_environment() -> Starlette:
    """For `uvicorn --factory` (one app per worker): the flow in IVR_TWILIO_FLOW, the
    prompt catalog in IVR_PROMPTS (default: the nearest prompts/ above the flow)."""
    import os

    from ivr.config import get_settings
    from ivr.flow.loader import load_flows
    from ivr.speech.catalog import find_catalog_folder

    flow = Path(os.environ.get("IVR_TWILIO_FLOW", "flows/hotline.yaml"))
    folder = Path(os.environ["IVR_PROMPTS"]) if os.environ.get("IVR_PROMPTS") \
        else find_catalog_folder(flow)
    catalog = Catalog.load(folder) if folder is not None else None
    return create_app(get_settings(), load_flows(flow, catalog), catalog, folder)
