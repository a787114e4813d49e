"""Read the YAML catalog into frozen values and check it is self-consistent.

Layout: schemas/catalog/ holds `_catalog.yaml` (version, Avro namespace, common columns) and one file per
table; a single file with `catalog`, `common` and `tables` keys works too (a hospital replacing the
catalog with the official one may prefer one file). Every mistake is a CatalogError naming file and item.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml
from hisbridge.catalog.model import (CADENCES, FAMILIES, Catalog, CatalogError,
                                     Field, Table, ValueSet, frozen_mapping,
                                     parse_type)
from hisbridge.catalog.rules import FIELD_RULES, TABLE_CHECKS
from hisbridge.catalog.valuesets import load_valuesets
from hisbridge.settings import defaults

_IDENT = re.compile(r"^[a-z][a-z0-9_]*$")
_FIELD_KEYS = {"name", "title", "type", "required", "valueset", "rules", "encrypt", "name_field",
               "sink_stamped", "doc", "sample"}
_TABLE_KEYS = {"name", "title", "family", "cadence", "batch_time", "key", "fields", "checks", "parent", "doc"}


def normalise_rule(item: Any, origin: str) -> dict[str, Any]:
    """'phone' → {'rule': 'phone'}; {range: {min: 1}} → {'rule': 'range', 'min': 1};
    {date_order: [a, b]} → {'rule': 'date_order', 'fields': [a, b]}."""
    if isinstance(item, str):
        return {"rule": item}
    if isinstance(item, dict) and len(item) == 1:
        (name, params), = item.items()
        if isinstance(params, dict):
            return {"rule": str(name), **params}
        if isinstance(params, list):
            return {"rule": str(name), "fields": list(params)}
    raise CatalogError(f"{origin}: a rule is a name or a one-key mapping, got {item!r}")


def parse_field(data: Any, origin: str) -> Field:
    if not isinstance(data, dict):
        raise CatalogError(f"{origin}: a field must be a mapping, got {data!r}")
    unknown = set(data) - _FIELD_KEYS
    if unknown:
        raise CatalogError(f"{origin}: unknown field attribute(s) {sorted(unknown)}")
    name = str(data.get("name", ""))
    where = f"{origin} field {name!r}"
    if not _IDENT.match(name):
        raise CatalogError(f"{where}: name must be a lowercase ascii identifier")
    if not data.get("title") or not data.get("type"):
        raise CatalogError(f"{where}: title and type are required")
    parsed = parse_type(data["type"])
    encrypt = bool(data.get("encrypt", False))
    if encrypt and parsed.kind != "string":
        raise CatalogError(f"{where}: only string fields can be encrypted (ciphertext is a string)")
    return Field(name=name, title=str(data["title"]), type=str(data["type"]), kind=parsed.kind,
                 length=parsed.length, precision=parsed.precision, scale=parsed.scale,
                 required=bool(data.get("required", False)), valueset=data.get("valueset"),
                 rules=tuple(normalise_rule(r, where) for r in data.get("rules") or ()),
                 encrypt=encrypt, name_field=data.get("name_field"),
                 sink_stamped=bool(data.get("sink_stamped", False)), doc=str(data.get("doc", "")),
                 sample=tuple(str(v) for v in data.get("sample") or ()))


def _check_table(table: Table, origin: str, valuesets: dict[str, ValueSet]) -> None:

    names = table.field_names
    if len(set(names)) != len(names):
        dupes = sorted({n for n in names if names.count(n) > 1})
        raise CatalogError(f"{origin}: duplicate field(s) {dupes}")
    if table.family not in FAMILIES or table.cadence not in CADENCES:
        raise CatalogError(f"{origin}: family must be one of {FAMILIES}, cadence one of {CADENCES}")
    batch = _field_or_fail(table, table.batch_time, origin, "batch_time")
    if not batch.is_temporal or not batch.required:
        raise CatalogError(f"{origin}: batch_time {batch.name} must be a required date or datetime")
    if table.cadence != "daily" and batch.kind != "date":
        raise CatalogError(f"{origin}: a {table.cadence} table's batch_time must be a date (period start)")
    for name in table.key:
        if not _field_or_fail(table, name, origin, "key").required:
            raise CatalogError(f"{origin}: key field {name} must be required")
    for f in table.fields:
        if f.valueset and f.valueset not in valuesets:
            raise CatalogError(f"{origin} field {f.name}: unknown value set {f.valueset!r}")
        if f.name_field:
            _field_or_fail(table, f.name_field, origin, f"{f.name}.name_field")
        for rule in f.rules:
            if rule["rule"] not in FIELD_RULES:
                raise CatalogError(f"{origin} field {f.name}: unknown rule {rule['rule']!r}; "
                                   f"known: {sorted(FIELD_RULES)}")
            for ref in _field_refs(rule):
                _field_or_fail(table, ref, origin, f"{f.name} rule {rule['rule']}")
    for check in table.checks:
        if check["rule"] not in TABLE_CHECKS:
            raise CatalogError(f"{origin}: unknown check {check['rule']!r}; known: {sorted(TABLE_CHECKS)}")
        for ref in _field_refs(check):
            _field_or_fail(table, ref, origin, f"check {check['rule']}")


def _field_refs(rule: dict[str, Any]) -> Iterable[str]:
    """Field names a rule's parameters refer to (any string value of a key naming a field)."""
    for key, value in rule.items():
        if key in ("fields",):
            yield from value
        elif key in ("field", "code_field", "if_field", "doc_type", "birth_date", "sex", "days", "start",
                     "end"):
            yield value


