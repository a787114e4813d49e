"""The sink worker's plain parts: the retry policy of its staging writes."""
from __future__ import annotations

import asyncio

import psycopg2
from hisbridge.delivery.intake import StageChunk
from hisbridge.runtime.sink_worker import Backoff, StagingWriter


def test_backoff_doubles_from_half_a_second_up_to_its_cap():
    backoff = Backoff(first=0.5, cap=4.0)
    assert [backoff.next() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_a_staging_commit_is_retried_until_it_is_durable():
    slept: list[float] = []

    async def sleep(delay: float) -> None:
        slept.append(delay)

    class Flaky(StagingWriter):
        failures = 3

        def _commit(self, chunk) -> int:
            if self.failures:
                self.failures -= 1
                raise psycopg2.OperationalError("connection refused")
            return len(chunk.rows)

    assert asyncio.run(Flaky("host=nowhere", sleep=sleep).commit(StageChunk([1, 2], {}, []))) == 2
    assert slept == [0.5, 1.0, 2.0]
