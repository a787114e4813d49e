"""Map stage: one HIS row change → the catalog record(s) it feeds, still in the hospital's LOCAL codes.

The hospital's layout is data: a source-mapping YAML file (schemas/mapping/<hospital>.yaml) says which
HIS table drives which catalog table, which reference rows are joined in, and how each catalog field is
computed. Changing hospitals changes that file and its value maps, never this code.

    organisation: {code: 12440100455800001P, name: 演示医院}   # env HISBRIDGE_ORG_CODE / _NAME override
    valuemaps_dir: valuemaps                                  # CSVs local,national,note (relative)
    valuemaps: {yes_no_yn: {Y: "1", N: "2"}}                  # named inline maps
    lookups:                                                  # reference rows kept from their CDC topics
      patient: {source: his.pat_master, key: [patient_id]}
      diagnoses_of: {source: his.mr_diagnosis, key: [inpatient_no], member: [seq]}   # many rows per key
    tables:
      mjzzlxx:
        drivers:                                              # a change on any driver yields the record
          - {source: his.op_visit, as: visit}
          - {source: his.op_diagnosis, as: diag, when: {seq: 1}}
        joins:                                                # alias → lookup row; key from bound aliases
          visit: {lookup: visit, key: [diag.visit_id]}        # (used when `diag` drove)
          diag: {lookup: op_diagnosis, key: [visit.visit_id, 1]}
          doctor: {lookup: staff, key: [visit.doctor_code], absent: "null"}
        fields:
          jzlsh: visit.visit_id                               # alias.column
          xb: {col: patient.sex, valuemap: sex}               # local code → national in transcode
          jzksmc: {col: dept.dept_name, name_of: jzksdm}      # the national name once jzksdm is national

Drivers: `when` filters driver rows; `each: {lookup, key, as[, when]}` fans a parent row out over a
many-row lookup (archiving a front page makes its diagnosis rows reportable). Joins are resolved in
dependency order per driver; `absent` says what a missing row means: wait (default: MissingLookup, the
wiring waits a bounded time, then quarantines with the key), null (fields stay empty) or skip (no record,
e.g. a front page without a TCM supplement); a join `when` failing on the found row means "not
reportable yet" (no output: the row that makes it reportable drives the record later). `newer: skip` on a
join (or an `each`) whose rows drive the table too: when the joined row's source position is above the
driving change's, that row's own change derives the record (a backlog read after both rows were written
would otherwise derive it once per driver); an unknown position or a revoke always derives. Only where
that row's driver waits for this driver's row (a plain join, `absent: wait`, no `when`): topics arrive out
of source order, and a partner that passes over a missing row would leave the record to neither.

Expressions: "alias.column" | {col: alias.column} | {const: v} | {config: org_code|org_name} |
{date: e} (date of a date-time) | {str: e} | {int: e} | {concat: [e…], sep: " "} | {coalesce: [e…]} |
{add: [e…]} | {age_years: [birth, at]} | {age_days: [birth, at]} | {period_start: e} ("YYYY-MM"/"YYYY" →
first day). Beside the expression a field may carry `valuemap: name-or-inline-map` (local → national, applied
by the transcode stage) and `name_of: code_field` (after transcoding, the national name of that code
replaces the mapped value when the value set names it, so code and name agree).
Conditions (`when`): {column: value} equality, {column: [v…]} membership, {column: {not: v}},
{column: {matches: regex}}; all must hold.

`yljgdm` (organisation code) and `xgbz` (0, or 1 for a delete) are filled here for every table (with
`organisation: {from_row: true}`, the city platform's identity mapping, from the uploaded row itself);
`report_datetime` is stamped by the sink. Deletes (op 'd') map from `before`; an update that leaves a
driver's `when` (e.g. a registration cancelled) is a revoke too. Values are coerced to the catalog kind
when they are text (decimal.handling.mode=string). Mistakes in the file are MappingError naming the file
and line: an operator must fix them. Reference rows reach the wiring's lookup tables via `lookup_updates`.
"""
from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import yaml
from hisbridge.catalog.model import Catalog, Field, Table
from hisbridge.chain.decode import Change
from hisbridge.settings import Org, defaults

AUTO_FIELDS = ("yljgdm", "xgbz")           # filled by map_change for every table
KEY_SEP = "\x1f"                            # unit separator: never inside a HIS key value

Row = Mapping[str, Any]
Bindings = dict[str, Row]
Compiled = Callable[[Bindings], Any]
Lookups = Mapping[str, Mapping[str, Row]]


class MappingError(ValueError):
    """The source-mapping file is wrong: an operator must fix it (message names file and line)."""


# --- results ------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Mapped:
    table: str
    record: dict[str, Any]
    op: str                         # the source op; 'd' (or an update leaving `when`) revokes


@dataclass(frozen=True, slots=True)
class MissingLookup:
    """A reference row not (yet) known: the wiring waits a bounded time, then quarantines with `key`."""
    table: str
    lookup: str
    key: str
    partial: dict[str, Any] = field(default_factory=dict)   # the record with the missing parts empty

    def describe(self) -> str:
        return f"{self.lookup}[{self.key.replace(KEY_SEP, ',')}]"


@dataclass(frozen=True, slots=True)
class Skipped:
    """A joined row says the record is not reportable yet (e.g. its front page is not archived)."""
    table: str
    why: str


@dataclass(frozen=True, slots=True)
class Unmappable:
    table: str
    rule: str
    message: str


MapResult = Mapped | MissingLookup | Skipped | Unmappable


# --- the mapping as values ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Expr:
    run: Compiled
    refs: frozenset[str]            # aliases it reads
    column: tuple[str, str] | None  # (alias, column) when it is a plain column reference
    text: str
    columns: frozenset[tuple[str, str]] = frozenset()   # every (alias, column) it reads (the HIS check)


