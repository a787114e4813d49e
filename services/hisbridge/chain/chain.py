"""The transform chain as one pure function: a decoded change → what goes to `core.<table>` / quarantine.

    map (local codes) → transcode (national codes) → quality (plaintext) → SM4 (encrypt fields)
      → Avro validate + encode → batch

Every reason a record has — transcode, quality, Avro, batch — is reported together. Outputs:

  CoreRecord      for `core.<table>`: key = business key (hisbridge.contract), value = Avro
                  single-object bytes (schema fingerprint in the header), headers carrying the metadata
                  that is not a catalog field: SM4 key version, batch, source position (LSN, commit time).
  QuarantineEntry for `core.quarantine` (hisbridge.contract): identity fields already encrypted.
  Waiting         a reference row (patient, department…) is not known yet: the wiring retries when it
                  arrives and, after its bounded wait, calls again with `give_up=True` → quarantine.

Batches: `transform(..., defer=True)` stops after mapping (the only step that reads the lookups) and
returns Unfinished in place of those records; `finish_outputs` then runs transcode → … → batch over all of a
batch's Unfinished at once (column-wise quality proof, one SM4 call), giving exactly what transform would
have given record by record. A record the batch path cannot prove clean takes the record-at-a-time path.

Wiring contract: apply `mapping.lookup_updates(change)` to the lookup tables BEFORE calling transform with
the same change (a driver table can also be a lookup of another driver); retry a Waiting output when a
row for `missing.lookup`/`missing.key` arrives. Heartbeats and tombstones never reach here.
Nothing here raises on bad data; a MappingError/Sm4ConfigError is configuration, raised at load time.

Roles (`role=`, chain.roles): a hospital (the default) encrypts and runs every catalog rule; a city platform
relays its hospitals' uploads — identity fields already ciphertext, its second check, key ownership across
hospitals and each hospital's batch deadline. The chain calls the role at fixed points and has no branch
per role.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Mapping, NamedTuple

from hisbridge.catalog.model import Catalog, Table
from hisbridge.chain import avro
from hisbridge.chain.batch import BatchError, assign_batch
from hisbridge.chain.crypto import DEFAULT_SETTINGS, Sm4Key, Sm4Settings, encrypt_many
from hisbridge.chain.decode import Change, DecodeError
from hisbridge.chain.mapping import (Lookups, Mapped, MissingLookup,
                                     SourceMapping, Unmappable,
                                     is_known_source, map_change,
                                     source_name)
from hisbridge.chain.quality.columns import clean_records
from hisbridge.chain.roles import HOSPITAL, Role
from hisbridge.chain.screen import SchemaWatch, screen
from hisbridge.chain.transcode import transcode
from hisbridge.clock import SHANGHAI
from hisbridge.contract import UNKNOWN_TABLE, Headers, QuarantineEntry
from hisbridge.contract import business_key as contract_key
from hisbridge.contract import record_headers

_FOLLOW_FROM_UNMAPPED = frozenset({"valueset", "code_name", "max_length"})


@dataclass(frozen=True, slots=True)
class CoreRecord:
    table: str
    key: str
    value: bytes
    batch: str
    source: Mapping[str, Any]
    key_version: str
    headers: Headers


@dataclass(frozen=True, slots=True)
class Waiting:
    table: str
    missing: MissingLookup
    source: Mapping[str, Any]


Output = CoreRecord | QuarantineEntry | Waiting
SchemaLoader = Callable[[str], avro.AvroSchema]


def source_of(change: Change) -> dict[str, Any]:
    s = change.source
    out = {"topic": change.topic, "connector": s.connector, "db": s.db, "schema": s.schema, "table": s.table,
           "lsn": s.lsn, "tx_id": s.tx_id, "commit_time_ms": s.commit_time_ms, "snapshot": s.snapshot,
           "op": change.op}
    if s.binlog is not None:
        out["binlog"] = s.binlog        # MariaDB/MySQL: the file:pos:row `lsn` was made from, for people
    return out


def business_key(table: Table, record: Mapping[str, Any]) -> str | None:
    return contract_key(table.key, record)


def _reason(rule: str, field: str | None, message: str) -> dict[str, Any]:
    return {"rule": rule, "field": field, "message": message}


_AVRO_FIELD = re.compile(r"^field (\w+):")


def _avro_reasons(problems: list[str], already: set[str | None]) -> list[dict[str, Any]]:
    """Avro problems for fields no earlier stage already explained (a missing required field would
    otherwise be reported twice, once by quality and once as 'None is not a string')."""
    out = []
    for problem in problems:
        match = _AVRO_FIELD.match(problem)
        field = match.group(1) if match else None
        if field is None or field not in already:
            out.append(_reason("avro_schema", field, problem))
    return out


class _Context(NamedTuple):
    """What finishing one change's records needs. A tuple: one is made per change, and a frozen dataclass
    costs three times as much to build."""
    catalog: Catalog
    key: Sm4Key
    settings: Sm4Settings
    report_time: datetime | None
    seen: datetime
    schema_of: SchemaLoader
    max_bytes: int | None = None
    role: Role = HOSPITAL

    @property
    def first_seen(self) -> str:
        """When the change was handled, for a quarantine entry (only those show it: text made on demand)."""
        return self.seen.isoformat()

    def encrypt(self, table: Table, record: Mapping[str, Any]) -> dict[str, Any]:
        return self.role.encrypt(table, record, self.key, self.settings)

    def quality(self, table: Table, record: dict[str, Any]) -> list[Any]:
        return self.role.quality(table, record, self.report_time)


def _size(value: Any) -> int:
    return len(value.encode("utf-8")) if isinstance(value, str) else len(value) if isinstance(value, bytes) else 0


def _oversize(ctx: _Context, encrypted: dict[str, Any], value: bytes | None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """An encoded record over the produce limit: the reason naming its largest field, and the record with that
    field's value left out (the quarantine entry must fit the topic too)."""
    if value is None or ctx.max_bytes is None or len(value) <= ctx.max_bytes:
        return [], encrypted
    field = max(encrypted, key=lambda f: _size(encrypted[f]))
    size = _size(encrypted[field])
    reason = _reason("oversize", field, f"记录编码后 {len(value)} 字节，超过上限 {ctx.max_bytes}；字段 {field} 占 {size} 字节 / "
                                        f"encoded record is {len(value)} bytes, over the {ctx.max_bytes} limit; field "
                                        f"{field} holds {size} bytes")
    return [reason], {**encrypted, field: f"<{size} bytes left out>"}


