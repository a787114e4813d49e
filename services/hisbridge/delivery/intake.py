"""What the sink consumes, made into staging rows: core records (Avro, by the fingerprint in their header) and
the watermark marks among them (hisbridge.contract). Pure: a consumed batch in, rows + mark progress +
problems out; a bad event is a problem (reported with its position — never identity values), never an
exception."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

from hisbridge.catalog.model import Table
from hisbridge.chain import avro
from hisbridge.chain.batch import BatchError, assign_batch
from hisbridge.contract import (BATCH_HEADER, core_topic, is_mark, parse_mark,
                                source_of_headers, text)
from hisbridge.delivery import staging


def tables_by_topic(tables: Iterable[Table], prefix: str) -> dict[str, Table]:
    return {core_topic(prefix, t.name): t for t in tables}


@dataclass(frozen=True)
class SinkEvent:
    topic: str
    partition: int
    offset: int
    value: bytes | None
    headers: Mapping[str, bytes]


@dataclass(frozen=True)
class StageChunk:
    rows: list[staging.StagedRow]
    progress: dict[tuple[str, str, int], int]     # (connector, topic, partition) → latest mark ms
    problems: list[str]                           # events that cannot be staged (logged, counted)


def _staged_row(table: Table, event: SinkEvent, schemas: Mapping[bytes, avro.AvroSchema]) -> staging.StagedRow:
    record = avro.decode(event.value or b"", schemas)
    source = source_of_headers(event.headers)
    batch = text(event.headers.get(BATCH_HEADER)) or assign_batch(table, record).name
    commit_ms = source.get("commit_time_ms")
    return staging.staged_row(table, record, batch, source.get("lsn"), int(commit_ms) if commit_ms is not None else 0)


def stage_chunk(events: Iterable[SinkEvent], topics: Mapping[str, Table],
                schemas: Mapping[bytes, avro.AvroSchema]) -> StageChunk:
    """Split a consumed batch into staging rows and mark progress. A bad event is a problem (it cannot be
    staged, so it is reported with its position — never identity values), never an exception."""
    rows: list[staging.StagedRow] = []
    progress: dict[tuple[str, str, int], int] = {}
    problems: list[str] = []
    for event in events:
        where = f"{event.topic}[{event.partition}]@{event.offset}"
        try:
            if is_mark(event.headers):
                connector, ms = parse_mark(event.value)
                key = (connector, event.topic, event.partition)
                progress[key] = max(ms, progress.get(key, ms))
                continue
            table = topics.get(event.topic)
            if table is None:
                problems.append(f"{where}: topic is not a catalog table's core topic")
                continue
            rows.append(_staged_row(table, event, schemas))
        except (ValueError, KeyError, TypeError, BatchError, EOFError) as exc:
            # AvroCodecError/JSON/batch/business-key errors; the message names fields, not values
            problems.append(f"{where}: {type(exc).__name__}: {str(exc)[:200]}")
    return StageChunk(rows, progress, problems)