def _field_or_fail(table: Table, name: str, origin: str, what: str) -> Field:
    try:
        return table.field(name)
    except KeyError:
        raise CatalogError(f"{origin}: {what} refers to unknown field {name!r}") from None


def parse_table(data: Any, origin: str, common: dict[str, list[Field]], valuesets: dict[str, ValueSet],
                namespace: str) -> Table:
    if not isinstance(data, dict):
        raise CatalogError(f"{origin}: a table must be a mapping")
    unknown = set(data) - _TABLE_KEYS
    if unknown:
        raise CatalogError(f"{origin}: unknown table attribute(s) {sorted(unknown)}")
    name = str(data.get("name", ""))
    if not _IDENT.match(name):
        raise CatalogError(f"{origin}: table name {name!r} must be a lowercase ascii identifier")
    where = f"{origin} table {name}"
    own = [parse_field(f, where) for f in data.get("fields") or ()]
    fields = tuple(common.get("first", []) + own + common.get("last", []))
    used = {f.valueset for f in fields if f.valueset}
    table = Table(name=name, title=str(data.get("title", "")), family=str(data.get("family", "")),
                  cadence=str(data.get("cadence", "")), batch_time=str(data.get("batch_time", "")),
                  key=tuple(data.get("key") or ()), fields=fields,
                  checks=tuple(normalise_rule(c, where) for c in data.get("checks") or ()),
                  parent=data.get("parent"), doc=str(data.get("doc", "")),
                  valuesets=frozen_mapping({n: valuesets[n] for n in used if n in valuesets}),
                  namespace=namespace)
    if not table.title or not table.key:
        raise CatalogError(f"{where}: title and key are required")
    if "yljgdm" in table.key:
        raise CatalogError(f"{where}: the key must not include yljgdm (it is prepended in the front end)")
    _check_table(table, where, valuesets)
    return table


def _documents(path: Path) -> list[tuple[str, dict[str, Any]]]:
    files = sorted(path.glob("*.yaml")) if path.is_dir() else [path]
    if not files:
        raise CatalogError(f"no catalog files in {path}")
    docs = []
    for file in files:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise CatalogError(f"{file}: a catalog file must be a mapping")
        docs.append((str(file), data))
    return docs


def load_catalog(path: Path | str | None = None, valuesets_dir: Path | str | None = None,
                 dictionaries: Mapping[str, Path | None] | None = None) -> Catalog:
    """Load the catalog with its value sets (default: the checkout's schemas/catalog and schemas/valuesets);
    `dictionaries` names a hospital's full code dictionaries (system → file) instead of the shipped subsets."""
    path = Path(path) if path else defaults().paths.catalog
    if not path.exists():
        raise CatalogError(f"catalog not found: {path}")
    valuesets = load_valuesets(Path(valuesets_dir) if valuesets_dir else None, dictionaries)
    docs = _documents(path)
    header: dict[str, Any] = {}
    common: dict[str, list[Field]] = {}
    raw_tables: list[tuple[str, Any]] = []
    for origin, data in docs:
        if "name" in data:  # a file that is one table
            raw_tables.append((origin, data))
            continue
        header.update(data.get("catalog") or {})
        for place, items in (data.get("common") or {}).items():
            common[place] = [parse_field(f, f"{origin} common") for f in items]
        raw_tables.extend((origin, t) for t in data.get("tables") or ())
    namespace = str(header.get("namespace", "hisbridge"))
    tables: dict[str, Table] = {}
    for origin, data in raw_tables:
        table = parse_table(data, origin, common, valuesets, namespace)
        if table.name in tables:
            raise CatalogError(f"{origin}: table {table.name} defined twice")
        tables[table.name] = table
    _check_parents(tables)
    return Catalog(version=str(header.get("version", "unversioned")), namespace=namespace,
                   tables=frozen_mapping(dict(sorted(tables.items()))), valuesets=frozen_mapping(valuesets))


def _check_parents(tables: dict[str, Table]) -> None:
    """A detail table extends its parent's key and carries the parent's batch-time field, so it batches alone."""
    for table in tables.values():
        if not table.parent:
            continue
        parent = tables.get(table.parent)
        if parent is None:
            raise CatalogError(f"table {table.name}: unknown parent {table.parent!r}")
        if table.key[:len(parent.key)] != parent.key or table.batch_time != parent.batch_time:
            raise CatalogError(f"table {table.name}: key must start with {parent.key} and batch_time "
                               f"must be the parent's {parent.batch_time}")
