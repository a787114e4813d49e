"""`hisbridge worker`: run the Faust app (foreground, or --background with a pid file under var/run)."""
from __future__ import annotations

import click
from hisbridge.cli.common import command, pass_settings
from hisbridge.messages import OperatorError, text
from hisbridge.settings import Settings, load_settings


def run_foreground(loglevel: str | None = None, settings: Settings | None = None) -> None:
    """The worker process's entry point: settings resolved here when the process was started by another.
    Kafka is probed first: unreachable, the worker says so in one line instead of retrying for 30 s and
    dying with a traceback."""
    from faust.worker import Worker
    from hisbridge import logs
    from hisbridge.ops.reach import require_kafka
    from hisbridge.runtime.app import make_app, register_stages
    settings = settings or load_settings()
    require_kafka(settings.connections.kafka_bootstrap)
    level = (loglevel or settings.display.log_level).upper()
    app = make_app(settings)
    register_stages(app, settings)
    Worker(app, loglevel=level, logging_config=logs.dict_config(settings.display.log_format, level),
           quiet=True).execute_from_commandline()


def start_background(settings: Settings, wait: float) -> None:
    """Spawn the worker and say "started" only once its /health answers; else the reason from its log, exit 2."""
    from devstack.procs import StackError
    from devstack.worker import Worker
    worker = Worker(settings)
    since = worker.log_size()
    if not worker.start_background():
        click.echo(text("worker.running", pid=worker.pid(), log=worker.log))
        return
    if not settings.worker.web_port:
        click.echo(text("worker.spawned_unconfirmed", pid=worker.pid(), log=worker.log))
        return
    try:
        worker.wait_healthy(wait, since)
    except StackError as exc:
        worker.stop()
        raise OperatorError("worker.start_failed", reason=str(exc), log=worker.log) from None
    click.echo(text("worker.started", pid=worker.pid(), log=worker.log))


@command("worker", help="worker.help")
@click.option("--loglevel", default=None, help="worker.loglevel")
@click.option("--background", is_flag=True, help="worker.background")
@click.option("--wait", default=120.0, show_default=True, help="worker.wait")
@pass_settings
def cli(settings: Settings, loglevel: str, background: bool, wait: float) -> None:
    if background:
        start_background(settings, wait)
        return
    run_foreground(loglevel, settings)


if __name__ == "__main__":
    from hisbridge.cli.errors import run_entry_point
    run_entry_point(run_foreground)
