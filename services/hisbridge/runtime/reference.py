"""The reference topics read in full by every transform worker: a consumer outside every group (manual
assignment of every partition, nothing committed — the offsets live in the reference store beside its rows),
so N workers of one app id each hold every reference row whichever driver partitions the group gave them.
Kafka only; what the messages do to the store is runtime.batch_plan.plan_references."""
from __future__ import annotations

import asyncio
from typing import Mapping

from aiokafka import AIOKafkaConsumer, TopicPartition
from hisbridge.runtime.ordering import RawEvent
from hisbridge.runtime.topics import partitions_of


class ReferenceFeed:
    def __init__(self, bootstrap: str, topics: list[str], client_id: str, take: int) -> None:
        self.topics, self.take, self.bootstrap, self.client_id = topics, take, bootstrap, client_id
        self.consumer: AIOKafkaConsumer | None = None
        # end offsets from a client of their own: asked on the fetching consumer, a ListOffsets request
        # queues behind its idle fetch's long poll (fetch.max.wait, 500 ms) — half a second before every batch
        self.offsets: AIOKafkaConsumer | None = None
        self.parts: list[TopicPartition] = []

    async def start(self, offsets: Mapping[tuple[str, int], int]) -> None:
        """Every partition of the reference topics, from the store's offsets (the beginning where it has none)."""
        parts = await asyncio.to_thread(partitions_of, self.bootstrap, self.topics, self.client_id)
        self.consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, client_id=self.client_id, group_id=None,
                                         enable_auto_commit=False, auto_offset_reset="earliest")
        await self.consumer.start()
        self.offsets = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, client_id=f"{self.client_id}-offsets",
                                        group_id=None, enable_auto_commit=False)
        await self.offsets.start()
        self.parts = [TopicPartition(t, p) for t, p in parts]
        self.consumer.assign(self.parts)
        for tp in self.parts:
            if (tp.topic, tp.partition) in offsets:
                self.consumer.seek(tp, offsets[(tp.topic, tp.partition)])
            else:
                await self.consumer.seek_to_beginning(tp)

    async def end_offsets(self) -> dict[TopicPartition, int]:
        return await self.offsets.end_offsets(self.parts) if self.parts else {}

    async def behind(self, ends: Mapping[TopicPartition, int]) -> int:
        """Messages still to read before every partition reaches `ends` (compaction gaps count as messages)."""
        total = 0
        for tp, end in ends.items():
            total += max(0, end - await self.consumer.position(tp))
        return total

    async def fetch(self) -> list[RawEvent]:
        fetched = await self.consumer.getmany(timeout_ms=200, max_records=self.take)
        return [RawEvent(m.topic, m.partition, m.offset, m.key, m.value) for messages in fetched.values()
                for m in messages]

    async def stop(self) -> None:
        for client in (self.consumer, self.offsets):
            if client is not None:
                await client.stop()
