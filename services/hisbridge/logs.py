"""Logging for the worker and the CLI, configured in one place (`configure`, or `dict_config` for Faust's
worker, which installs logging itself).

- Times are Asia/Shanghai with the offset (`2026-12-02 02:26:15.123+08:00`), like everything a person reads.
- `display.log_format`: `text` (one readable line) or `json` (one JSON object a line: time, level, logger,
  message, and the record's `extra` fields).
- `display.log_level`: INFO by default; watermark marks and per-partition or per-batch detail are DEBUG.
- `RepeatFilter`: the same warning or error (same logger, same message template) is written once per
  `window` seconds; the next one after the window says how many were held back ("…, 118 more in the last
  60 s"). A broker outage then writes a line a minute per kind of failure, not a hundred a second.
- `Activity`: what a stage did, one INFO line per interval (records in, out, quarantined, busy seconds)
  however many batches it handled; each batch is a DEBUG line.
"""
from __future__ import annotations

import json
import logging
import logging.config
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import IO, Any, Callable

from hisbridge.clock import local_text

REPEAT_WINDOW = 60.0
ACTIVITY_EVERY = 15.0
# third-party loggers that narrate every connection, rebalance and service start/stop at INFO (40 lines a
# start and stop of the worker); their warnings still pass, and faust.worker keeps Starting/Ready/Stopping
QUIET = {name: "WARNING" for name in ("aiokafka", "kafka", "mode", "faust.app", "faust.agents", "faust.assignor",
                                      "faust.sensors", "faust.tables", "faust.transport")}
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def _time(record: logging.LogRecord) -> str:
    return local_text(datetime.fromtimestamp(record.created, timezone.utc), "milliseconds")


class LocalFormatter(logging.Formatter):
    """Text or JSON lines, times in Asia/Shanghai."""

    def __init__(self, json_lines: bool = False) -> None:
        super().__init__()
        self.json_lines = json_lines

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if self.json_lines:
            out: dict[str, Any] = {"time": _time(record), "level": record.levelname, "logger": record.name,
                                   "message": message}
            out.update({k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")})
            if record.exc_info:
                out["exception"] = self.formatException(record.exc_info)
            return json.dumps(out, ensure_ascii=False, default=str)
        line = f"{_time(record)} {record.levelname:<7} {record.name}: {message}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


@dataclass
class _Seen:
    since: float
    held_back: int = 0


class RepeatFilter(logging.Filter):
    """Warnings and errors: the first of a kind passes, repeats within `window` are counted, not written."""

    def __init__(self, window: float = REPEAT_WINDOW, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.window, self.clock = window, clock
        self.seen: dict[tuple[str, int, str], _Seen] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key, now = (record.name, record.levelno, str(record.msg)), self.clock()
        seen = self.seen.get(key)
        if seen is not None and now - seen.since < self.window:
            seen.held_back += 1
            return False
        if seen is not None and seen.held_back:
            from hisbridge.messages import render
            suffix = render("log.repeated", {"count": seen.held_back, "seconds": round(now - seen.since)},
                            joiner=" / ")
            record.msg, record.args = f"{record.getMessage()} — {suffix}", None
            record.repeated = seen.held_back
        self.seen[key] = _Seen(now)
        return True


def dict_config(log_format: str = "text", level: str = "INFO", stream: IO[str] | None = None) -> dict[str, Any]:
    """The logging configuration (logging.config.dictConfig form) for `display.log_format/_level`."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"hisbridge": {"()": LocalFormatter, "json_lines": log_format == "json"}},
        "filters": {"repeats": {"()": RepeatFilter}},
        "handlers": {"default": {"class": "logging.StreamHandler", "formatter": "hisbridge",
                                 "filters": ["repeats"], "stream": stream or sys.stdout}},
        "root": {"level": level, "handlers": ["default"]},
        "loggers": {name: {"level": quiet} for name, quiet in QUIET.items() if level != "DEBUG"},
    }


def configure(display: Any, stream: IO[str] | None = None) -> None:
    """Install the configuration of a Settings' `display` section (a CLI command, a tool)."""
    logging.config.dictConfig(dict_config(display.log_format, display.log_level, stream))


@dataclass
class Activity:
    """One stage's work, summed over batches and written as one INFO line every `every` seconds."""
    logger: logging.Logger
    stage: str
    every: float = ACTIVITY_EVERY
    clock: Callable[[], float] = time.monotonic
    counts: dict[str, int] = field(default_factory=dict)
    batches: int = 0
    busy: float = 0.0
    since: float | None = None

    def add(self, seconds: float, work: bool = True, **counts: int) -> None:
        """One batch; `work=False` for a keep-alive one (heartbeats or watermark marks only), which is not
        activity: an idle worker would otherwise write a line every `every` seconds for ever."""
        if not work:
            return
        now = self.clock()
        if self.since is None:
            self.since = now
        self.batches += 1
        self.busy += seconds
        for name, n in counts.items():
            self.counts[name] = self.counts.get(name, 0) + n
        self.logger.debug("%s batch: %s in %.3f s", self.stage, _counts(counts), seconds)
        if now - self.since >= self.every:
            self.flush()

    def flush_if_due(self) -> None:
        if self.since is not None and self.clock() - self.since >= self.every:
            self.flush()

    def flush(self) -> None:
        """Write the summary now (also at shutdown), if anything was done since the last one."""
        if not self.batches:
            return
        self.logger.info("%s: %d batch(es) in the last %.0f s: %s; busy %.1f s", self.stage, self.batches,
                         self.clock() - (self.since if self.since is not None else self.clock()), _counts(self.counts), self.busy,
                         extra={"stage": self.stage, "batches": self.batches, "busy_s": round(self.busy, 3),
                                **self.counts})
        self.counts, self.batches, self.busy, self.since = {}, 0, 0.0, None


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {name}" for name, n in counts.items())