@dataclass(frozen=True)
class ValueMap:
    name: str
    codes: Mapping[str, str]
    origin: str                     # file (and line) it came from


@dataclass(frozen=True)
class Lookup:
    name: str
    source: str                     # schema.table
    key: tuple[str, ...]
    member: tuple[str, ...] = ()    # many-lookup: rows grouped by `key`, told apart by `member` columns
    origin: str = ""                # file:line (the HIS check names it)

    @property
    def many(self) -> bool:
        return bool(self.member)


@dataclass(frozen=True)
class Each:
    """Fan-out: for every row of a many-lookup group (e.g. the diagnoses of a front page when it is
    archived), one record — the child rows were written before the parent became reportable."""
    lookup: str
    key: tuple[Expr, ...]
    alias: str
    when: Callable[[Row], bool] | None
    when_columns: tuple[str, ...] = ()
    newer: str = "derive"           # a member newer than the parent's change: "derive" anyway, or "skip"
    partners: tuple[Driver, ...] = ()    # the drivers of the member's source (`newer: skip`)


@dataclass(frozen=True)
class Driver:
    source: str
    alias: str
    when: Callable[[Row], bool] | None
    origin: str
    each: Each | None = None
    when_columns: tuple[str, ...] = ()      # columns its `when` reads (the HIS check)

    @property
    def bound(self) -> tuple[str, ...]:
        return (self.alias, self.each.alias) if self.each else (self.alias,)


@dataclass(frozen=True)
class Join:
    alias: str
    lookup: str
    key: tuple[Expr, ...]
    absent: str                     # no row under the key: "wait" (MissingLookup), "null", "skip" (no record)
    origin: str
    when: Callable[[Row], bool] | None = None   # a found row failing it: not reportable yet, no output
    when_columns: tuple[str, ...] = ()
    newer: str = "derive"           # the found row newer than the driving change: "derive" anyway, or "skip"
    partners: tuple[Driver, ...] = ()    # the drivers of the found row's source (`newer: skip`)


@dataclass(frozen=True)
class FieldMap:
    name: str
    expr: Expr
    valuemap: ValueMap | None
    origin: str
    target: Field = field(compare=False, repr=False)
    name_of: str | None = None      # after transcoding: the national name of that code field, when it has one


@dataclass(frozen=True)
class TableMapping:
    table: str
    drivers: tuple[Driver, ...]
    joins: Mapping[str, Join]
    fields: tuple[FieldMap, ...]
    join_order: Mapping[str, tuple[str, ...]]  # driver alias → joins in a resolvable order
    origin: str
    target: Table = field(compare=False, repr=False)   # the catalog table it feeds

    @cached_property
    def fill(self) -> Callable[[Bindings, dict[str, Any]], None]:
        """map_row's field loop as one straight-line function generated from the fields (as dataclasses do
        for __init__): a plain alias.column reference read in place, the expression called otherwise, and
        _coerce only where the value is not already of the field's (non-decimal) kind — as _coerce would
        leave it. Any exception: map_row runs the field loop itself, which names the field."""
        env: dict[str, Any] = {"coerce": _coerce}
        rows: dict[str, str] = {}
        lines = ["def fill(b, record):"]
        for i, fm in enumerate(self.fields):
            ref = fm.expr.column
            if ref is not None:
                if ref[0] not in rows:
                    rows[ref[0]] = f"row_{len(rows)}"
                    lines.append(f"    {rows[ref[0]]} = b[{ref[0]!r}]")
                lines.append(f"    v = {rows[ref[0]]}.get({ref[1]!r})")
            else:
                env[f"run_{i}"] = fm.expr.run
                lines.append(f"    v = run_{i}(b)")
            env[f"field_{i}"], native = fm.target, _NATIVE.get(fm.target.kind)
            if native is None or native is Decimal:
                lines.append(f"    record[{fm.name!r}] = coerce(field_{i}, v)")
            else:
                env[f"kind_{i}"] = native
                lines.append(f"    record[{fm.name!r}] = v if v is None or type(v) is kind_{i} else coerce(field_{i}, v)")
        lines.append("    return None")
        exec("\n".join(lines), env)  # noqa: S102 — built above from the mapping's names only
        return env["fill"]

    @cached_property
    def valuemapped(self) -> tuple["FieldMap", ...]:
        """The fields with a value map (transcode's first pass)."""
        return tuple(fm for fm in self.fields if fm.valuemap is not None)

    @cached_property
    def named(self) -> tuple["FieldMap", ...]:
        """The fields given a code field's national name (transcode's second pass)."""
        return tuple(fm for fm in self.fields if fm.name_of is not None)


@dataclass(frozen=True)
class SourceMapping:
    path: str
    org_code: str
    org_name: str
    lookups: Mapping[str, Lookup]
    tables: Mapping[str, TableMapping]
    valuemaps: Mapping[str, ValueMap]
    by_source: Mapping[str, tuple[tuple[TableMapping, Driver], ...]]
    lookup_reads: Mapping[str, frozenset[str]] = field(default_factory=dict)   # lookup_columns(self)
    source_reads: Mapping[str, frozenset[str]] = field(default_factory=dict)   # source_columns(self)
    org_from_row: bool = False      # a city platform: yljgdm and xgbz come from the uploaded row itself

    @property
    def lookup_sources(self) -> frozenset[str]:
        return frozenset(l.source for l in self.lookups.values())

    @property
    def sources(self) -> tuple[str, ...]:
        """Every HIS table ("schema.table") the mapping reads, drivers and lookups: what the connector captures."""
        return tuple(sorted(set(self.by_source) | self.lookup_sources))


# --- YAML with line numbers -----------------------------------------------------------------------------

