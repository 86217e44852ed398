"""`ivr ami`: follow queue and hang-up events, place an outbound call."""

from __future__ import annotations

import asyncio
import os

import click

from ivr.channels.asterisk.ami import (
    CHANNEL_TEMPLATE,
    EVENTS,
    Ami,
    AmiError,
    AmiEvent,
    AmiUrl,
    Hangup,
    OriginateFailed,
    QueueEvent,
    originate_action,
)

URL_ENV = "IVR_AMI_URL"

url_option = click.option("--url", default=None, metavar="ami://USER:SECRET@HOST:5038",
                          help=f"Where AMI listens (default: ${URL_ENV}).")


def _url(url: str | None) -> AmiUrl:
    text = url or os.environ.get(URL_ENV, "")
    if not text:
        raise click.UsageError(f"set {URL_ENV}=ami://user:secret@host:5038 (or pass --url)")
    try:
        return AmiUrl.parse(text)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


@click.group()
def ami() -> None:
    """Asterisk's manager interface (AMI): events and outbound calls."""


class _QueueFilter:
    """A queue's events, and the hang-ups of the channels seen in it."""

    def __init__(self, queue: str | None) -> None:
        self.queue = queue
        self.channels: set[str] = set()

    def __call__(self, event: AmiEvent) -> bool:
        if self.queue is None:
            return True
        if isinstance(event, QueueEvent):
            if event.queue != self.queue:
                return False
            self.channels.add(event.uniqueid or event.channel)
            return True
        if isinstance(event, Hangup):
            key = event.uniqueid or event.channel
            if key in self.channels:
                self.channels.discard(key)
                return True
        return False


@ami.command()
@url_option
@click.option("--queue", default=None, help="Only this queue's events (and its callers' hang-ups).")
@click.option("--count", default=0, type=click.IntRange(0), help="Stop after this many events (0: never).")
def events(url: str | None, queue: str | None, count: int) -> None:
    """Print queue and hang-up events as they come, one line each (numbers masked)."""
    parsed = _url(url)
    keep = _QueueFilter(queue)

    async def follow() -> None:
        client = Ami(parsed)
        stream = client.events(*EVENTS)  # before logging in: the first events are not missed
        await client.connect()
        click.echo(f"following {', '.join(EVENTS)} at {parsed.address}", err=True)
        shown = 0
        try:
            async for event in stream:
                if not keep(event):
                    continue
                click.echo(event.describe())
                shown += 1
                if count and shown >= count:
                    return
        finally:
            await client.close()

    try:
        asyncio.run(follow())
    except AmiError as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:
        pass


@ami.command()
@click.argument("number")
@click.option("--flow", required=True, help="The flow to run once the call is answered.")
@click.option("--caller-id", default="95558", show_default=True, help="The number the customer sees.")
@click.option("--timeout", default=30.0, show_default=True, type=click.FloatRange(min=1),
              help="Seconds to let it ring.")
@click.option("--channel", "channel_template", default=CHANNEL_TEMPLATE, show_default=True,
              help="The channel to dial, {number} standing for NUMBER.")
@url_option
def originate(number: str, flow: str, caller_id: str, timeout: float, channel_template: str,
              url: str | None) -> None:
    """Call NUMBER and run FLOW once it answers (dialplan context ivr-outbound)."""
    parsed = _url(url)

    try:  # a malformed number or flow is refused before connecting
        originate_action(number, flow, caller_id=caller_id, timeout=timeout,
                         channel_template=channel_template)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None

    async def place() -> str:
        client = Ami(parsed)
        try:
            await client.connect()
            return await client.originate(number, flow, caller_id=caller_id, timeout=timeout,
                                          channel_template=channel_template)
        finally:
            await client.close()

    try:
        uniqueid = asyncio.run(place())
    except OriginateFailed as exc:
        raise click.ClickException(f"the call was not answered: {exc}") from None
    except AmiError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"answered: channel {uniqueid} runs flow {flow}")
