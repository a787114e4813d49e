"""What the sink consumes, made into staging rows: core records (Avro, by the fingerprint in their header) and
the watermark marks among them, quarantine entries, and the replay topic's records and batch requests
(hisbridge.contract). Pure: a consumed batch in, rows + mark progress +
problems out; a bad event is a problem (reported with its position — never identity values), never an
exception."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping

from hisbridge.catalog.model import Table
from hisbridge.chain import avro
from hisbridge.chain.batch import BatchError, assign_batch
from hisbridge.contract import (BATCH_HEADER, KIND_HEADER, QUARANTINE_KIND,
                                REPLAY_BATCH_KIND, REPLAY_HEADER, TABLE_HEADER,
                                QuarantineEntry, core_topic, is_mark,
                                parse_entry, parse_mark, parse_replay_batch,
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
    entries: list[QuarantineEntry] = field(default_factory=list)          # from the quarantine topic
    replays: list[tuple[str, str, str]] = field(default_factory=list)     # (replay id, table, batch) requests


def _staged_row(table: Table, event: SinkEvent, schemas: Mapping[bytes, avro.AvroSchema]) -> staging.StagedRow:
    record = avro.decode(event.value or b"", schemas)
    source = source_of_headers(event.headers)
    batch = text(event.headers.get(BATCH_HEADER)) or assign_batch(table, record).name
    commit_ms = source.get("commit_time_ms")
    row = staging.staged_row(table, record, batch, source.get("lsn"), int(commit_ms) if commit_ms is not None else 0)
    replay_id = text(event.headers.get(REPLAY_HEADER))
    return staging.StagedRow(**{**row.__dict__, "replay": replay_id}) if replay_id else row


def _kind(event: SinkEvent) -> str:
    return text(event.headers.get(KIND_HEADER))


def stage_chunk(events: Iterable[SinkEvent], topics: Mapping[str, Table],
                schemas: Mapping[bytes, avro.AvroSchema]) -> StageChunk:
    """Split a consumed batch into staging rows and mark progress. A bad event is a problem (it cannot be
    staged, so it is reported with its position — never identity values), never an exception."""
    chunk = StageChunk([], {}, [])
    for event in events:
        _take(chunk, event, topics, schemas)
    return chunk


def _take(chunk: StageChunk, event: SinkEvent, topics: Mapping[str, Table],
          schemas: Mapping[bytes, avro.AvroSchema]) -> None:
    """One event into the chunk: a mark, a quarantine entry, a replay batch request, or a record (a replayed
    one names its table in a header: the replay topic carries every table)."""
    where = f"{event.topic}[{event.partition}]@{event.offset}"
    try:
        if is_mark(event.headers):
            connector, ms = parse_mark(event.value)
            key = (connector, event.topic, event.partition)
            chunk.progress[key] = max(ms, chunk.progress.get(key, ms))
        elif _kind(event) == QUARANTINE_KIND.decode():
            chunk.entries.append(parse_entry(event.value or b""))
        elif _kind(event) == REPLAY_BATCH_KIND.decode():
            chunk.replays.append((text(event.headers.get(REPLAY_HEADER)), *parse_replay_batch(event.value)))
        else:
            table = topics.get(event.topic) or _named(topics, text(event.headers.get(TABLE_HEADER)))
            if table is None:
                chunk.problems.append(f"{where}: topic is not a catalog table's core topic")
                return
            chunk.rows.append(_staged_row(table, event, schemas))
    except (ValueError, KeyError, TypeError, BatchError, EOFError) as exc:
        # AvroCodecError/JSON/batch/business-key/entry errors; the message names fields, not values
        chunk.problems.append(f"{where}: {type(exc).__name__}: {str(exc)[:200]}")


def _named(topics: Mapping[str, Table], name: str) -> Table | None:
    return next((t for t in topics.values() if t.name == name), None) if name else None