class _LineDict(dict):
    line: int = 0
    key_lines: dict[Any, int] = {}


class _Loader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> _LineDict:
    data = _LineDict(loader.construct_mapping(node, deep=True))
    data.line = node.start_mark.line + 1
    data.key_lines = {k.value: k.start_mark.line + 1 for k, _ in node.value if isinstance(k, yaml.ScalarNode)}
    return data


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _at(path: str, node: Any, what: str, key: Any = None) -> str:
    """'file:line (what)': the line of `key` inside the mapping `node`, else of the node itself."""
    line = getattr(node, "key_lines", {}).get(key) if key is not None else None
    line = line or getattr(node, "line", 0)
    return f"{path}:{line} ({what})" if line else f"{path} ({what})"


# --- expressions -----------------------------------------------------------------------------------------

_REF = re.compile(r"^([a-z_][a-z0-9_]*)\.([A-Za-z_][A-Za-z0-9_]*)$")


def _ref(text: str, where: str) -> Expr:
    match = _REF.match(text.strip())
    if not match:
        raise MappingError(f"{where}: {text!r} is not alias.column (use {{const: ...}} for a literal)")
    alias, column = match.groups()
    return Expr(lambda b: b[alias].get(column), frozenset({alias}), (alias, column), text,
                frozenset({(alias, column)}))


def _const(value: Any) -> Expr:
    return Expr(lambda b: value, frozenset(), None, repr(value))


def _to_date(value: Any) -> Any:
    return value.date() if isinstance(value, datetime) else value


def _to_str(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (datetime, date)):
        return value.isoformat(sep=" ") if isinstance(value, datetime) else value.isoformat()
    return str(value)


def _to_int(value: Any) -> Any:
    if isinstance(value, (str, Decimal)) and not isinstance(value, bool):
        try:
            return int(Decimal(str(value).strip()))
        except (InvalidOperation, ValueError):
            return value
    return value


def _age_years(birth: Any, at: Any) -> int | None:
    if not isinstance(birth, date) or not isinstance(at, date):
        return None
    birth, at = _to_date(birth), _to_date(at)
    return at.year - birth.year - ((at.month, at.day) < (birth.month, birth.day))


def _age_days(birth: Any, at: Any) -> int | None:
    if not isinstance(birth, date) or not isinstance(at, date):
        return None
    return (_to_date(at) - _to_date(birth)).days


def _period_start(value: Any) -> Any:
    text = _to_str(value)
    if isinstance(text, str) and re.fullmatch(r"\d{4}-\d{2}", text.strip()):
        return date.fromisoformat(text.strip() + "-01")
    if isinstance(text, str) and re.fullmatch(r"\d{4}", text.strip()):
        return date(int(text), 1, 1)
    return value


def _concat(parts: Sequence[Any], sep: str) -> str | None:
    present = [_to_str(p) for p in parts if p not in (None, "")]
    return sep.join(present) if present else None


def _add(values: list[Any]) -> Any:
    """Sum of numbers (e.g. a 0-based HIS sequence + 1); None when any part is missing."""
    if any(v is None for v in values):
        return None
    return sum(_to_int(v) for v in values)


def _coalesce(values: Iterable[Any]) -> Any:
    return next((v for v in values if v not in (None, "")), None)


_UNARY: dict[str, Callable[[Any], Any]] = {"date": _to_date, "str": _to_str, "int": _to_int,
                                           "period_start": _period_start}
_BINARY: dict[str, Callable[[Any, Any], Any]] = {"age_years": _age_years, "age_days": _age_days}


def compile_expr(spec: Any, where: str, settings: Mapping[str, str]) -> Expr:
    """One field expression (see the module docstring) → a compiled Expr."""
    if isinstance(spec, str):
        return _ref(spec, where)
    if spec is None or isinstance(spec, (int, float, bool)):
        return _const(spec)
    if not isinstance(spec, dict) or len(spec) - ("sep" in spec) != 1:
        raise MappingError(f"{where}: an expression is alias.column or a one-operator mapping, got {spec!r}")
    (op, arg), = ((k, v) for k, v in spec.items() if k != "sep")
    if op == "col":
        return _ref(str(arg), where)
    if op == "const":
        return _const(arg)
    if op == "config":
        if arg not in settings:
            raise MappingError(f"{where}: unknown configuration value {arg!r} (known: {', '.join(settings)})")
        return _const(settings[arg])
    if op in _UNARY:
        inner, fn = compile_expr(arg, where, settings), _UNARY[op]
        return Expr(lambda b: fn(inner.run(b)), inner.refs, None, f"{op}({inner.text})", inner.columns)
    parts = [compile_expr(a, where, settings) for a in (arg if isinstance(arg, list) else [arg])]
    refs = frozenset().union(*(p.refs for p in parts))
    cols = frozenset().union(*(p.columns for p in parts))
    text = f"{op}({', '.join(p.text for p in parts)})"
    if op in _BINARY:
        if len(parts) != 2:
            raise MappingError(f"{where}: {op} takes [birth date, moment]")
        fn2, (a, b2) = _BINARY[op], parts
        return Expr(lambda b: fn2(a.run(b), b2.run(b)), refs, None, text, cols)
    if op == "concat":
        sep = str(spec.get("sep", ""))
        return Expr(lambda b: _concat([p.run(b) for p in parts], sep), refs, None, text, cols)
    if op == "coalesce":
        return Expr(lambda b: _coalesce(p.run(b) for p in parts), refs, None, text, cols)
    if op == "add":
        return Expr(lambda b: _add([p.run(b) for p in parts]), refs, None, text, cols)
    raise MappingError(f"{where}: unknown expression operator {op!r}")