def _finish(ctx: _Context, mapped: Mapped, mapping_table: Any, source: Mapping[str, Any],
            extra: tuple[dict[str, Any], ...] = ()) -> Output:
    """transcode → quality → encrypt → avro → batch for one mapped record."""
    table = ctx.catalog.tables[mapped.table]
    record, unmapped = transcode(mapping_table, mapped.record)
    reasons = [r.as_dict() for r in unmapped] + list(extra)
    untranslated = {r.field for r in unmapped}
    # a local code that had no national one is, of course, not in the national value set: say it once
    reasons += [r.as_dict() for r in ctx.quality(table, record)
                if not (r.field in untranslated and r.rule in _FOLLOW_FROM_UNMAPPED)]
    reasons += ctx.role.claim(table, record, clean=not reasons)
    encrypted = ctx.encrypt(table, record)
    schema = ctx.schema_of(table.name)
    value, problems = avro.encode_checked(schema, encrypted)
    reasons += _avro_reasons(problems, {r["field"] for r in reasons})
    too_big, encrypted = _oversize(ctx, encrypted, value)
    reasons += too_big
    batch = None
    try:
        batch = assign_batch(table, record).name
    except BatchError as exc:
        if table.batch_time not in {r["field"] for r in reasons}:
            reasons.append(_reason("batch", table.batch_time, str(exc)))
    key = business_key(table, encrypted)
    if reasons or batch is None or key is None:
        if key is None and not reasons:
            reasons.append(_reason("business_key", None, f"business key {list(table.key)} is incomplete"))
        return QuarantineEntry(table.name, tuple(reasons), source, batch, encrypted, ctx.key.version,
                               ctx.first_seen, key)
    return CoreRecord(table.name, key, value, batch, source, ctx.key.version,
                      record_headers(ctx.key.version, batch, source, schema.fingerprint))


