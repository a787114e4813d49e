"""`hisbridge worker`: run the Faust app (foreground, or --background with a pid file under var/run)."""
from __future__ import annotations

import click
from hisbridge.cli.common import pass_settings
from hisbridge.settings import Settings, load_settings


def run_foreground(loglevel: str, settings: Settings | None = None) -> None:
    """The worker process's entry point: settings resolved here when the process was started by another."""
    from faust.worker import Worker
    from hisbridge.runtime.app import make_app, register_stages
    settings = settings or load_settings()
    app = make_app(settings)
    register_stages(app, settings)
    Worker(app, loglevel=loglevel).execute_from_commandline()


@click.command("worker")
@click.option("--loglevel", default="info", show_default=True)
@click.option("--background", is_flag=True, help="detach; log to var/log/worker.log, stop with `stack down worker`")
@pass_settings
def cli(settings: Settings, loglevel: str, background: bool) -> None:
    """Run the Faust worker against the local (or configured) broker."""
    if background:
        from devstack.worker import Worker
        worker = Worker(settings)
        click.echo("worker: started" if worker.start_background() else "worker: already running")
        click.echo(f"worker: pid {worker.pid()}, log {worker.log}")
        return
    run_foreground(loglevel, settings)


if __name__ == "__main__":
    run_foreground("info")
