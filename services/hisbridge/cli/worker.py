"""`hisbridge worker`: run the Faust app (foreground, or --background with a pid file under var/run)."""
from __future__ import annotations

import click


def run_foreground(loglevel: str) -> None:
    from faust.worker import Worker

    from hisbridge.app import app, load_agents
    load_agents()
    Worker(app, loglevel=loglevel).execute_from_commandline()


@click.command("worker")
@click.option("--loglevel", default="info", show_default=True)
@click.option("--background", is_flag=True, help="detach; log to var/log/worker.log, stop with `stack down worker`")
def cli(loglevel: str, background: bool) -> None:
    """Run the Faust worker against the local (or configured) broker."""
    if background:
        from hisbridge.stack import procs, worker
        click.echo("worker: started" if worker.start_background() else "worker: already running")
        click.echo(f"worker: pid {worker.pid()}, log {procs.log_file(worker.NAME)}")
        return
    run_foreground(loglevel)


if __name__ == "__main__":
    run_foreground("info")
