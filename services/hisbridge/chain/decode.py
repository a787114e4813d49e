"""Decode stage: one Kafka message written by Debezium's JSON converter → a plain change value.

`decode_message(topic, key, value)` returns
  Change      a row change (op c/u/d/r/t) with before/after rows converted to Python values,
  Heartbeat   a `__debezium-heartbeat.<prefix>` message (the watermark when tables are quiet),
  None        a tombstone (null value after a delete: nothing to do, the `d` event carried the delete),
  DecodeError an envelope it cannot read, with a reason naming topic, source position and the problem.
It never raises: a bad message must become a quarantine reason, not stop the worker.

Column values are converted by their Connect schema (`name`, else `type`), exactly:

| Connect schema name / type                 | JSON value                         | Python value                    |
|--------------------------------------------|------------------------------------|---------------------------------|
| io.debezium.time.Timestamp                 | ms since epoch (int64)             | naive datetime                  |
| io.debezium.time.MicroTimestamp            | µs since epoch                     | naive datetime                  |
| io.debezium.time.NanoTimestamp             | ns since epoch                     | naive datetime, ns truncated ¹  |
| io.debezium.time.ZonedTimestamp            | ISO-8601 string with offset / Z    | naive Asia/Shanghai wall-clock ²|
| io.debezium.time.Date, connect Date        | days since epoch (int32)           | date                            |
| io.debezium.time.Time, connect Time        | ms of day                          | time                            |
| io.debezium.time.MicroTime / NanoTime      | µs / ns of day                     | time (ns truncated ¹)           |
| io.debezium.time.ZonedTime                 | "HH:MM:SS[.f]Z"                    | naive time at UTC+8 ²           |
| org.apache.kafka.connect.data.Timestamp    | ms since epoch                     | naive datetime                  |
| org.apache.kafka.connect.data.Decimal      | base64 unscaled big-endian two's   | Decimal with parameters.scale   |
|                                            | complement, or a JSON number ³     |                                 |
| io.debezium.data.VariableScaleDecimal      | {"scale": s, "value": base64}      | Decimal                         |
| type bytes (no name)                       | base64                             | bytes                           |
| float32 / float64                          | JSON number                        | float                           |
| anything else (strings, ints, bool, Json…) | as is                              | as is                           |

¹ Truncation toward the earlier instant (floor): the wall-clock digits below the microsecond are
  dropped, which is what PostgreSQL itself would store; no HIS column holds nanoseconds.
² Time zones. A PostgreSQL `timestamp without time zone` in the HIS already *is* Asia/Shanghai
  wall-clock; Debezium writes it as (Micro)Timestamp = "that wall-clock read as UTC", so the naive
  datetime we rebuild is the HIS value unchanged. A `timestamptz` arrives as ZonedTimestamp in UTC; it
  is converted to Asia/Shanghai and made naive so every timestamp downstream (batching, Avro
  local-timestamp-micros, the front-end) is one kind: local wall-clock without zone.
³ With `decimal.handling.mode=string` Debezium sends a plain string schema (no name): that string is
  kept as is and the mapping stage coerces it; with the JSON converter's `decimal.format=NUMERIC` the
  Decimal-named value is a JSON number, read exactly (JSON is parsed with Decimal floats).

Schemaless messages (`schemas.enable=false`) carry no type names, so their columns stay raw unless
the caller passes `field_schemas` (column → Connect field schema) for them.

Binlog sources (the MariaDB and MySQL connectors; `source.connector` mariadb / mysql) differ in three ways,
each handled in one place so the stages after decode see one kind of change whatever the HIS engine:

- Table name (`_binlog_position`): the source block has no `schema`; the database is the schema, so a
  change of `his.pat_master` reads `schema="his"` exactly as from PostgreSQL and one mapping serves both.
- Order (`binlog_order`): there is no LSN. `SourcePosition.lsn` is the binlog position made one number,
  `file number · 2³² + pos + row`, which orders every change of one server as the binlog does (staging's
  "newest version wins" and the merge rely on it). `pos` is where the statement's events start, `row` the
  row's index inside them; each row takes at least a byte of the event, so pos + row stays below the next
  statement's pos, and a multi-row statement's rows (or a primary-key update's delete and insert of the
  same key) stay in order. Snapshot rows all carry the snapshot's position, below everything streamed
  after it. `tx_id` is the GTID's sequence number (None in the snapshot). `commit_time_ms` is source.ts_ms,
  which MariaDB gives in whole seconds and at the statement's start (not the commit): it only feeds the
  watermark, never the order.
- Zero dates (`_zero_date_converter`): MariaDB stores '0000-00-00' where strict mode does not forbid it, and
  Debezium writes it as null in a nullable DATE/DATETIME column, as the epoch (0) in a NOT NULL one, and as
  "1970-01-01T00:00:00Z" for a TIMESTAMP while streaming (a nullable TIMESTAMP's is null in the snapshot).
  Decode turns the two non-null forms into `ZERO_DATE` (catalog.records), which the quality stage
  quarantines as `zero_date`. For a TIMESTAMP that is exact: its range starts at 1970-01-01 00:00:01 UTC, so
  the epoch can only be the zero date. In a NOT NULL DATE/DATETIME the message for the zero date and for a
  real 1970-01-01 (00:00:00.000000) is byte for byte the same; it is taken as the zero date, so a real one
  is held in quarantine where an operator sees it and can re-send it, never delivered as a wrong date.
  A zero date in a nullable DATE/DATETIME column arrives as null in every message (no connector setting
  changes that: the connector's JDBC URL fixes zeroDateTimeBehavior) and is judged as a missing value.
  TINYINT(1)/BOOLEAN arrive as int16 0/1, ENUM/SET as their text, utf8mb4 text exactly: no conversion.
"""
from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping   # for isinstance: typing.Mapping's check costs ~3× more
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any, Callable

