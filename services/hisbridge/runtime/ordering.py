"""Fetched raw messages merged oldest first (Kafka timestamp) across partitions."""
from __future__ import annotations

import heapq
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable, Iterable

Partition = tuple[str, int]


@dataclass(frozen=True)
class RawEvent:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


class TimeOrder:
    """Fetched raw messages per partition, handed out oldest first (Kafka timestamp) across partitions.

    A catch-up — the initial snapshot, a restart after an outage — finds a backlog on every table's topic,
    and a consumer reads them side by side: without ordering, a visit is handled long before the patient
    row committed just before it, waits, and is retried. The connector writes every topic from one WAL in
    commit order, so the message timestamps follow that order; merging on them (Kafka Streams does the
    same across the partitions of a task) hands the changes out nearly as the HIS committed them. A
    partition that has more on the broker than fetched (`behind`) and nothing buffered stops the merge:
    its next message may be older than anything buffered. The wiring fetches it, or after a while takes
    what it has (`take(limit, behind=())`) so one slow partition cannot stall the others."""

    def __init__(self) -> None:
        self.buffers: dict[Partition, deque[tuple[int, RawEvent]]] = {}

    def add(self, part: Partition, messages: Iterable[tuple[int, RawEvent]]) -> None:
        self.buffers.setdefault(part, deque()).extend(messages)

    def drop(self, parts: Iterable[Partition]) -> None:
        """Partitions this worker no longer owns: their new owner reads them from the committed offset."""
        for part in parts:
            self.buffers.pop(part, None)

    def buffered(self, part: Partition) -> int:
        return len(self.buffers.get(part, ()))

    def next_offset(self, part: Partition) -> int | None:
        """The offset of the oldest message not handed out yet (None: nothing buffered)."""
        queue = self.buffers.get(part)
        return queue[0][1].offset if queue else None

    def take(self, limit: int, behind: Iterable[Partition]) -> list[RawEvent]:
        waiting = set(behind)
        if any(not self.buffers.get(part) for part in waiting):
            return []
        heap = [(queue[0][0], part) for part, queue in self.buffers.items() if queue]
        heapq.heapify(heap)
        out: list[RawEvent] = []
        while heap and len(out) < limit:
            _, part = heapq.heappop(heap)
            queue = self.buffers[part]
            out.append(queue.popleft()[1])
            if queue:
                heapq.heappush(heap, (queue[0][0], part))
            elif part in waiting:
                break
        return out


class Merge:
    """TimeOrder and the decisions around it that need no consumer: when a lagging partition may no longer
    hold the merge back, how long the next fetch may wait, which partitions to pause for bounded memory."""

    def __init__(self, take: int, within: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.take, self.within, self.clock = take, within, clock
        self.order = TimeOrder()
        self.wait_ms = int(within * 1000)
        self.stalled_since: float | None = None

    def add(self, part: Partition, messages: Iterable[tuple[int, RawEvent]]) -> None:
        self.order.add(part, messages)

    def next_batch(self, behind: Iterable[Partition]) -> list[RawEvent]:
        """The next batch, oldest first; [] while a partition `behind` (more on the broker than fetched)
        may still hand out an older message — for at most `within` seconds, then what is buffered goes."""
        batch = self.order.take(self.take, behind)
        buffered = any(self.order.buffers.values())
        if not batch and buffered:
            if self.stalled_since is None:
                self.stalled_since = self.clock()
            if self.clock() - self.stalled_since >= self.within:
                batch = self.order.take(self.take, ())
        if batch:
            # no wait while a backlog is being merged: the next fetch adds only what is there already
            self.stalled_since, self.wait_ms = None, 0
        else:
            # waiting for one partition's next fetch: poll briefly; nothing buffered: wait for news
            self.wait_ms = 10 if buffered else int(self.within * 1000)
        return batch

    def flow(self, assigned: Iterable[Partition], paused: Iterable[Partition]) -> tuple[list[Partition], list[Partition]]:
        """(pause, resume): a partition with two batches buffered is not fetched further until the others have
        caught up with it; a paused one resumes below one batch."""
        size = self.order.buffered
        return ([p for p in assigned if size(p) >= 2 * self.take],
                [p for p in paused if size(p) < self.take])
