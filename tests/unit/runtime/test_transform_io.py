"""The transform's produce step: a record the broker (or the producer's own size limit) refuses as too large
becomes an `oversize` quarantine entry, the rest of the batch goes out, and the worker does not stop; any
other send error still fails the batch (nothing committed, re-read after a restart)."""
from __future__ import annotations

import asyncio
import json

import pytest
from aiokafka.errors import KafkaTimeoutError, MessageSizeTooLargeError
from hisbridge.chain.chain import CoreRecord
from hisbridge.contract import QuarantineEntry
from hisbridge.runtime.transform_worker import TransformIO

LIMIT = 1_000


class Producer:
    """Sends kept by topic; values over LIMIT refused the way aiokafka does (at send, or in the ack)."""

    def __init__(self, refuse_in_ack: bool = False, other_error: bool = False) -> None:
        self.sent: list[tuple[str, bytes]] = []
        self.refuse_in_ack, self.other_error = refuse_in_ack, other_error

    async def send(self, topic, key, value, partition, timestamp, headers):
        future = asyncio.get_running_loop().create_future()
        if self.other_error:
            future.set_exception(KafkaTimeoutError())
        elif len(value) > LIMIT and not self.refuse_in_ack:
            raise MessageSizeTooLargeError()
        elif len(value) > LIMIT:
            future.set_exception(MessageSizeTooLargeError())
        else:
            self.sent.append((topic, value))
            future.set_result(None)
        return future


class App:
    def __init__(self, producer: Producer) -> None:
        self.producer = producer


def record(key: str, size: int) -> CoreRecord:
    return CoreRecord("mjzzlxx", key, b"x" * size, "2026-03-02", {"topic": "his.his.op_visit", "lsn": 7}, "v1", ())


@pytest.mark.parametrize("refuse_in_ack", [False, True], ids=["at-send", "in-the-ack"])
def test_a_record_refused_as_too_large_is_quarantined_as_oversize_and_the_rest_goes_out(refuse_in_ack):
    producer = Producer(refuse_in_ack)
    io = TransformIO(App(producer), "core", ["mjzzlxx"], "held", LIMIT)
    asyncio.run(io.produce([record("V1", 10), record("V2", 5_000), record("V3", 10)]))
    topics = [t for t, _ in producer.sent]
    assert topics == ["core.mjzzlxx", "core.mjzzlxx", "core.quarantine"]
    entry = json.loads(producer.sent[-1][1])
    assert entry["key"] == "V2" and [r["rule"] for r in entry["reasons"]] == ["oversize"] and entry["record"] is None


def test_an_oversized_quarantine_entry_goes_out_without_its_record():
    producer = Producer()
    io = TransformIO(App(producer), "core", ["mjzzlxx"], "held", LIMIT)
    big = QuarantineEntry("mjzzlxx", ({"rule": "max_length", "field": "zs", "message": "…"},), {}, None,
                          {"zs": "痛" * 2000}, "v1", "2026-03-02T10:00:00+08:00", "V9")
    asyncio.run(io.produce([big]))
    [(_, value)] = producer.sent
    assert json.loads(value)["record"] is None and json.loads(value)["key"] == "V9"


def test_any_other_send_error_fails_the_batch():
    io = TransformIO(App(Producer(other_error=True)), "core", ["mjzzlxx"], "held", LIMIT)
    with pytest.raises(KafkaTimeoutError):
        asyncio.run(io.produce([record("V1", 10)]))
