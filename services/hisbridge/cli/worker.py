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


def start_background(settings: Settings, wait: float) -> None:
    """Spawn the worker and say "started" only once its /health answers; else the reason, exit 1."""
    from devstack.procs import StackError
    from devstack.worker import Worker
    worker = Worker(settings)
    since = worker.log_size()
    if not worker.start_background():
        click.echo(f"worker: already running (pid {worker.pid()}, log {worker.log})")
        return
    if not settings.worker.web_port:
        click.echo(f"worker: spawned, pid {worker.pid()}, log {worker.log} (web port 0: no /health to confirm it)")
        return
    try:
        worker.wait_healthy(wait, since)
    except StackError as exc:
        worker.stop()
        raise click.ClickException(f"{exc}\n日志 / log: {worker.log}") from None
    click.echo(f"worker: started, pid {worker.pid()}, /health on port {settings.worker.web_port}, log {worker.log}")


@click.command("worker")
@click.option("--loglevel", default="info", show_default=True)
@click.option("--background", is_flag=True, help="detach; log to var/log/worker.log, stop with `stack down worker`")
@click.option("--wait", default=120.0, show_default=True, help="seconds --background waits for the worker's /health")
@pass_settings
def cli(settings: Settings, loglevel: str, background: bool, wait: float) -> None:
    """Run the Faust worker against the local (or configured) broker."""
    if background:
        start_background(settings, wait)
        return
    run_foreground(loglevel, settings)


if __name__ == "__main__":
    run_foreground("info")
