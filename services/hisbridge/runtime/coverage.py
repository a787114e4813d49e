"""What the reference feed has read of each reference partition in this process, so that the transform group
need not decode a message a second time only to find it kept already (runtime.batch_plan's fast path).

The feed (runtime.reference) reads every reference topic up to its end before the group plans a batch, so
by then each reference message has been decoded, screened and applied once. For a change whose source table
only feeds lookups, the group's own pass would decode it again to find the same version kept
(`skip:same_version`) and produce nothing: what the group still needs of it is its commit time (for the
marks) and whether it must see it in full after all — unreadable, failing the screen, of an unknown or a
driving source table: those it decodes and handles as before. A change of a driving table is always
handled in full, but need not be applied to the store again.

Per partition: where this process started reading it (below: read before a restart, not known here),
where it is, and runs of consecutive offsets with one verdict whose commit times do not decrease (a
snapshot stamps each row with the clock, one a millisecond: a run per commit time would be ~500,000 runs
for 2,000,000 patients). A run keeps its first and last commit time; a message inside it is credited the
first (never later than its own: the marks may lag, never run ahead), its last message the last, so a
batch that reaches the run's end credits exactly what decoding would. Bounded: at most `limit` runs a partition (a partition another worker's group owns is never
pruned by this one's); what is dropped raises the start, below which the group handles messages in full.
Pure, no Kafka.
"""
from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field

Partition = tuple[str, int]


@dataclass
class _Run:
    ok: bool                      # the group may pass its messages without decoding them
    first_ms: int | None          # commit time of its first message
    last_ms: int | None           # … and of its last


@dataclass
class _Read:
    start: int                                                   # first offset covered
    end: int                                                     # next offset the feed reads
    ends: list[int] = field(default_factory=list)                # last offset of each run, increasing
    runs: list[_Run] = field(default_factory=list)


class FeedCoverage:
    def __init__(self, limit: int = 8192) -> None:
        self.parts: dict[Partition, _Read] = {}
        self.limit = limit

    def read(self, part: Partition, offset: int, commit_ms: int | None, skippable: bool) -> None:
        """The feed read `offset` (partitions are read in offset order; a gap is a compacted-away offset)."""
        r = self.parts.get(part)
        if r is None or offset < r.end:      # new, or re-read from elsewhere (a seek): start over
            r = self.parts[part] = _Read(offset, offset)
        last = r.runs[-1] if r.runs else None
        if last is not None and last.ok == skippable and (not skippable or _continues(last.last_ms, commit_ms)):
            r.ends[-1], last.last_ms = offset, commit_ms
        else:
            r.ends.append(offset)
            r.runs.append(_Run(skippable, commit_ms, commit_ms))
            if len(r.runs) > self.limit:
                self._drop(r, 1)
        r.end = offset + 1

    def covers(self, part: Partition, offset: int) -> bool:
        """The feed read this message in this process (and applied its rows, if it had any to apply)."""
        r = self.parts.get(part)
        return r is not None and r.start <= offset < r.end

    def skippable(self, part: Partition, offset: int) -> tuple[bool, int | None]:
        """(whether the group may pass this message without decoding it, its commit time)."""
        r = self.parts.get(part)
        if r is None or not r.start <= offset < r.end:
            return False, None
        i = bisect_left(r.ends, offset)
        run = r.runs[i]
        return run.ok, run.last_ms if r.ends[i] == offset else run.first_ms

    def handled(self, part: Partition, offset: int) -> None:
        """The group is past `offset`: what the feed kept about it is no longer needed."""
        r = self.parts.get(part)
        if r is not None:
            self._drop(r, bisect_left(r.ends, offset + 1))

    @staticmethod
    def _drop(r: _Read, runs: int) -> None:
        if runs <= 0:
            return
        r.start = max(r.start, r.ends[runs - 1] + 1)
        del r.ends[:runs], r.runs[:runs]


def _continues(last_ms: int | None, commit_ms: int | None) -> bool:
    """Whether a passable message may join the run: its commit time known and not before the run's last."""
    return last_ms is not None and commit_ms is not None and commit_ms >= last_ms
