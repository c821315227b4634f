"""``adw web``: the web console from the store alone (no coordinator in this process).

Starlette, Jinja2 and uvicorn are imported inside the command: ``adw --help`` and every other
command never load them.
"""

from __future__ import annotations

import logging
import signal
import sys

import click

from adw_modules.config.schema import ConfigError
from adws.cli import config_error_exit, context_for


@click.command("web")
@click.option(
    "--listen",
    default=None,
    help='HOST:PORT (default: [web] listen, else "127.0.0.1:8484"; port 0: any free one).',
)
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None)
def web_cmd(listen: str | None, config_path: str | None) -> None:
    """Serve the web console from the store (read-only while no coordinator runs).  Ctrl-C stops."""
    from adw_modules.config.web import DEFAULT_LISTEN, parse_listen
    from adw_modules.ops.logs import setup_logging
    from adws.stores import open_store
    from adws.web.server import ConsoleServer, bind, config_reloader, make_console

    setup_logging("text")
    ctx = context_for(config_path)
    config = ctx.config()
    address = config.web.listen or DEFAULT_LISTEN
    if listen is not None:
        parsed = parse_listen(listen, any_port=True)
        if parsed is None:
            raise click.BadParameter(f'"{listen}" is not HOST:PORT, e.g. 127.0.0.1:8484', param_hint="--listen")
        address = parsed
    log = logging.getLogger("adw.web")

    def rejected(exc: ConfigError) -> None:
        for issue in exc.issues:
            log.error(f"config not reloaded: {issue}")

    try:
        store = open_store(config)
        try:
            console = make_console(config, store, config_of=config_reloader(ctx.config_path, config, rejected))
            server = ConsoleServer(console, bind(address, config, console.auth.loopback_only))
        except BaseException:
            store.close()
            raise
    except ConfigError as exc:
        config_error_exit(exc)
    click.echo(f"adw web console on {server.url}")
    if console.auth.run_token_path is not None:
        click.echo(f"no token configured: log in read-only with the token in {console.auth.run_token_path}")
    # uvicorn catches SIGINT/SIGTERM to shut down, then raises the signal again for whatever
    # handler was there before: this one, so a stopped console exits 0 (not -15).
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: sys.exit(0))
    try:
        server.run()
    finally:
        store.close()
