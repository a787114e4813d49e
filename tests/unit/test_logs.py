"""hisbridge.logs: local times, JSON lines, repeated errors rate-limited with their count, activity lines."""
from __future__ import annotations

import io
import json
import logging
import re

from hisbridge import logs


class Ticks:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _logger(name: str, stream: io.StringIO, fmt: str = "text", clock=None) -> logging.Logger:
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.LocalFormatter(json_lines=fmt == "json"))
    handler.addFilter(logs.RepeatFilter(60.0, clock or Ticks()))
    logger = logging.getLogger(name)
    logger.handlers[:] = [handler]
    logger.propagate, logger.level = False, logging.DEBUG
    return logger


def test_text_lines_carry_shanghai_time_with_offset():
    out = io.StringIO()
    _logger("t.text", out).info("hello %s", "there")
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}\+08:00 INFO    t\.text: hello there\n", out.getvalue())


def test_json_lines_carry_extra_fields():
    out = io.StringIO()
    _logger("t.json", out, "json").info("did %d", 3, extra={"stage": "sink", "rows": 3})
    line = json.loads(out.getvalue())
    assert line["message"] == "did 3" and line["stage"] == "sink" and line["rows"] == 3
    assert line["level"] == "INFO" and line["time"].endswith("+08:00")


def test_an_error_repeated_during_an_outage_is_written_once_a_minute_with_a_count(monkeypatch):
    monkeypatch.setenv("HISBRIDGE_LANG", "en")
    out, ticks = io.StringIO(), Ticks()
    log = _logger("t.repeat", out, clock=ticks)
    for i in range(120 * 90):          # 120 a second for 90 s
        ticks.t = i / 120
        log.error("Kafka unreachable at %s", "127.0.0.1:1")
    ticks.t = 121.0
    log.error("Kafka unreachable at %s", "127.0.0.1:1")
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    assert lines[0].endswith("Kafka unreachable at 127.0.0.1:1")
    assert lines[1].endswith("Kafka unreachable at 127.0.0.1:1 — 7199 more in the last 60 s")
    assert lines[2].endswith(f"— {120 * 90 - 7201} more in the last 61 s")


def test_info_lines_are_never_held_back():
    out = io.StringIO()
    log = _logger("t.info", out)
    for _ in range(5):
        log.info("same")
    assert len(out.getvalue().splitlines()) == 5


def test_activity_writes_one_info_line_per_interval():
    out, ticks = io.StringIO(), Ticks()
    log = _logger("t.activity", out)
    log.setLevel(logging.INFO)
    activity = logs.Activity(log, "transform", every=30.0, clock=ticks)
    for second in range(61):
        ticks.t = float(second)
        activity.add(0.01, raw=10, core=9, quarantined=1)
    activity.flush()
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert "transform: 30 batch(es) in the last 29 s" in lines[1]
    assert "transform: 31 batch(es) in the last 30 s: 310 raw, 279 core, 31 quarantined; busy 0.3 s" in lines[0]


def test_keep_alive_batches_are_not_activity():
    out, ticks = io.StringIO(), Ticks()
    log = _logger("t.idle", out)
    log.setLevel(logging.INFO)
    activity = logs.Activity(log, "sink", every=15.0, clock=ticks)
    for second in range(600):                 # ten idle minutes of heartbeats and marks
        ticks.t = float(second)
        activity.add(0.001, False, events=1, rows=0)
    activity.flush()
    assert out.getvalue() == ""
    activity.add(0.01, True, events=5, rows=5)
    ticks.t = 620.0
    activity.flush()
    (line,) = out.getvalue().splitlines()
    assert "sink: 1 batch(es) in the last 21 s: 5 events, 5 rows; busy 0.0 s" in line


def test_dict_config_quiets_the_kafka_clients_unless_debug():
    assert logs.dict_config("text", "INFO")["loggers"]["aiokafka"] == {"level": "WARNING"}
    assert logs.dict_config("json", "DEBUG")["loggers"] == {}