@dataclass(frozen=True, slots=True)
class Unfinished:
    """A mapped record whose transcode → quality → SM4 → Avro → batch is left to finish_outputs."""
    table: str
    mapped: Mapped
    mapping_table: Any
    source: Mapping[str, Any]
    ctx: _Context
    extra: tuple[dict[str, Any], ...] = ()     # reasons found before finishing (the role's admit)

    def batch_key(self) -> tuple:
        """Records finished together share everything a CoreRecord depends on (first_seen only goes into
        quarantine entries, which each record's own context still makes)."""
        c = self.ctx
        return (self.table, id(self.mapping_table), id(c.catalog), id(c.key), c.settings, c.report_time,
                c.schema_of)


def finish_outputs(outputs: list[Any]) -> list[Any]:
    """outputs with every Unfinished replaced by its CoreRecord / QuarantineEntry, in place, order kept."""
    groups: dict[tuple, list[int]] = {}
    for i, out in enumerate(outputs):
        if isinstance(out, Unfinished):
            groups.setdefault(out.batch_key(), []).append(i)
    if not groups:
        return outputs
    done = list(outputs)
    for positions in groups.values():
        for i, out in zip(positions, _finish_many([outputs[i] for i in positions])):
            done[i] = out
    return done


def _finish_many(items: list[Unfinished]) -> list[Output]:
    """_finish for records of one table and context: the records proven clean (every code mapped, quality
    silent, the compiled Avro writer accepts them) go through SM4 together; the others through _finish."""
    if len(items) == 1 or not items[0].ctx.role.finish_together:
        # nothing to share (the per-record path is cheaper than proving one record), or a role whose checks
        # run record by record, in order
        return [_finish(u.ctx, u.mapped, u.mapping_table, u.source, u.extra) for u in items]
    ctx, mapping_table = items[0].ctx, items[0].mapping_table
    table = ctx.catalog.tables[items[0].table]
    transcoded = [transcode(mapping_table, u.mapped.record) for u in items]
    mapped_ok = [i for i, (_, unmapped) in enumerate(transcoded) if not unmapped]
    clean = clean_records(table, [transcoded[i][0] for i in mapped_ok], report_time=ctx.report_time)
    fast = [i for i, ok in zip(mapped_ok, clean) if ok]
    schema = ctx.schema_of(table.name)
    outputs: list[Output | None] = [None] * len(items)
    for i, encrypted in zip(fast, encrypt_many([transcoded[i][0] for i in fast], table.encrypted_fields,
                                               ctx.key, ctx.settings)):
        outputs[i] = _clean_record(ctx, table, schema, transcoded[i][0], encrypted, items[i].source)
    return [out if out is not None else _finish(u.ctx, u.mapped, u.mapping_table, u.source)
            for out, u in zip(outputs, items)]


def _clean_record(ctx: _Context, table: Table, schema: avro.AvroSchema, record: dict[str, Any],
                  encrypted: dict[str, Any], source: Mapping[str, Any]) -> CoreRecord | None:
    """The CoreRecord _finish gives a record without reasons; None where it would need its full path."""
    value = schema.fast_writer(encrypted) if schema.fast_writer is not None else None
    key = business_key(table, encrypted)
    if value is None or key is None or (ctx.max_bytes is not None and len(value) > ctx.max_bytes):
        return None
    try:
        batch = assign_batch(table, record).name
    except BatchError:
        return None
    return CoreRecord(table.name, key, value, batch, source, ctx.key.version,
                      record_headers(ctx.key.version, batch, source, schema.fingerprint))


def _quarantine_missing(ctx: _Context, missing: MissingLookup, source: Mapping[str, Any]) -> QuarantineEntry:
    table = ctx.catalog.tables[missing.table]
    record = ctx.encrypt(table, missing.partial)
    try:
        batch = assign_batch(table, record).name
    except BatchError:
        batch = None
    reason = _reason("missing_lookup", None, f"参照数据 {missing.describe()} 在等待期内未到达 / reference row "
                                             f"{missing.describe()} did not arrive within the wait")
    return QuarantineEntry(table.name, (reason,), source, batch, record, ctx.key.version, ctx.first_seen,
                           business_key(table, record))


