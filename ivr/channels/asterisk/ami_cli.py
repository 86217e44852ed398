"""`ivr ami`: follow queue and hang-up events, place an outbound call."""

from __future__ import annotations

import asyncio
import os

import click

from ivr.channels.asterisk.ami import EVENTS, Ami, AmiError, AmiUrl, OriginateFailed

url_option = click.option("--url", default=None,
                          help="ami://USER:SECRET@HOST:5038 (default: $IVR_AMI_URL).")


def _url(url: str | None) -> AmiUrl:
    text = url or os.environ.get("IVR_AMI_URL", "")
    if not text:
        raise click.UsageError("set IVR_AMI_URL=ami://user:secret@host:5038 (manager.conf's user)")
    try:
        return AmiUrl.parse(text)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


@click.group()
def ami() -> None:
    """Asterisk's manager interface (AMI)."""


@ami.command()
@url_option
@click.option("--queue", default=None, help="Only this queue's events (and hang-ups).")
@click.option("--count", default=0, type=click.IntRange(0), help="Stop after this many events.")
def events(url: str | None, queue: str | None, count: int) -> None:
    """Print queue and hang-up events as they come (caller numbers masked)."""
    async def follow() -> None:
        client = Ami(_url(url))
        await client.connect()
        seen = 0
        try:
            async for event in client.events(*EVENTS):
                if queue and event.queue not in ("", queue):
                    continue
                click.echo(event.describe())
                seen += 1
                if count and seen >= count:
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
@click.option("--flow", required=True, help="The flow to run when the call is answered.")
@click.option("--caller-id", default="95558", show_default=True)
@url_option
def originate(number: str, flow: str, caller_id: str, url: str | None) -> None:
    """Call NUMBER and run FLOW when it answers (dialplan context ivr-outbound)."""
    async def place() -> str:
        client = Ami(_url(url))
        await client.connect()
        try:
            return await client.originate(number, flow, caller_id=caller_id)
        finally:
            await client.close()

    try:
        uniqueid = asyncio.run(place())
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    except OriginateFailed as exc:
        raise click.ClickException(f"the call was not answered: {exc}") from None
    except AmiError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"answered; channel {uniqueid} runs flow {flow}")
