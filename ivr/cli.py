"""The `ivr` command: check, run and draw flows."""

from __future__ import annotations

import asyncio
import getpass
import importlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import click

from ivr.flow.diagnostics import Diagnostic, Diagnostics, FlowError
from ivr.speech.catalog import Catalog, find_catalog_folder

if TYPE_CHECKING:
    from ivr.channels.console import ConsoleResult
    from ivr.engine.turn import Gather
    from ivr.flow.model import FlowSet

# Commands import what they need when they run: `ivr prompts build` or `ivr agi` (a
# process per call) should not pay for the bank, SQLAlchemy and the web stack.

FLOW_SUFFIXES = (".yaml", ".yml")


def _catalog_for(flow_path: Path, prompts: Path | None, diags: Diagnostics) -> Catalog | None:
    folder = prompts if prompts is not None else find_catalog_folder(flow_path)
    return None if folder is None else Catalog.load(folder, diags)


def _flow_files(paths: tuple[Path, ...]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            # Prompt catalogs (a prompts/ folder) are YAML too, but not flows.
            files.extend(sorted(
                p for p in path.rglob("*")
                if p.suffix in FLOW_SUFFIXES and "prompts" not in p.relative_to(path).parts[:-1]
            ))
        else:
            files.append(path)
    return files


def check_paths(paths: tuple[Path, ...], prompts: Path | None) -> list[Diagnostic]:
    """Check every flow file found; each problem once, in file order."""
    from ivr.flow.loader import load_flow_set

    found: dict[Diagnostic, None] = {}
    files = _flow_files(paths)
    for file in files:
        diags = Diagnostics()
        catalog = _catalog_for(file, prompts, diags)
        load_flow_set(file, catalog, diags)
        for d in diags.sorted():
            found.setdefault(d, None)
    for d in _returns_outside_subflows(files):
        found.setdefault(d, None)
    for d in _unused_prompts(files, prompts):
        found.setdefault(d, None)
    return sorted(found, key=lambda d: (d.pos, d.message))


#: prompts the engine plays by id itself (the Twilio app's goodbye and hold message)
ENGINE_PROMPTS = frozenset({"goodbye", "transferring"})


def _unused_prompts(files: list[Path], prompts: Path | None) -> list[Diagnostic]:
    """Warn about catalog entries no flow uses. The users of a catalog are every flow
    that finds it (the flows under the catalog's parent folder whose nearest prompts/
    it is), plus the flows checked against it: checking one file does not make the
    rest of the hotline's prompts look unused."""
    from ivr.flow.loader import read_flow_file

    users: dict[Path, set[Path]] = {}
    for file in files:
        folder = prompts if prompts is not None else find_catalog_folder(file)
        if folder is not None:
            users.setdefault(Path(folder).resolve(), set()).add(file.resolve())
    diags = Diagnostics()
    for folder, flow_files in users.items():
        for candidate in _flow_files((folder.parent,)):
            if not any(part.startswith(".") for part in candidate.relative_to(folder.parent).parts) \
                    and find_catalog_folder(candidate) == folder:
                flow_files.add(candidate.resolve())
        used = set(ENGINE_PROMPTS)
        for file in flow_files:
            item = read_flow_file(file, Diagnostics())
            if item is not None:
                used.update(ref.id for ref in item.prompts)
        catalog = Catalog.load(folder, Diagnostics())
        for language in catalog.languages:
            for entry in catalog.entries(language):
                if entry.id not in used:
                    diags.warning(entry.pos, f"prompt '{entry.id}' is not used by any flow "
                                  f"({language})")
    return diags.items


def _returns_outside_subflows(files: list[Path]) -> list[Diagnostic]:
    """Warn about `return` in flows that none of the checked flows calls."""
    from ivr.engine.verbs import REGISTRY
    from ivr.flow.loader import read_flow_file, resolve_subflow

    loaded = {}
    called: set[Path] = set()
    for file in files:
        item = read_flow_file(file, Diagnostics())
        if item is None:
            continue
        loaded[file.resolve()] = item
        for node in item.flow.nodes.values():
            ref = REGISTRY[node.verb].subflow(node.params)
            if ref is not None:
                called.add(resolve_subflow(str(file), ref.path).resolve())
    diags = Diagnostics()
    for path, item in loaded.items():
        if path in called:
            continue
        for node in item.flow.nodes.values():
            if node.verb == "return":
                diags.warning(node.pos, f"no checked flow calls '{item.flow.id}', so its 'return' "
                              "has nothing to return to; run on its own, the call goes to an agent here")
    return diags.items


class _Commands(click.Group):
    """Command groups that live in other modules, imported only when asked for."""

    LAZY: ClassVar[dict[str, str]] = {
            "db": "ivr.bank.cli:db", "bank": "ivr.bank.cli:bank", "switch": "ivr.switch.cli:switch",
            "ami": "ivr.channels.asterisk.ami_cli:ami", "prompts": "ivr.speech.cli:prompts"}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.LAZY})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.LAZY and cmd_name not in self.commands:
            module, _, name = self.LAZY[cmd_name].partition(":")
            self.add_command(getattr(importlib.import_module(module), name), cmd_name)
        return super().get_command(ctx, cmd_name)


