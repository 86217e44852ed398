"""`ivr switch ...`: the central switch as a process of its own."""

from __future__ import annotations

import asyncio
import logging
import signal

import click
from sqlalchemy.ext.asyncio import AsyncEngine

from ivr.bank.cli import with_bank
from ivr.config import Settings
from ivr.switch.iso8583.server import SwitchServer
from ivr.switch.ledger import LedgerSwitch


@click.group()
def switch() -> None:
    """The central switch: the bank's ledger behind ISO 8583 over TCP."""


@switch.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8583, show_default=True, type=click.IntRange(0, 65535),
              help="TCP port (0 picks a free one and prints it).")
@click.option("--drain", default=10.0, show_default=True, type=float,
              help="Seconds to let requests in progress finish on SIGTERM or Ctrl-C.")
def switch_serve(host: str, port: int, drain: float) -> None:
    """Answer ISO 8583 requests from the ledger at DATABASE_URL.

    Point an engine at it with SWITCH_URL=iso8583://HOST:PORT.
    """
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    async def serve(engine: AsyncEngine, settings: Settings) -> None:
        ledger = LedgerSwitch(engine, settings)
        server = SwitchServer(ledger)
        try:
            bound_host, bound_port = await server.start(host, port)
        except OSError as exc:
            ledger.close()
            raise click.ClickException(
                f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        click.echo(f"switch listening on {bound_host}:{bound_port} "
                   f"(SWITCH_URL=iso8583://{bound_host}:{bound_port})", err=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        click.echo("stopping: no new connections; finishing requests in progress", err=True)
        await server.stop(drain)
        ledger.close()

    with_bank(serve, need_customers=False)