def _compile_when(spec: Any, where: str) -> Callable[[Row], bool] | None:
    if spec is None:
        return None
    if not isinstance(spec, dict) or not spec:
        raise MappingError(f"{where}: `when` is a mapping of column → condition")
    tests: list[Callable[[Row], bool]] = []
    for column, cond in spec.items():
        tests.append(_condition(str(column), cond, where))
    return lambda row: all(t(row) for t in tests)


def _condition(column: str, cond: Any, where: str) -> Callable[[Row], bool]:
    if isinstance(cond, list):
        allowed = {_to_str(c) for c in cond}
        return lambda row: _to_str(row.get(column)) in allowed
    if isinstance(cond, dict):
        if set(cond) == {"not"}:
            banned = _to_str(cond["not"])
            return lambda row: _to_str(row.get(column)) != banned
        if set(cond) == {"matches"}:
            pattern = re.compile(str(cond["matches"]))
            return lambda row: isinstance(row.get(column), str) and bool(pattern.fullmatch(row[column]))
        raise MappingError(f"{where}: condition on {column!r} must be a value, a list, {{not: v}} or {{matches: re}}")
    wanted = _to_str(cond)
    return lambda row: _to_str(row.get(column)) == wanted


# --- value maps -------------------------------------------------------------------------------------------

def load_valuemap_csv(path: Path) -> ValueMap:
    """A CSV with columns local,national[,note] → ValueMap; a duplicate local code is an operator error."""
    codes: dict[str, str] = {}
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or not {"local", "national"} <= set(reader.fieldnames):
            raise MappingError(f"{path}: value map CSV needs columns local,national[,note]")
        for number, row in enumerate(reader, start=2):
            local, national = (row.get("local") or "").strip(), (row.get("national") or "").strip()
            if not local or not national:
                raise MappingError(f"{path}:{number}: empty local or national code")
            if local in codes and codes[local] != national:
                raise MappingError(f"{path}:{number}: local code {local!r} mapped twice")
            codes[local] = national
    return ValueMap(path.stem, codes, str(path))


def _inline_map(name: str, data: Any, where: str) -> ValueMap:
    if not isinstance(data, dict) or not data:
        raise MappingError(f"{where}: an inline value map is a non-empty mapping local → national")
    return ValueMap(name, {_to_str(k): _to_str(v) for k, v in data.items()}, where)


def _valuemap(spec: Any, name: str, where: str, named: Mapping[str, ValueMap], folder: Path) -> ValueMap:
    if isinstance(spec, dict):
        return _inline_map(f"inline:{name}", spec, where)
    key = str(spec)
    if key in named:
        return named[key]
    path = folder / f"{key}.csv"
    if not path.exists():
        raise MappingError(f"{where}: unknown value map {key!r} (no inline map and no {path})")
    return load_valuemap_csv(path)


# --- loading ----------------------------------------------------------------------------------------------

