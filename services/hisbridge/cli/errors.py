"""Any exception that reaches the top of `hisbridge` → the OperatorError an operator reads.

Commands raise OperatorError themselves where they know the situation best (a table name, a batch name, an
address); this is the net under them: click's own usage errors, the library errors that already name what
is wrong (a bad catalog, mapping, schedule, SM4 key, an unreachable HIS), the Kafka client's "no brokers",
and — last — anything else as an internal error, still in one line.
"""
from __future__ import annotations

from typing import Callable

import click
from hisbridge.messages import EXIT_CHECK_FAILED, EXIT_USAGE, Both, OperatorError


def split_bilingual(text: str) -> tuple[str, str]:
    """"中文 / English" (the settings' and the quality reasons' spelling) → (zh, en); one language → both."""
    zh, sep, en = text.partition(" / ")
    return (zh, en) if sep and any("\u4e00" <= ch <= "\u9fff" for ch in zh) else (text, text)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:300] if lines else type(exc).__name__


def _library_error(exc: Exception) -> OperatorError | None:
    from hisbridge.catalog import CatalogError
    from hisbridge.chain.batch import BatchError
    from hisbridge.chain.crypto import Sm4ConfigError
    from hisbridge.chain.mapping import MappingError
    from hisbridge.delivery.schedule import ScheduleError
    from hisbridge.hisdb import HisConnectionError
    from hisbridge.ops.connectors import ConnectorError
    from hisbridge.settings import SettingsError

    detail = _first_line(exc)
    if isinstance(exc, SettingsError):
        return OperatorError("settings.invalid", detail=Both(*split_bilingual(detail)))
    by_type = ((CatalogError, "catalog.invalid"), (MappingError, "mapping.invalid"),
               (ScheduleError, "schedule.invalid"), (Sm4ConfigError, "crypto.key"), (ConnectorError, "connectors.error"))
    for kind, message_id in by_type:
        if isinstance(exc, kind):
            return OperatorError(message_id, detail=detail)
    if isinstance(exc, BatchError):
        return OperatorError("schedule.invalid", detail=detail)
    if isinstance(exc, HisConnectionError):
        from hisbridge.cli.common import current_settings
        from hisbridge.settings import is_binlog_kind
        knob = "HISBRIDGE_HIS_MARIADB_DSN" if is_binlog_kind(current_settings().source.kind) else "HISBRIDGE_HIS_DSN"
        return OperatorError("reach.his", address=exc.address, detail=exc.detail, knob=knob)
    return _kafka_error(exc)


def _kafka_error(exc: Exception) -> OperatorError | None:
    from kafka.errors import KafkaConnectionError, KafkaTimeoutError, NoBrokersAvailable
    if isinstance(exc, (NoBrokersAvailable, KafkaConnectionError, KafkaTimeoutError)):
        from hisbridge.cli.common import current_settings
        return OperatorError("reach.kafka", address=current_settings().connections.kafka_bootstrap,
                             detail=_first_line(exc))
    return None


def operator_error(exc: Exception, prog: str = "hisbridge") -> OperatorError:
    if isinstance(exc, OperatorError):
        return exc
    if isinstance(exc, click.UsageError):
        ctx = exc.ctx
        command = ctx.command_path if ctx is not None else prog
        return OperatorError("cli.usage", exit_code=EXIT_USAGE, detail=exc.format_message(), command=command)
    if isinstance(exc, click.ClickException):
        return OperatorError("cli.usage", exit_code=exc.exit_code, detail=exc.format_message(), command=prog)
    if isinstance(exc, click.Abort):
        return OperatorError("cli.interrupted", exit_code=EXIT_CHECK_FAILED)
    try:
        found = _library_error(exc)
    except Exception:  # noqa: BLE001 — the net must not tear (e.g. settings unreadable while naming Kafka)
        found = None
    return found or OperatorError("cli.internal", exit_code=EXIT_CHECK_FAILED, kind=type(exc).__name__,
                                  detail=_first_line(exc))


def run_entry_point(entry: Callable[[], object], debug: bool = False) -> None:
    """A process started as `python -m hisbridge.cli.x` (the background worker): the same one-or-two-line
    error and exit code as the `hisbridge` command."""
    import sys
    import traceback
    try:
        entry()
    except Exception as exc:  # noqa: BLE001 — the process's last word
        if debug:
            traceback.print_exc()
        error = operator_error(exc)
        click.echo(error.text(), err=True)
        sys.exit(error.exit_code)