@click.group(cls=_Commands)
@click.version_option(package_name="ivr")
def main() -> None:
    """A voice-banking IVR engine: YAML dial plans, checked and run."""


prompts_option = click.option(
    "--prompts", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="Prompt catalog folder (default: the nearest prompts/ above the flow).",
)


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@prompts_option
def check(paths: tuple[Path, ...], prompts: Path | None) -> None:
    """Check flow files or folders; print problems as FILE:LINE:COL."""
    missing = [p for p in paths if not p.exists()]
    for path in missing:
        click.echo(f"{path}:1:1: error: no such file or folder", err=False)
    diagnostics = check_paths(tuple(p for p in paths if p.exists()), prompts)
    for d in diagnostics:
        click.echo(str(d))
    errors = sum(d.severity == "error" for d in diagnostics) + len(missing)
    warnings = sum(d.severity == "warning" for d in diagnostics)
    files = len(_flow_files(tuple(p for p in paths if p.exists())))
    click.echo(f"checked {files} flow file(s): {errors} error(s), {warnings} warning(s)", err=True)
    sys.exit(1 if errors else 0)


def _load_or_exit(flow: Path, prompts: Path | None) -> tuple[FlowSet, Catalog | None]:
    from ivr.flow.loader import load_flows

    diags = Diagnostics()
    catalog = _catalog_for(flow, prompts, diags)
    try:
        flows = load_flows(flow, catalog)
    except FlowError as exc:
        for d in exc.diagnostics:
            click.echo(str(d), err=True)
        click.echo(f"{flow}: the flow has errors; fix them and run 'ivr check {flow}'", err=True)
        sys.exit(1)
    return flows, catalog


def _ask_at_the_terminal(gather: Gather) -> str | None:
    """One entry typed at the terminal; a PIN or card number is not shown as it is typed."""
    try:
        line = getpass.getpass("keys (hidden)> ") if gather.secret else input("keys> ")
    except EOFError:
        return None
    line = line.strip()
    return None if line.lower() in ("h", "hangup", "q") else line


