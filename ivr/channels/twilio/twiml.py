"""A Turn as TwiML: the prompts inside one `<Gather input="dtmf">` so a key press
interrupts them, then the wait; or the prompts and the end of the call."""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable

from twilio.twiml.voice_response import Enqueue, Gather, VoiceResponse

from ivr.engine import turn as t

#: <Say> language and voice per call language (Amazon Polly voices through Twilio)
VOICES: dict[str, tuple[str, str]] = {
    "zh-CN": ("cmn-CN", "Polly.Zhiyu"),
    "en-US": ("en-US", "Polly.Joanna"),
}

#: the URLs of a prompt's audio files, or None to speak its text
AudioFor = Callable[[t.Segment], tuple[str, ...] | None]


def _speak(target: VoiceResponse | Gather, segment: t.Segment, audio_for: AudioFor | None) -> None:
    urls = audio_for(segment) if audio_for is not None else None
    if urls:
        for url in urls:
            target.play(url)
        return
    language, voice = VOICES.get(segment.language, (segment.language, ""))
    if voice:
        target.say(segment.text, language=language, voice=voice)
    else:
        target.say(segment.text, language=language)


def render(turn: t.Turn, action: str, *, workflow_sid: str = "",
           audio_for: AudioFor | None = None) -> str:
    """The TwiML document for `turn`; a Gather posts its keys to `action`.

    Most turns (menus, requests for input) are the same for every caller, and
    building TwiML costs more than the rest of a webhook's Python, so documents are
    kept for turns that can be keys (a transfer's screen-pop data cannot).
    """
    try:
        return _render_cached(turn, action, workflow_sid, audio_for)
    except TypeError:  # unhashable: a turn carrying a mapping
        return _render(turn, action, workflow_sid, audio_for)


@functools.lru_cache(maxsize=4096)
def _render_cached(turn: t.Turn, action: str, workflow_sid: str, audio_for: AudioFor | None) -> str:
    return _render(turn, action, workflow_sid, audio_for)


def _render(turn: t.Turn, action: str, workflow_sid: str, audio_for: AudioFor | None) -> str:
    response = VoiceResponse()
    wait = turn.wait
    if isinstance(wait, t.Gather):
        if not wait.barge_in:  # heard whole: keys pressed during them are not taken
            for segment in turn.media:
                _speak(response, segment, audio_for)
        gather = Gather(
            input="dtmf", action=action, method="POST", action_on_empty_result=True,
            timeout=max(1, math.ceil(wait.first_digit_timeout)),
            finish_on_key=wait.terminator[:1], num_digits=wait.max_digits,
        )
        if wait.barge_in:
            for segment in turn.media:
                _speak(gather, segment, audio_for)
        response.append(gather)
        return str(response)
    for segment in turn.media:
        _speak(response, segment, audio_for)
    if isinstance(wait, t.Transfer):
        if workflow_sid:
            enqueue = Enqueue(wait.queue, workflow_sid=workflow_sid)
            enqueue.task(json.dumps({**wait.data, "transfer_reason": wait.reason},
                                    ensure_ascii=False, sort_keys=True))
        else:
            enqueue = Enqueue(wait.queue)
        response.append(enqueue)
    else:
        response.hangup()
    return str(response)


def goodbye(language: str, text: str) -> str:
    """For a webhook about a call that is over or unknown: a polite word and hang up."""
    response = VoiceResponse()
    _speak(response, t.Segment("goodbye", language, text), None)
    response.hangup()
    return str(response)


def to_agents(language: str, text: str, queue: str) -> str:
    """For the fallback URL: an apology and the agents' queue."""
    response = VoiceResponse()
    _speak(response, t.Segment("transferring", language, text), None)
    response.enqueue(queue)
    return str(response)