import orjson
from hisbridge.catalog.records import ZERO_DATE
from hisbridge.clock import SHANGHAI
from hisbridge.contract import HEARTBEAT_TOPIC_PREFIX

OPS = frozenset({"c", "u", "d", "r", "t"})

_EPOCH = datetime(1970, 1, 1)
_EPOCH_DATE = date(1970, 1, 1)
_UTC8 = timezone(timedelta(hours=8))  # Asia/Shanghai has had no DST since 1991; a bare time needs a fixed offset


@dataclass(frozen=True, slots=True)
class SourcePosition:
    """Where the change came from; `lsn`/`tx_id` order changes, `commit_time_ms` is the source ts_ms."""
    connector: str
    db: str
    schema: str | None
    table: str
    lsn: int | None
    tx_id: int | None
    commit_time_ms: int | None
    snapshot: bool
    server: str = ""          # Debezium `name` = the connector's topic.prefix
    snapshot_marker: str = "false"  # the raw marker: true/first/last/incremental/false…
    binlog: str | None = None       # binlog sources: "file:pos:row" (what `lsn` was made from)

    def describe(self) -> str:
        where = f" binlog={self.binlog}" if self.binlog else ""
        return (f"{self.db}.{self.schema}.{self.table} lsn={self.lsn} txId={self.tx_id}{where} "
                f"commit_ts_ms={self.commit_time_ms}")


@dataclass(frozen=True, slots=True)
class Change:
    op: str                       # c create, u update, d delete, r snapshot read, t truncate
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    source: SourcePosition
    ts_ms: int | None             # when Debezium processed the change (not the event time)
    topic: str = ""
    key: dict[str, Any] | None = None
    columns: Mapping[str, str] | None = None   # the envelope's row schema: column → Connect type (None: schemaless)


@dataclass(frozen=True, slots=True)
class Heartbeat:
    ts_ms: int
    prefix: str                   # the connector's topic.prefix, from the topic name


@dataclass(frozen=True, slots=True)
class DecodeError:
    reason: str
    topic: str
    position: str | None = None

    def __str__(self) -> str:
        where = f" at {self.position}" if self.position else ""
        return f"{self.topic}{where}: {self.reason}"


class _Bad(Exception):
    """Internal: a problem found while decoding; turned into a DecodeError at the boundary."""


# --- column converters (one per Connect schema name/type) ---------------------------------------------

def _int(value: Any) -> int:
    if type(value) is int:   # the common case, first (a bool is not of type int)
        return value
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
        raise _Bad(f"expected an integer, got {type(value).__name__} {value!r:.40}")
    if isinstance(value, Decimal):
        if value != value.to_integral_value():
            raise _Bad(f"expected an integer, got {value}")
        return int(value)
    return value