def _rejected(ctx: _Context, mapping: SourceMapping, change: Change, lookups: Lookups,
              reasons: tuple[dict[str, Any], ...], source: Mapping[str, Any]) -> list[QuarantineEntry]:
    """A change the screen refused, quarantined whole: per record it would have fed, with that record's key
    and batch where they can still be computed (e.g. a drifted column that is not a key or batch field),
    else once under the HIS table (a reference row)."""
    entries = []
    row = change.before if change.op == "d" else change.after
    results = map_change(mapping, change, lookups) if row else []
    for result in (r for r in results if isinstance(r, (Mapped, MissingLookup))):
        table = ctx.catalog.tables[result.table]
        record = ctx.encrypt(table, result.record if isinstance(result, Mapped) else result.partial)
        try:
            batch = assign_batch(table, record).name
        except BatchError:
            batch = None
        entries.append(QuarantineEntry(table.name, reasons, source, batch, record, ctx.key.version, ctx.first_seen,
                                       business_key(table, record)))
    return entries or [QuarantineEntry(t, reasons, source, None, None, ctx.key.version, ctx.first_seen)
                       for t in tables_fed(mapping, source_name(change))]


def tables_fed(mapping: SourceMapping, source: str) -> list[str]:
    """The catalog tables a HIS table drives, else the HIS table itself (a reference-only or unknown table):
    the table a quarantine entry is filed under."""
    return sorted({t.table for t, _ in mapping.by_source.get(source, ())}) or [source]


def table_of_topic(mapping: SourceMapping, topic: str) -> str:
    """The table an unreadable message of `topic` is filed under: the one catalog table its HIS table
    drives, else the HIS table ("<prefix>.<schema>.<table>" → "schema.table"), else `_unknown`."""
    parts = topic.split(".")
    if len(parts) < 3:
        return UNKNOWN_TABLE
    fed = tables_fed(mapping, ".".join(parts[-2:]))
    return fed[0] if len(fed) == 1 else ".".join(parts[-2:])


def transform(change: Change | DecodeError, *, catalog: Catalog, mapping: SourceMapping, lookups: Lookups,
              key: Sm4Key, sm4_settings: Sm4Settings = DEFAULT_SETTINGS, report_time: datetime | None = None,
              give_up: bool = False, now: datetime | None = None,
              schema_of: SchemaLoader = avro.load_schema, defer: bool = False,
              watch: SchemaWatch | None = None, max_bytes: int | None = None,
              role: Role = HOSPITAL) -> list[Any]:
    """Every output of one decoded change (none for a change on a reference-only table or outside every
    driver's `when`). `give_up=True` turns a missing lookup into quarantine instead of Waiting.
    `defer=True` leaves Unfinished records for finish_outputs (see the module docstring)."""
    ctx = _Context(catalog, key, sm4_settings, report_time, now or datetime.now(SHANGHAI), schema_of, max_bytes,
                   role)
    if isinstance(change, DecodeError):
        return [QuarantineEntry(table_of_topic(mapping, change.topic), (_reason("decode_error", None, str(change)),),
                                {"topic": change.topic, "position": change.position}, None, None,
                                key.version, ctx.first_seen)]
    source = source_of(change)
    if not is_known_source(mapping, change):
        return [QuarantineEntry(source_name(change), (_reason("unknown_source_table", None,
                                f"source table {change.source.schema}.{change.source.table} is not in the "
                                f"mapping {mapping.path}"),), source, None, None, key.version, ctx.first_seen)]
    rejected = screen(mapping, change, watch)
    if rejected:
        return _rejected(ctx, mapping, change, lookups, tuple(rejected), source)
    outputs: list[Any] = []      # Output or Unfinished
    for result in map_change(mapping, change, lookups):
        admitted: list[Any] | MissingLookup = []
        if isinstance(result, Mapped):
            admitted = role.admit(catalog.tables[result.table], result.record, lookups)
        if isinstance(admitted, MissingLookup):
            result = admitted           # e.g. a city: the hospital has not marked its batch complete yet
        if isinstance(result, Mapped):
            outputs.append(Unfinished(result.table, result, mapping.tables[result.table], source, ctx,
                                      tuple(admitted)))
        elif isinstance(result, MissingLookup):
            outputs.append(_quarantine_missing(ctx, result, source) if give_up
                           else Waiting(result.table, result, source))
        elif isinstance(result, Unmappable):
            outputs.append(QuarantineEntry(result.table, (_reason(result.rule, None, result.message),), source,
                                           None, None, key.version, ctx.first_seen))
    return outputs if defer else finish_outputs(outputs)