@main.command()
@click.argument("flow", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--caller", default=None, help="The caller's number (caller ID).")
@click.option("--lang", default=None, help="The call's language, such as zh-CN or en-US.")
@click.option("--keys", default=None,
              help="Scripted answers, comma-separated; an empty entry is no input.")
@click.option("--save-restore", is_flag=True,
              help="Send the state through JSON at every wait, as between webhooks.")
@prompts_option
def call(flow: Path, caller: str | None, lang: str | None, keys: str | None,
         save_restore: bool, prompts: Path | None) -> None:
    """Play a call of FLOW in the terminal (against the bank at DATABASE_URL)."""
    from ivr.bank.runtime import BankNotReady, open_services
    from ivr.channels.console import Answers, play_call_async
    from ivr.config import get_settings
    from ivr.engine.interpreter import Interpreter
    from ivr.engine.verbs import uses_services

    flows, catalog = _load_or_exit(flow, prompts)
    if keys is not None:
        bad = sorted({c for c in keys if c not in "0123456789*#,"})
        if bad:
            raise click.BadParameter(f"keys may hold 0-9, * and # only, not {''.join(bad)!r}",
                                     param_hint="--keys")
        answers: Answers = iter(keys.split(","))
    else:
        click.echo("(type the keys and press Enter; an empty line waits without pressing; "
                   "'h' or Ctrl-D hangs up)", err=True)
        answers = _ask_at_the_terminal
    async def run() -> ConsoleResult:
        if not uses_services(flows):
            return await play_call_async(Interpreter(flows, catalog), answers, caller=caller,
                                         language=lang, save_restore=save_restore, echo=click.echo)
        async with open_services(get_settings()) as services:
            return await play_call_async(Interpreter(flows, catalog, services), answers,
                                         caller=caller, language=lang,
                                         save_restore=save_restore, echo=click.echo)

    try:
        result = asyncio.run(run())
    except BankNotReady as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    if not result.ended_normally:
        if result.end_reason == "caller_hangup" and keys is not None:
            click.echo("the scripted keys ran out before the call ended", err=True)
        sys.exit(1)


@main.command()
@click.argument("flow", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["svg", "dot", "mermaid"]), default="svg",
              show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write here instead of standard output.")
def graph(flow: Path, fmt: str, output: Path | None) -> None:
    """Draw FLOW: nodes by verb, edges by outcome, unreachable nodes in red."""
    from ivr.flow.graph import GraphvizMissing, to_dot, to_mermaid, to_svg
    from ivr.flow.loader import read_flow_file

    diags = Diagnostics()
    loaded = read_flow_file(flow, diags)
    if loaded is None:
        for d in diags.sorted():
            click.echo(str(d), err=True)
        sys.exit(1)
    try:
        text = {"dot": to_dot, "mermaid": to_mermaid, "svg": to_svg}[fmt](loaded.flow)
    except GraphvizMissing as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        click.echo(f"wrote {output}", err=True)


@main.group()
def serve() -> None:
    """Serve calls to a telephony platform."""


@serve.command("twilio")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535))
@click.option("--flow", "flow", default=Path("flows/hotline.yaml"), show_default=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Worker processes; they share the call state in the database.")
@prompts_option
def serve_twilio(host: str, port: int, flow: Path, workers: int, prompts: Path | None) -> None:
    """Serve FLOW over Twilio's voice webhooks (POST /twilio/voice, /twilio/gather,
    /twilio/status, /twilio/fallback). Needs TWILIO_AUTH_TOKEN."""
    import os

    import uvicorn

    from ivr.config import get_settings

    _load_or_exit(flow, prompts)  # a flow with errors stops here, with its diagnostics
    settings = get_settings()
    if not settings.twilio_auth_token.get_secret_value():
        click.echo("error: TWILIO_AUTH_TOKEN is not set: it is the auth token of your Twilio "
                   "account, and every webhook is checked against it", err=True)
        sys.exit(1)
    os.environ["IVR_TWILIO_FLOW"] = str(flow.resolve())
    folder = prompts if prompts is not None else find_catalog_folder(flow)
    if folder is not None:
        os.environ["IVR_PROMPTS"] = str(Path(folder).resolve())
    click.echo(f"Twilio webhooks on http://{host}:{port}/twilio/voice ({workers} workers); "
               "point the number's voice URL there (through your public HTTPS address)", err=True)
    uvicorn.run("ivr.channels.twilio.app:app_from_environment", factory=True, host=host,
                port=port, workers=workers, log_level="warning", access_log=False)


def _loaded(flows: tuple[Path, ...], prompts: Path | None) -> list[Any]:
    from ivr.channels.asterisk.serve import Loaded

    loaded = []
    for path in flows:
        flow_set, catalog = _load_or_exit(path, prompts)
        loaded.append(Loaded(path, flow_set, catalog))
    return loaded


def _prompts_folder(flow: Path, prompts: Path | None) -> Path | None:
    return prompts if prompts is not None else find_catalog_folder(flow)


@serve.command("fastagi")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="The address to listen on (only Asterisk should reach it).")
@click.option("--port", default=4573, show_default=True, type=click.IntRange(0, 65535))
@click.option("--flow", "flows", multiple=True, default=(Path("flows/hotline.yaml"),),
              show_default=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A flow to serve (repeat for more); AGI(agi://host/NAME) picks it by its id "
                   "or file name, and the first is the default.")
@click.option("--max-calls", default=1000, show_default=True, type=click.IntRange(1, 100_000),
              help="Calls at once; beyond it a call goes straight back to the dialplan (agents).")
@click.option("--drain", default=30.0, show_default=True, type=click.FloatRange(0, 3600),
              help="On SIGTERM, seconds the calls in progress get to finish.")
@click.option("--twilio-port", default=None, type=click.IntRange(1, 65535),
              help="Also serve Twilio's webhooks on this port (needs TWILIO_AUTH_TOKEN).")
@prompts_option
def serve_fastagi(host: str, port: int, flows: tuple[Path, ...], max_calls: int, drain: float,
                  twilio_port: int | None, prompts: Path | None) -> None:
    """Serve the flows to Asterisk over FastAGI (asterisk-conf/ has the dialplan)."""
    from ivr.bank.runtime import BankNotReady
    from ivr.channels.asterisk.serve import run, serve_fastagi, server_logging
    from ivr.config import get_settings

    call_line = server_logging()
    loaded = _loaded(flows, prompts)
    folder = _prompts_folder(flows[0], prompts)
    try:
        run(lambda: serve_fastagi(get_settings(), loaded, folder, host=host, port=port,
                                  max_calls=max_calls, drain=drain, twilio_port=twilio_port,
                                  announce=lambda line: click.echo(line, err=True),
                                  call_line=call_line))
    except BankNotReady as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except OSError as exc:
        click.echo(f"error: cannot serve on {host}:{port}: {exc.strerror or exc}", err=True)
        sys.exit(1)


@main.group()
def native() -> None:
    """The call's hot path compiled with mypyc: up to a quarter less CPU an AGI command."""


@native.command("build")
@click.option("--if-stale", is_flag=True, help="Only when the build is missing or out of date.")
def native_build(if_stale: bool) -> None:
    """Compile the hot path (needs mypyc, from the dev extra, and a C compiler).
    Processes started afterwards use it; an edited source falls back to Python."""
    from ivr import native as hotpath

    folder = hotpath.default_folder()
    if if_stale and hotpath.check(folder).usable:
        return
    click.echo(f"compiling the hot path into {folder} (about 30 s) ...", err=True)
    try:
        hotpath.build(folder)
    except hotpath.NativeBuildError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    click.echo(f"compiled {len(hotpath.MODULES)} modules: {', '.join(hotpath.MODULES)}", err=True)


@native.command("status")
def native_status() -> None:
    """Whether the compiled hot path is used, and if not, why (exit status 1)."""
    from ivr import native as hotpath

    found = hotpath.status  # what this process found at import, as `ivr serve` would
    click.echo(found.line)
    if not found.usable:
        sys.exit(1)


@main.command("agi")
@click.argument("flow", default=Path("flows/hotline.yaml"),
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@prompts_option
def classic_agi(flow: Path, prompts: Path | None) -> None:
    """Run one call of FLOW as a classic AGI script on stdin/stdout, for dialplans that
    use AGI(script) instead of a FastAGI server. Logs go to stderr, never the keys."""
    import logging

    from ivr.bank.runtime import BankNotReady
    from ivr.channels.asterisk.serve import run_classic_agi
    from ivr.config import get_settings

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="ivr agi: %(levelname)s %(name)s: %(message)s")
    loaded = _loaded((flow,), prompts)[0]
    try:
        run_classic_agi(get_settings(), loaded, _prompts_folder(flow, prompts))
    except BankNotReady as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