def _from_epoch_us(us: int) -> datetime:
    try:
        return _EPOCH + timedelta(microseconds=us)
    except OverflowError:
        # PostgreSQL 'infinity' and out-of-range years arrive as huge longs
        raise _Bad(f"timestamp {us} µs since epoch is outside years 1–9999") from None


def _timestamp_ms(v: Any) -> datetime:
    return _from_epoch_us(_int(v) * 1000)


def _timestamp_us(v: Any) -> datetime:
    return _from_epoch_us(_int(v))


def _timestamp_ns(v: Any) -> datetime:
    return _from_epoch_us(_int(v) // 1000)


def _parse_iso(text: str) -> datetime:
    # fromisoformat takes at most 6 fraction digits; cut longer fractions (truncation, see ¹)
    head, sep, rest = text.partition(".")
    if sep:
        digits = len(rest) - len(rest.lstrip("0123456789"))
        if digits > 6:
            text = f"{head}.{rest[:6]}{rest[digits:]}"
    return datetime.fromisoformat(text)


def _zoned_timestamp(v: Any) -> datetime:
    if not isinstance(v, str):
        raise _Bad(f"ZonedTimestamp must be an ISO string, got {type(v).__name__}")
    try:
        moment = _parse_iso(v)
    except ValueError:
        raise _Bad(f"ZonedTimestamp {v!r:.40} is not ISO-8601") from None
    if moment.tzinfo is None:
        raise _Bad(f"ZonedTimestamp {v!r:.40} has no offset")
    return moment.astimezone(SHANGHAI).replace(tzinfo=None)


def _date(v: Any) -> date:
    try:
        return _EPOCH_DATE + timedelta(days=_int(v))
    except OverflowError:
        raise _Bad(f"date {v} days since epoch is outside years 1–9999") from None


def _time_of_day_us(us: int) -> time:
    # PostgreSQL allows 24:00:00; Python's time cannot hold it — a reason, not a silent wrap
    if not 0 <= us < 86_400_000_000:
        raise _Bad(f"time of day {us} µs is outside 00:00–24:00")
    seconds, micro = divmod(us, 1_000_000)
    return time(seconds // 3600, seconds // 60 % 60, seconds % 60, micro)


def _time_ms(v: Any) -> time:
    return _time_of_day_us(_int(v) * 1000)


def _time_us(v: Any) -> time:
    return _time_of_day_us(_int(v))


def _time_ns(v: Any) -> time:
    return _time_of_day_us(_int(v) // 1000)


def _zoned_time(v: Any) -> time:
    if not isinstance(v, str):
        raise _Bad(f"ZonedTime must be a string, got {type(v).__name__}")
    try:
        parsed = time.fromisoformat(v)
    except ValueError:
        raise _Bad(f"ZonedTime {v!r:.40} is not ISO-8601") from None
    if parsed.tzinfo is None:
        return parsed
    on_day = datetime.combine(_EPOCH_DATE, parsed).astimezone(_UTC8)
    return on_day.time().replace(tzinfo=None)


def _b64(v: Any) -> bytes:
    if not isinstance(v, str):
        raise _Bad(f"expected base64 text, got {type(v).__name__}")
    try:
        return base64.b64decode(v, validate=True)
    except (binascii.Error, ValueError):
        raise _Bad(f"{v!r:.40} is not valid base64") from None


def _unscaled(raw: bytes, scale: int) -> Decimal:
    return Decimal(int.from_bytes(raw, "big", signed=True)).scaleb(-scale)


def _decimal_converter(params: Mapping[str, Any] | None) -> Callable[[Any], Decimal]:
    try:
        scale = int((params or {}).get("scale", 0))
    except (TypeError, ValueError):
        raise _Bad(f"Decimal schema has a non-integer scale {params!r:.60}") from None

    def convert(v: Any) -> Decimal:
        if isinstance(v, str):
            return _unscaled(_b64(v), scale)
        if isinstance(v, (int, Decimal)) and not isinstance(v, bool):
            # decimal.format=NUMERIC: the number is the value itself, pin it to the column's scale
            return Decimal(v).quantize(Decimal(1).scaleb(-scale))
        raise _Bad(f"Decimal value of type {type(v).__name__}")
    return convert


def _variable_scale_decimal(v: Any) -> Decimal:
    if not isinstance(v, Mapping) or "scale" not in v or "value" not in v:
        raise _Bad(f"VariableScaleDecimal must be {{scale, value}}, got {v!r:.60}")
    return _unscaled(_b64(v["value"]), _int(v["scale"]))


def _float(v: Any) -> float:
    if isinstance(v, str) and v in ("NaN", "Infinity", "-Infinity"):
        return float(v)
    if isinstance(v, bool) or not isinstance(v, (int, float, Decimal)):
        raise _Bad(f"expected a number, got {type(v).__name__}")
    return float(v)


def _as_is(v: Any) -> Any:
    return v


_BY_NAME: dict[str, Callable[[Any], Any]] = {
    "io.debezium.time.Timestamp": _timestamp_ms,
    "io.debezium.time.MicroTimestamp": _timestamp_us,
    "io.debezium.time.NanoTimestamp": _timestamp_ns,
    "io.debezium.time.ZonedTimestamp": _zoned_timestamp,
    "io.debezium.time.Date": _date,
    "io.debezium.time.Time": _time_ms,
    "io.debezium.time.MicroTime": _time_us,
    "io.debezium.time.NanoTime": _time_ns,
    "io.debezium.time.ZonedTime": _zoned_time,
    "io.debezium.data.VariableScaleDecimal": _variable_scale_decimal,
    "org.apache.kafka.connect.data.Date": _date,
    "org.apache.kafka.connect.data.Time": _time_ms,
    "org.apache.kafka.connect.data.Timestamp": _timestamp_ms,
}
_BY_TYPE: dict[str, Callable[[Any], Any]] = {"bytes": _b64, "float": _float, "float32": _float,
                                             "float64": _float, "double": _float}

Converter = Callable[[Any], Any]
RowConverter = tuple[tuple[str, Converter], ...]


def column_converter(field_schema: Mapping[str, Any], binlog: bool = False) -> Converter:
    """The converter for one Connect field schema (used for schemaless hints too); `binlog`: the column
    comes from a MariaDB/MySQL connector, whose zero dates are recognised (module docstring)."""
    name = field_schema.get("name")
    if name == "org.apache.kafka.connect.data.Decimal":
        return _decimal_converter(field_schema.get("parameters"))
    if name in _BY_NAME:
        convert = _BY_NAME[name]
        return _zero_date_converter(field_schema, convert) if binlog else convert
    return _BY_TYPE.get(field_schema.get("type", ""), _as_is)


# Date and date-time encodings in which Debezium writes a NOT NULL zero date as 0 (the epoch)
_EPOCH_ZERO = frozenset({"io.debezium.time.Date", "io.debezium.time.Timestamp", "io.debezium.time.MicroTimestamp",
                         "io.debezium.time.NanoTimestamp", "org.apache.kafka.connect.data.Date",
                         "org.apache.kafka.connect.data.Timestamp"})
_UTC_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _is_epoch_text(value: Any) -> bool:
    try:
        return isinstance(value, str) and _parse_iso(value) == _UTC_EPOCH
    except ValueError:
        return False        # not ISO: the ZonedTimestamp converter names the problem


def _zero_date_converter(field_schema: Mapping[str, Any], convert: Converter) -> Converter:
    """A binlog source's temporal column: the value Debezium writes for a zero date → ZERO_DATE."""
    name = field_schema.get("name")
    if name == "io.debezium.time.ZonedTimestamp":
        return lambda v: ZERO_DATE if _is_epoch_text(v) else convert(v)
    if name in _EPOCH_ZERO and field_schema.get("optional") is False:
        return lambda v: ZERO_DATE if v == 0 and type(v) is int else convert(v)
    return convert


def _row_converter(struct_schema: Mapping[str, Any] | None, binlog: bool = False) -> RowConverter:
    if not struct_schema:
        return ()
    pairs = ((f["field"], column_converter(f, binlog)) for f in struct_schema.get("fields", ()))
    return tuple((column, convert) for column, convert in pairs if convert is not _as_is)


def _convert_row(row: Any, converters: RowConverter, side: str) -> dict[str, Any] | None:
    if row is None:
        return None
    if not isinstance(row, dict):
        raise _Bad(f"'{side}' must be an object, got {type(row).__name__}")
    out = dict(row)
    for column, convert in converters:
        value = out.get(column)
        if value is None:
            continue
        try:
            out[column] = convert(value)
        except _Bad as exc:
            raise _Bad(f"column {side}.{column}: {exc}") from None
    return out


# --- envelope -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _EnvelopeSchema:
    before: RowConverter
    after: RowConverter
    columns: Mapping[str, str] | None = None


def column_type(field_schema: Mapping[str, Any]) -> str:
    """A column's Connect type as one text: "int64", "int32/io.debezium.time.Date"…"""
    name = field_schema.get("name")
    return f"{field_schema.get('type')}/{name}" if name else str(field_schema.get("type"))


def _columns(struct_schema: Mapping[str, Any] | None) -> Mapping[str, str] | None:
    if not struct_schema or not isinstance(struct_schema.get("fields"), list):
        return None
    return {str(f.get("field")): column_type(f) for f in struct_schema["fields"]}


BINLOG_CONNECTORS = frozenset({"mariadb", "mysql"})      # source.connector of the binlog-based connectors


def _is_binlog_source(source_schema: Mapping[str, Any] | None) -> bool:
    """The envelope's source block is a MariaDB/MySQL one (io.debezium.connector.<connector>.Source)."""
    parts = str((source_schema or {}).get("name") or "").split(".")
    return len(parts) >= 2 and parts[-1] == "Source" and parts[-2] in BINLOG_CONNECTORS


def _envelope_schema(schema: Mapping[str, Any] | None) -> _EnvelopeSchema:
    if not schema:
        return _EnvelopeSchema((), ())
    fields = {f.get("field"): f for f in schema.get("fields", ())}
    binlog = _is_binlog_source(fields.get("source"))
    return _EnvelopeSchema(_row_converter(fields.get("before"), binlog), _row_converter(fields.get("after"), binlog),
                           _columns(fields.get("after")) or _columns(fields.get("before")))


# The JSON converter always writes {"schema": …, "payload": …} in that order, and a table's schema text
# repeats on every message: keying a cache on that text skips both re-parsing and re-compiling it.
_SCHEMA_HEAD = b'{"schema":'
_PAYLOAD_SEP = b',"payload":'
_schema_cache: dict[bytes, _EnvelopeSchema] = {}
_schema_by_end: dict[int, tuple[bytes, _EnvelopeSchema]] = {}
_SCHEMA_CACHE_MAX = 1024


def _loads(data: bytes | str) -> Any:
    """JSON with exact numbers: NUMERIC decimals must not go via float (json with Decimal floats).

    orjson parses the common message ~5x faster; it is used only when its result is provably the same:
    it refuses what json accepts (NaN, lone surrogates, a BOM…) — then json decides, errors included —
    and it turns every non-integer number and every integer beyond 64 bits into a float — so a result
    holding any float is thrown away and json parses the text again.
    """
    if type(data) not in (bytes, str):   # e.g. a memoryview: json's own answer (a TypeError)
        return json.loads(data, parse_float=Decimal)
    try:
        fast = orjson.loads(data)
    except orjson.JSONDecodeError:
        fast = _FLOAT_SEEN
    try:
        exact = fast is not _FLOAT_SEEN and not _has_float(fast)
    except RecursionError:   # nesting deeper than Python's stack: let json decide
        exact = False
    if not exact:
        return json.loads(data, parse_float=Decimal)
    return fast


_FLOAT_SEEN = object()


def _has_float(value: Any) -> bool:
    """Any float anywhere in a parsed JSON value (type sets are built in C: a row costs ~1 µs)."""
    if type(value) is dict:
        children = value.values()
    elif type(value) is list:
        children = value
    else:
        return type(value) is float
    kinds = set(map(type, children))
    if float in kinds:
        return True
    if dict in kinds or list in kinds:
        for child in children:   # a loop, not any(genexpr): an envelope has two or three nested values
            kind = type(child)
            if (kind is dict or kind is list) and _has_float(child):
                return True
    return False


def _split_fast(value: bytes) -> tuple[_EnvelopeSchema, Any] | None:
    if not value.startswith(_SCHEMA_HEAD) or not value.endswith(b"}"):
        return None
    cut = value.find(_PAYLOAD_SEP)
    if cut < 0:
        return None
    # the schema text last seen at this length, compared in place: no copy and no hash of ~3–15 KB
    recent = _schema_by_end.get(cut)
    if recent is not None and value.startswith(recent[0], len(_SCHEMA_HEAD)):
        compiled = recent[1]
    else:
        compiled = None
    try:
        if compiled is None:
            schema_text = value[len(_SCHEMA_HEAD):cut]
            compiled = _schema_cache.get(schema_text)
            if compiled is None:
                compiled = _envelope_schema(_loads(schema_text))
                if len(_schema_cache) >= _SCHEMA_CACHE_MAX:
                    _schema_cache.clear()
                    _schema_by_end.clear()
                _schema_cache[schema_text] = compiled
            _schema_by_end[cut] = (schema_text, compiled)
        return compiled, _loads(value[cut + len(_PAYLOAD_SEP):-1])
    except (ValueError, AttributeError, TypeError, _Bad):
        return None  # the separator was inside a string, or odd layout: take the slow path


def _parse_value(value: bytes | str | Mapping[str, Any],
                 field_schemas: Mapping[str, Mapping[str, Any]] | None) -> tuple[_EnvelopeSchema, Any]:
    if isinstance(value, bytes):
        fast = _split_fast(value)
        if fast is not None:
            return fast
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _Bad(f"value is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    if isinstance(value, str):
        try:
            value = _loads(value)
        except ValueError as exc:
            raise _Bad(f"value is not JSON: {exc}") from None
    if not isinstance(value, Mapping):
        raise _Bad(f"value must be a JSON object, got {type(value).__name__}")
    if "payload" in value and "schema" in value:
        return _envelope_schema(value["schema"]), value["payload"]
    # schemas.enable=false: the envelope itself, typed only through the caller's hints
    hints = _row_converter({"fields": [dict(s, field=c) for c, s in (field_schemas or {}).items()]})
    return _EnvelopeSchema(hints, hints), value


def _parse_key(key: bytes | str | Mapping[str, Any] | None) -> dict[str, Any] | None:
    if key is None or isinstance(key, Mapping):
        return dict(key) if key is not None else None
    try:
        parsed = _loads(key)
    except (ValueError, UnicodeDecodeError):
        return None  # the key only helps; a non-JSON key (e.g. a string converter) is not an error
    if isinstance(parsed, dict) and "payload" in parsed and "schema" in parsed:
        parsed = parsed["payload"]
    return parsed if isinstance(parsed, dict) else None


def _snapshot(marker: Any) -> tuple[bool, str]:
    # Debezium ≤1.x wrote a boolean; later versions an enum string (true, first, last, incremental…)
    text = str(marker).lower() if marker is not None else "false"
    return text not in ("false", "none"), text


def _optional_int(source: Mapping[str, Any], name: str) -> int | None:
    value = source.get(name)
    if value is None:
        return None
    try:
        return _int(value)
    except _Bad as exc:
        raise _Bad(f"source.{name}: {exc}") from None


# --- the source position, one helper per connector kind -------------------------------------------------
# (schema, lsn, tx_id, binlog "file:pos:row") of a source block

Position = tuple[str | None, int | None, int | None, str | None]


def _wal_position(source: Mapping[str, Any]) -> Position:
    """PostgreSQL (and any connector with lsn/txId): the block says it all."""
    return source.get("schema"), _optional_int(source, "lsn"), _optional_int(source, "txId"), None


def binlog_order(file: str, pos: int, row: int) -> int:
    """One number ordering binlog positions: file number · 2³² + pos + row (module docstring says why)."""
    stem, _, number = file.rpartition(".")
    if not stem or not number.isdigit() or int(number) >= 2 ** 31:
        raise _Bad(f"source.file {file!r:.60} is not <name>.<number>")
    if pos < 0 or row < 0 or pos + row >= 2 ** 32:
        raise _Bad(f"binlog position {pos} row {row} is outside 0 … 2³²")
    return (int(number) << 32) + pos + row


def _gtid_sequence(gtid: Any) -> int | None:
    """The transaction's number in its GTID: MariaDB domain-server-seq, MySQL uuid:seq."""
    tail = str(gtid).replace(":", "-").rsplit("-", 1)[-1] if gtid else ""
    return int(tail) if tail.isdigit() else None


def _binlog_position(source: Mapping[str, Any]) -> Position:
    """MariaDB / MySQL: the database is the schema, the binlog position the order, the GTID the transaction."""
    if not source.get("file") or source.get("pos") is None:
        raise _Bad("binlog source block lacks file/pos")
    pos, row = _optional_int(source, "pos"), _optional_int(source, "row") or 0
    file = str(source["file"])
    return str(source["db"]), binlog_order(file, pos, row), _gtid_sequence(source.get("gtid")), f"{file}:{pos}:{row}"


_POSITION_OF: dict[str, Callable[[Mapping[str, Any]], Position]] = {c: _binlog_position for c in BINLOG_CONNECTORS}


def _source_position(source: Any) -> SourcePosition:
    if not isinstance(source, Mapping):
        raise _Bad("envelope has no 'source' block")
    missing = [n for n in ("connector", "db", "table") if not source.get(n)]
    if missing:
        raise _Bad(f"source block lacks {', '.join(missing)}")
    snapshot, marker = _snapshot(source.get("snapshot"))
    connector = str(source["connector"])
    schema, lsn, tx_id, binlog = _POSITION_OF.get(connector, _wal_position)(source)
    return SourcePosition(
        connector=connector, db=str(source["db"]), schema=schema, table=str(source["table"]),
        lsn=lsn, tx_id=tx_id, commit_time_ms=_optional_int(source, "ts_ms"), snapshot=snapshot,
        server=str(source.get("name") or ""), snapshot_marker=marker, binlog=binlog)


def _change(topic: str, key: Any, schema: _EnvelopeSchema, payload: Any) -> Change:
    if not isinstance(payload, Mapping):
        raise _Bad(f"payload must be an object, got {type(payload).__name__}")
    op = payload.get("op")
    if op not in OPS:
        raise _Bad(f"unknown op {op!r:.20} (expected one of c, u, d, r, t)")
    source = _source_position(payload.get("source"))
    try:
        before = _convert_row(payload.get("before"), schema.before, "before")
        after = _convert_row(payload.get("after"), schema.after, "after")
    except _Bad as exc:
        raise _Bad(f"{exc} [position {source.describe()}]") from None
    if op in ("c", "u", "r") and after is None:
        raise _Bad(f"op '{op}' without an 'after' row [position {source.describe()}]")
    if op == "d" and before is None:
        raise _Bad(f"op 'd' without a 'before' row [position {source.describe()}]")
    ts_ms = payload.get("ts_ms")
    return Change(op=op, before=before, after=after, source=source,
                  ts_ms=_int(ts_ms) if ts_ms is not None else None, topic=topic, key=_parse_key(key),
                  columns=schema.columns)


def _heartbeat(topic: str, payload: Any) -> Heartbeat:
    if not isinstance(payload, Mapping) or payload.get("ts_ms") is None:
        raise _Bad("heartbeat without ts_ms")
    return Heartbeat(ts_ms=_int(payload["ts_ms"]), prefix=topic[len(HEARTBEAT_TOPIC_PREFIX):])


def _position_hint(payload: Any) -> str | None:
    source = payload.get("source") if isinstance(payload, Mapping) else None
    if not isinstance(source, Mapping):
        return None
    if source.get("file") is not None:
        return f"binlog={source.get('file')}:{source.get('pos')}:{source.get('row')} table={source.get('table')}"
    return f"lsn={source.get('lsn')} txId={source.get('txId')} table={source.get('table')}"


def decode_message(topic: str, key: bytes | str | Mapping[str, Any] | None,
                   value: bytes | str | Mapping[str, Any] | None,
                   field_schemas: Mapping[str, Mapping[str, Any]] | None = None,
                   ) -> Change | Heartbeat | DecodeError | None:
    """Decode one Debezium JSON-converter message; see the module docstring. Never raises."""
    if value is None or value == b"" or value == "":
        return None  # tombstone (some clients hand a null value over as empty bytes)
    payload: Any = None
    try:
        schema, payload = _parse_value(value, field_schemas)
        if topic.startswith(HEARTBEAT_TOPIC_PREFIX):
            return _heartbeat(topic, payload)
        return _change(topic, key, schema, payload)
    except _Bad as exc:
        return DecodeError(reason=str(exc), topic=topic, position=_position_hint(payload))
    except Exception as exc:  # noqa: BLE001 — a malformed message must never stop the pipeline
        return DecodeError(reason=f"unreadable envelope ({type(exc).__name__}: {exc})"[:500],
                           topic=topic, position=_position_hint(payload))
