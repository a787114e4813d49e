"""`hisbridge worker`: run the Faust app (foreground, or --background with a pid file under var/run)."""
from __future__ import annotations

import click
from hisbridge.cli.common import command, pass_settings
from hisbridge.messages import text
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


@command("worker", help="worker.help")
@click.option("--loglevel", default=None, help="worker.loglevel")
@click.option("--background", is_flag=True, help="worker.background")
@pass_settings
def cli(settings: Settings, loglevel: str, background: bool) -> None:
    if background:
        from devstack.worker import Worker
        worker = Worker(settings)
        click.echo(text("worker.started" if worker.start_background() else "worker.running",
                        pid=worker.pid(), log=worker.log))
        return
    run_foreground(loglevel, settings)


if __name__ == "__main__":
    from hisbridge.cli.errors import run_entry_point
    run_entry_point(run_foreground)