def load_mapping(catalog: Catalog, path: str | os.PathLike[str] | None = None, org: Org | None = None) -> SourceMapping:
    """Read and validate the mapping file (default: the checkout's demo hospital) against the catalog;
    MappingError names file and line. `org` (the settings' organisation) overrides the file's code and name."""
    file = Path(path) if path is not None else defaults().paths.mapping
    try:
        data = yaml.load(file.read_text(encoding="utf-8"), Loader=_Loader)
    except OSError as exc:
        raise MappingError(f"cannot read mapping file {file}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise MappingError(f"{file}: not valid YAML: {exc}") from None
    return parse_mapping(data, catalog, str(file), file.parent, org)


_TOP_KEYS = {"organisation", "valuemaps_dir", "valuemaps", "lookups", "tables", "hospital", "doc"}


def parse_mapping(data: Any, catalog: Catalog, path: str, base: Path, org_override: Org | None = None) -> SourceMapping:
    if not isinstance(data, dict) or "tables" not in data:
        raise MappingError(f"{path}: a mapping file is a YAML mapping with a `tables` section")
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise MappingError(f"{_at(path, data, 'top level')}: unknown key(s) {sorted(unknown)}")
    org = data.get("organisation") or {}
    org_code = (org_override.code if org_override else "") or str(org.get("code") or "")
    org_name = (org_override.name if org_override else "") or str(org.get("name") or "")
    if not org_code:
        raise MappingError(f"{path}: no organisation code: set `organisation: {{code: ...}}` or HISBRIDGE_ORG_CODE")
    settings = {"org_code": org_code, "org_name": org_name}
    folder = base / str(data.get("valuemaps_dir", "valuemaps"))
    named = {str(k): _inline_map(str(k), v, _at(path, data.get("valuemaps"), f"valuemap {k}", k))
             for k, v in (data.get("valuemaps") or {}).items()}
    lookups = _parse_lookups(data.get("lookups") or {}, path)
    tables: dict[str, TableMapping] = {}
    for name, spec in (data.get("tables") or {}).items():
        where = _at(path, data["tables"], f"table {name}", name)
        if name not in catalog.tables:
            raise MappingError(f"{where}: {name!r} is not a catalog table (known: {', '.join(sorted(catalog.tables))})")
        tables[name] = _parse_table(catalog.tables[name], spec, where, path, settings, lookups, named, folder)
    valuemaps = dict(named)
    for table in tables.values():
        valuemaps.update({f.valuemap.name: f.valuemap for f in table.fields if f.valuemap is not None})
    by_source: dict[str, list[tuple[TableMapping, Driver]]] = {}
    for table in tables.values():
        for driver in table.drivers:
            by_source.setdefault(driver.source, []).append((table, driver))
    parsed = SourceMapping(path, org_code, org_name, lookups, tables, valuemaps,
                           {k: tuple(v) for k, v in by_source.items()}, org_from_row=bool(org.get("from_row")))
    return replace(parsed, lookup_reads=lookup_columns(parsed), source_reads=source_columns(parsed))


def _parse_lookups(data: Any, path: str) -> dict[str, Lookup]:
    out: dict[str, Lookup] = {}
    for name, spec in data.items():
        where = _at(path, data, f"lookup {name}", name)
        if not isinstance(spec, dict) or not spec.get("source") or not spec.get("key"):
            raise MappingError(f"{where}: a lookup needs `source: schema.table` and `key: [columns]`")
        key = spec["key"] if isinstance(spec["key"], list) else [spec["key"]]
        member = spec.get("member") or []
        member = member if isinstance(member, list) else [member]
        out[str(name)] = Lookup(str(name), str(spec["source"]), tuple(str(k) for k in key),
                                tuple(str(m) for m in member), where)
    return out


def _check_newer_skip(name: str, drivers: tuple[Driver, ...], joins: Mapping[str, Join],
                      lookups: Mapping[str, Lookup]) -> None:
    """`newer: skip` on driver X's join (or `each`) to a row Y leaves the record to Y's own change. Kafka
    does not deliver two topics in source order: Y's change may be handled before X's older row reached
    the store, and then Y's change derives the record only if it waits for X's row. A partner that binds X
    with `absent: skip`/`null`, a `when`, or a fan-out over the members present would derive it neither."""
    for x in drivers:
        skips = [(j.origin, j.lookup) for alias, j in joins.items() if j.newer == "skip" and alias not in x.bound]
        if x.each is not None and x.each.newer == "skip":
            skips.append((x.origin, x.each.lookup))
        back = joins.get(x.alias)
        waits = (back is not None and back.absent == "wait" and back.when is None
                 and lookups[back.lookup].source == x.source)
        for origin, lookup in skips:
            for partner in (d for d in drivers if d.source == lookups[lookup].source):
                if x.alias in partner.bound or not waits:
                    raise MappingError(
                        f"{origin}: `newer: skip` leaves {name} to {partner.source}'s own change, which may come "
                        f"before the older {x.source} row: driver {partner.alias} must then wait for it (join "
                        f"{x.alias} with `absent: wait` and no `when`), or drop `newer: skip` here")


def _parse_table(table: Table, spec: Any, where: str, path: str, settings: Mapping[str, str],
                 lookups: Mapping[str, Lookup], named: Mapping[str, ValueMap], folder: Path) -> TableMapping:
    if not isinstance(spec, dict) or not spec.get("drivers") or not isinstance(spec.get("fields"), dict):
        raise MappingError(f"{where}: a table mapping needs `drivers` and `fields`")
    drivers = tuple(_parse_driver(d, _at(path, d, f"{table.name} driver"), settings, lookups)
                    for d in spec["drivers"])
    joins = {str(alias): _parse_join(str(alias), j, _at(path, spec["joins"], f"{table.name} join {alias}", alias),
                                     settings, lookups)
             for alias, j in (spec.get("joins") or {}).items()}
    sources = {d.source for d in drivers}
    for alias, join in joins.items():
        if lookups[join.lookup].many:
            raise MappingError(f"{join.origin}: lookup {join.lookup} holds many rows per key; join one-row "
                               f"lookups only (use a driver's `each` to fan out)")
        if join.newer == "skip" and lookups[join.lookup].source not in sources:
            raise MappingError(f"{join.origin}: `newer: skip` leaves the record to the joined row's own change, "
                               f"but {lookups[join.lookup].source} does not drive {table.name}")
    for d in drivers:
        if d.each is not None and d.each.newer == "skip" and lookups[d.each.lookup].source not in sources:
            raise MappingError(f"{d.origin}: `newer: skip` leaves the record to the member row's own change, "
                               f"but {lookups[d.each.lookup].source} does not drive {table.name}")
    _check_newer_skip(table.name, drivers, joins, lookups)

    def partners(lookup: str) -> tuple[Driver, ...]:
        return tuple(d for d in drivers if d.source == lookups[lookup].source)
    joins = {a: replace(j, partners=partners(j.lookup)) if j.newer == "skip" else j for a, j in joins.items()}
    drivers = tuple(replace(d, each=replace(d.each, partners=partners(d.each.lookup)))
                    if d.each is not None and d.each.newer == "skip" else d for d in drivers)
    fields = tuple(_parse_field(table, str(name), f, _at(path, spec["fields"], f"{table.name}.{name}", name),
                                settings, named, folder) for name, f in spec["fields"].items())
    _check_coverage(table, fields, where)
    known = {a for d in drivers for a in d.bound} | set(joins)
    each_keys = [k for d in drivers if d.each for k in d.each.key]
    for item in list(fields) + [k for j in joins.values() for k in j.key] + each_keys:
        expr = item.expr if isinstance(item, FieldMap) else item
        missing = expr.refs - known
        if missing:
            raise MappingError(f"{where}: {expr.text} uses unknown alias(es) {sorted(missing)}")
    order = {d.alias: _join_order(d.bound, joins, where) for d in drivers}
    return TableMapping(table.name, drivers, joins, fields, order, where, table)


def _parse_driver(spec: Any, where: str, settings: Mapping[str, str], lookups: Mapping[str, Lookup]) -> Driver:
    if not isinstance(spec, dict) or not spec.get("source") or not spec.get("as"):
        raise MappingError(f"{where}: a driver is {{source: schema.table, as: alias[, when: ...][, each: ...]}}")
    alias, each = str(spec["as"]), None
    if spec.get("each") is not None:
        e = spec["each"]
        if not isinstance(e, dict) or not {"lookup", "key", "as"} <= set(e):
            raise MappingError(f"{where}: `each` is {{lookup: name, key: [expressions], as: alias[, when: ...]"
                               f"[, newer: derive|skip]}}")
        lookup = lookups.get(str(e["lookup"]))
        if lookup is None or not lookup.many:
            raise MappingError(f"{where}: `each` needs a many-row lookup (with `member`), not {e['lookup']!r}")
        keys = e["key"] if isinstance(e["key"], list) else [e["key"]]
        compiled = tuple(compile_expr(k, where, settings) for k in keys)
        if any(k.refs - {alias} for k in compiled) or len(keys) != len(lookup.key):
            raise MappingError(f"{where}: `each` key must read only {alias!r} and give {list(lookup.key)}")
        each = Each(lookup.name, compiled, str(e["as"]), _compile_when(e.get("when"), where), _columns_of(e.get("when")),
                    _newer(e, where))
    return Driver(str(spec["source"]), alias, _compile_when(spec.get("when"), where), where, each,
                  _columns_of(spec.get("when")))


def _columns_of(when: Any) -> tuple[str, ...]:
    return tuple(str(c) for c in when) if isinstance(when, dict) else ()


_ABSENT = ("wait", "null", "skip")
_NEWER = ("derive", "skip")


def _parse_join(alias: str, spec: Any, where: str, settings: Mapping[str, str],
                lookups: Mapping[str, Lookup]) -> Join:
    if not isinstance(spec, dict) or "lookup" not in spec or "key" not in spec:
        raise MappingError(f"{where}: a join is {{lookup: name, key: [expressions][, absent: wait|null|skip]"
                           f"[, when: ...][, newer: derive|skip]}}")
    lookup = lookups.get(str(spec["lookup"]))
    if lookup is None:
        raise MappingError(f"{where}: unknown lookup {spec['lookup']!r} (declare it under `lookups`)")
    keys = spec["key"] if isinstance(spec["key"], list) else [spec["key"]]
    if len(keys) != len(lookup.key):
        raise MappingError(f"{where}: lookup {lookup.name} is keyed by {list(lookup.key)}, got {len(keys)} value(s)")
    absent = str(spec.get("absent", "null" if spec.get("optional") else "wait"))
    if absent not in _ABSENT:
        raise MappingError(f"{where}: `absent` is one of {', '.join(_ABSENT)}, not {absent!r}")
    return Join(alias, lookup.name, tuple(compile_expr(k, where, settings) for k in keys),
                absent, where, _compile_when(spec.get("when"), where), _columns_of(spec.get("when")),
                _newer(spec, where))


def _newer(spec: Mapping[str, Any], where: str) -> str:
    newer = str(spec.get("newer", "derive"))
    if newer not in _NEWER:
        raise MappingError(f"{where}: `newer` is one of {', '.join(_NEWER)}, not {newer!r}")
    return newer


def _parse_field(table: Table, name: str, spec: Any, where: str, settings: Mapping[str, str],
                 named: Mapping[str, ValueMap], folder: Path) -> FieldMap:
    if name not in table.field_names:
        raise MappingError(f"{where}: table {table.name} has no field {name!r}")
    if name in AUTO_FIELDS or table.field(name).sink_stamped:
        raise MappingError(f"{where}: {name} is filled by hisbridge, do not map it")
    valuemap, name_of = None, None
    if isinstance(spec, dict) and ("valuemap" in spec or "name_of" in spec):
        spec = dict(spec)
        if "valuemap" in spec:
            valuemap = _valuemap(spec.pop("valuemap"), f"{table.name}.{name}", where, named, folder)
        if "name_of" in spec:
            name_of = str(spec.pop("name_of"))
            if name_of not in table.field_names or not table.field(name_of).valueset:
                raise MappingError(f"{where}: name_of needs a coded field of {table.name}, not {name_of!r}")
    return FieldMap(name, compile_expr(spec, where, settings), valuemap, where, table.field(name), name_of)


def _check_coverage(table: Table, fields: Sequence[FieldMap], where: str) -> None:
    mapped = {f.name for f in fields}
    missing = [f.name for f in table.fields if f.required and not f.sink_stamped
               and f.name not in AUTO_FIELDS and f.name not in mapped]
    if missing:
        raise MappingError(f"{where}: required field(s) of {table.name} not mapped: {', '.join(missing)}")


def _join_order(driver: tuple[str, ...], joins: Mapping[str, Join], where: str) -> tuple[str, ...]:
    """Joins reachable from the driver's aliases, each after the aliases its key reads (aliases the
    driver binds itself are not looked up)."""
    bound, order = set(driver), []
    pending = [a for a in joins if a not in bound]
    while pending:
        ready = [a for a in pending if frozenset().union(*(k.refs for k in joins[a].key)) <= bound]
        if not ready:
            raise MappingError(f"{where}: with driver {driver[0]!r} the join(s) {pending} cannot be resolved "
                               f"(their keys read aliases that are never bound)")
        for alias in ready:
            order.append(alias)
            bound.add(alias)
            pending.remove(alias)
    return tuple(order)


def check_valuemaps(mapping: SourceMapping, catalog: Catalog) -> list[str]:
    """National codes of value maps that are not in the target field's value set (operator warnings)."""
    problems = []
    for table in mapping.tables.values():
        cat = catalog.tables[table.table]
        for fm in table.fields:
            valueset = cat.valuesets.get(cat.field(fm.name).valueset or "") if fm.valuemap else None
            if valueset is None:
                continue
            bad = sorted({n for n in fm.valuemap.codes.values() if n not in valueset})
            if bad:
                problems.append(f"{fm.origin}: value map {fm.valuemap.name} gives {bad} not in value set "
                                f"{valueset.name}")
    return problems


# --- what the mapping reads --------------------------------------------------------------------------------

def _alias_reads(table: TableMapping) -> dict[str, set[str]]:
    """alias → the columns the table's fields, join keys and `each` keys read from it."""
    exprs = [f.expr for f in table.fields] + [k for j in table.joins.values() for k in j.key]
    exprs += [k for d in table.drivers if d.each for k in d.each.key]
    out: dict[str, set[str]] = {}
    for expr in exprs:
        for alias, column in expr.columns:
            out.setdefault(alias, set()).add(column)
    return out


def _when_columns(drivers: Iterable[Driver]) -> set[str]:
    return {c for d in drivers for c in d.when_columns}


def lookup_columns(mapping: SourceMapping) -> dict[str, frozenset[str]]:
    """Per lookup, every column a record can read from its rows (fields, keys, `when`s, its own key and
    member columns, the `when` of the drivers a `newer: skip` leaves a row to): all a reference store needs
    to keep."""
    out = {name: set(l.key) | set(l.member) for name, l in mapping.lookups.items()}
    for table in mapping.tables.values():
        reads = _alias_reads(table)
        for alias, join in table.joins.items():
            out[join.lookup] |= reads.get(alias, set()) | set(join.when_columns) | _when_columns(join.partners)
        for d in (d for d in table.drivers if d.each):
            out[d.each.lookup] |= (reads.get(d.each.alias, set()) | set(d.each.when_columns)
                                   | _when_columns(d.each.partners))
    return {name: frozenset(cols) for name, cols in out.items()}


def source_columns(mapping: SourceMapping) -> dict[str, frozenset[str]]:
    """Per HIS table ("schema.table"), every column the mapping reads from it, as driver or as lookup:
    what a change of its schema may not take away (schema drift)."""
    out: dict[str, set[str]] = {}
    for name, cols in lookup_columns(mapping).items():
        out.setdefault(mapping.lookups[name].source, set()).update(cols)
    for table in mapping.tables.values():
        reads = _alias_reads(table)
        for d in table.drivers:
            out.setdefault(d.source, set()).update(reads.get(d.alias, set()) | set(d.when_columns))
    return {source: frozenset(cols) for source, cols in out.items()}


def project(row: Row, columns: frozenset[str]) -> dict[str, Any]:
    """The row with only `columns` (those it has)."""
    return {c: row[c] for c in columns if c in row}


# --- lookups ----------------------------------------------------------------------------------------------

def lookup_key(values: Iterable[Any]) -> str:
    """The key under which a reference row is kept: key values as text, joined (str: Faust-table friendly)."""
    return KEY_SEP.join("" if v is None else _to_str(v) for v in values)


@dataclass(frozen=True, slots=True)
class LookupUpdate:
    """Set (row) or remove (row None) one reference row. One-row lookups: lookups[lookup][key] = row.
    Many-row lookups: lookups[lookup][key][member] = row."""
    lookup: str
    key: str
    member: str | None
    row: Row | None
    position: int | None = None     # the change's source position (LSN, binlog order): newer replaces older


def lookup_updates(mapping: SourceMapping, change: Change) -> list[LookupUpdate]:
    """What the wiring writes into its lookup tables for a change on a reference table: rows keep only the
    columns the mapping reads from that lookup, and the change's source position. An update that changes a
    key column first removes the row under its old key."""
    source, position = source_name(change), change.source.lsn
    out: list[LookupUpdate] = []
    for l in (l for l in mapping.lookups.values() if l.source == source):
        def place(row: Row) -> tuple[str, str | None]:
            return (lookup_key(row.get(c) for c in l.key),
                    lookup_key(row.get(c) for c in l.member) if l.many else None)
        if change.before is not None and (change.op == "d" or change.after is None
                                          or place(change.before) != place(change.after)):
            out.append(LookupUpdate(l.name, *place(change.before), None, position))
        if change.op != "d" and change.after is not None:
            columns = mapping.lookup_reads.get(l.name)
            row = project(change.after, columns) if columns else change.after
            out.append(LookupUpdate(l.name, *place(change.after), row, position))
    return out


# --- mapping a change -------------------------------------------------------------------------------------

def source_name(change: Change) -> str:
    """The HIS table of a change, "schema.table" as the mapping names it."""
    return f"{change.source.schema}.{change.source.table}" if change.source.schema else change.source.table


_NATIVE = {"string": str, "int": int, "decimal": Decimal, "datetime": datetime, "date": date}


def _coerce(field: Field, value: Any) -> Any:
    """Text from decimal.handling.mode=string and similar: turned into the catalog kind when it parses
    exactly; anything else is left as it is for the quality and Avro stages to report."""
    if value is None:
        return value
    kind = field.kind
    if type(value) is _NATIVE.get(kind):
        if kind != "decimal":
            return value
        try:
            return _at_scale(value, field.scale)
        except InvalidOperation:
            return value
    try:
        if kind == "string":
            return _to_str(value)
        if kind == "decimal" and isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return _at_scale(Decimal(str(value).strip()), field.scale)
        if kind == "int" and isinstance(value, (str, Decimal)):
            return _to_int(value)
        if kind == "datetime" and isinstance(value, str):
            return datetime.fromisoformat(value.strip())
        if kind == "date" and isinstance(value, str):
            return date.fromisoformat(value.strip()[:10])
    except (InvalidOperation, ValueError):
        return value
    return value


@lru_cache(maxsize=64)
def _quantum(scale: int) -> Decimal:
    return Decimal(1).scaleb(-scale)


def _at_scale(number: Decimal, scale: int | None) -> Decimal:
    """The number written at the catalog's scale (269.1 → 269.10) when that is exact; never rounded."""
    quantum = _quantum(scale or 0)
    if number.same_quantum(quantum):
        return number
    exact = number.quantize(quantum)       # InvalidOperation beyond the context's 28 digits: caller decides
    return exact if exact == number else number


def _side(change: Change, driver: Driver) -> tuple[Row | None, bool]:
    """(row to map from, revoke?) for this driver; None when the change does not concern it."""
    when = driver.when
    if change.op == "d":
        row = change.before
        return (row, True) if row is not None and (when is None or when(row)) else (None, False)
    row = change.after
    if row is None:
        return None, False
    if when is None or when(row):
        return row, False
    if change.op == "u" and change.before is not None and when(change.before):
        return change.before, True      # left the driver's filter: revoke what was reported
    return None, False


def _fill_field_by_field(table: TableMapping, bindings: Bindings, record: dict[str, Any]) -> Unmappable | None:
    """TableMapping.fill one field at a time, for the reason naming the field that failed."""
    for fm in table.fields:
        try:
            record[fm.name] = _coerce(fm.target, fm.expr.run(bindings))
        except Exception as exc:  # noqa: BLE001 — a bad row must become a reason, never a crash
            return Unmappable(table.table, "mapping_error", f"field {fm.name} = {fm.expr.text}: {type(exc).__name__}")
    return None


def map_row(mapping: SourceMapping, table: TableMapping, driver: Driver, bound: Mapping[str, Row], revoke: bool,
            lookups: Lookups, op: str = "c", position: int | None = None) -> MapResult:
    """The catalog record of `table` from the driver's rows, with the driver's joins looked up. `position`:
    the driving change's source position, for joins with `newer: skip`."""
    bindings: Bindings = dict(bound)
    missing: MissingLookup | None = None
    for alias in table.join_order[driver.alias]:
        join = table.joins[alias]
        try:
            if len(join.key) == 1:      # the common one-column key: a text key is itself
                key = join.key[0].run(bindings)
                if type(key) is not str:
                    key = lookup_key((key,))
            else:
                key = lookup_key(k.run(bindings) for k in join.key)
        except Exception as exc:  # noqa: BLE001 — a bad row must become a reason, never a crash
            return Unmappable(table.table, "mapping_error", f"join {alias}: {type(exc).__name__}: {exc}")
        rows = lookups.get(join.lookup, {})
        found = rows.get(key)
        if (found is not None and join.newer == "skip" and not revoke and _newer_than(rows, key, position)
                and _reported_by(join.partners, found)):
            return Skipped(table.table, f"{join.lookup}[{key}] is newer: its own change derives the record")
        if found is not None and join.when is not None and not join.when(found):
            return Skipped(table.table, f"{join.lookup}[{key}] is not reportable yet")
        if found is None and join.absent == "skip":
            return Skipped(table.table, f"no {join.lookup}[{key}]: nothing to report")
        if found is None and join.absent == "wait" and missing is None:
            missing = MissingLookup(table.table, join.lookup, key)
        bindings[alias] = found if found is not None else {}
    own = bound[driver.alias] if mapping.org_from_row else {}
    record: dict[str, Any] = {"yljgdm": own.get("yljgdm") or mapping.org_code}
    try:
        table.fill(bindings, record)
    except Exception:  # noqa: BLE001 — the field loop names the field
        failed = _fill_field_by_field(table, bindings, record)
        if failed is not None:
            return failed
    record["xgbz"] = "1" if revoke else str(own.get("xgbz") or "0")
    if missing is not None:
        return MissingLookup(missing.table, missing.lookup, missing.key, record)
    return Mapped(table.table, record, "d" if revoke else op)


def _newer_than(rows: Mapping[str, Row], key: str, position: int | None) -> bool:
    """Whether the joined row's source position is above the driving change's. Unknown on either side
    (a snapshot, plain-dict lookups): not newer, so the record is derived — twice at worst, never lost."""
    of = getattr(rows, "position", None)
    kept = of(key) if of is not None and position is not None else None
    return kept is not None and kept > position


def _reported_by(partners: Sequence[Driver], row: Row) -> bool:
    """Whether the row's own change drives the record: a driver of its source whose `when` holds for it."""
    return any(d.when is None or d.when(row) for d in partners)


def _driver_rows(driver: Driver, row: Row, lookups: Lookups, revoke: bool = False,
                 position: int | None = None) -> list[dict[str, Row]]:
    """The alias bindings a driver row starts from: itself, or itself with each member of its group (but
    for members newer than the parent's change, with `newer: skip`: their own change derives them)."""
    if driver.each is None:
        return [{driver.alias: row}]
    each = driver.each
    rows = lookups.get(each.lookup, {})
    key = lookup_key(k.run({driver.alias: row}) for k in each.key)
    members = sorted((rows.get(key) or {}).items())
    if each.newer == "skip" and not revoke and position is not None:
        of = getattr(rows, "member_positions", None)
        kept = of(key) if of is not None else {}
        members = [(m, r) for m, r in members
                   if kept.get(m) is None or kept[m] <= position or not _reported_by(each.partners, r)]
    return [{driver.alias: row, each.alias: m} for _, m in members if each.when is None or each.when(m)]


def map_change(mapping: SourceMapping, change: Change, lookups: Lookups) -> list[MapResult]:
    """Every catalog record this change feeds: one per driver whose `when` holds (a fan-out driver, one
    per member of its group). Records not reportable yet (Skipped) are left out."""
    results: list[MapResult] = []
    for table, driver in mapping.by_source.get(source_name(change), ()):
        if change.op == "t":
            results.append(Unmappable(table.table, "source_truncated",
                                      f"source table {driver.source} was truncated: revoke by hand"))
            continue
        row, revoke = _side(change, driver)
        if row is None:
            continue
        for bound in _driver_rows(driver, row, lookups, revoke, change.source.lsn):
            result = map_row(mapping, table, driver, bound, revoke, lookups, change.op, change.source.lsn)
            if not isinstance(result, Skipped):
                results.append(result)
    return results


def is_known_source(mapping: SourceMapping, change: Change) -> bool:
    name = source_name(change)
    return name in mapping.by_source or name in mapping.lookup_sources
