"""The catalog as plain frozen values: Catalog → Table → Field, plus the value sets they refer to.

Nothing here reads files; loader.py builds these from YAML. Types are kept as written in the catalog
('string(40)', 'decimal(12,2)') and parsed once into kind/length/precision/scale.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from dataclasses import field as dc_field
from functools import cached_property
from types import MappingProxyType
from typing import Any, Mapping

KINDS = ("string", "int", "decimal", "date", "datetime")
FAMILIES = ("门急诊", "住院", "三级医院评审")
CADENCES = ("daily", "monthly", "yearly")

_TYPE_RE = re.compile(r"^(?:string\((\d+)\)|int|decimal\((\d+),\s*(\d+)\)|date|datetime)$")


class CatalogError(ValueError):
    """The catalog or a value-set file is wrong: an operator must fix the file."""


@dataclass(frozen=True)
class ParsedType:
    kind: str
    length: int | None = None
    precision: int | None = None
    scale: int | None = None


def parse_type(text: str) -> ParsedType:
    """'string(40)' → ParsedType('string', 40); raises CatalogError for anything else."""
    match = _TYPE_RE.match(str(text).strip())
    if not match:
        raise CatalogError(f"unknown field type {text!r}: use string(n), int, decimal(p,s), date or datetime")
    spec = str(text).strip()
    if match.group(1):
        return ParsedType("string", length=int(match.group(1)))
    if match.group(2):
        precision, scale = int(match.group(2)), int(match.group(3))
        if not 0 <= scale <= precision:
            raise CatalogError(f"bad decimal {text!r}: need 0 <= scale <= precision")
        return ParsedType("decimal", precision=precision, scale=scale)
    return ParsedType(spec)


@dataclass(frozen=True)
class ValueSet:
    """A national code set: code → name, with the standard it comes from."""
    name: str
    title: str
    standard: str
    codes: Mapping[str, str]
    # hierarchical: "03.01" is a member when its top-level "03" is (诊疗科目 sub-specialties)
    hierarchical: bool = False
    source: str = ""

    def __contains__(self, code: object) -> bool:
        return self.name_of(code) is not None or self._parent_member(code)

    def name_of(self, code: object) -> str | None:
        if not isinstance(code, str):
            return None
        return self.codes.get(code)

    def _parent_member(self, code: object) -> bool:
        return self.hierarchical and isinstance(code, str) and "." in code and code.split(".", 1)[0] in self.codes


@dataclass(frozen=True)
class Field:
    name: str
    title: str
    type: str
    kind: str
    length: int | None = None
    precision: int | None = None
    scale: int | None = None
    required: bool = False
    valueset: str | None = None
    rules: tuple[Any, ...] = ()
    encrypt: bool = False
    name_field: str | None = None  # the field holding this code's name (code↔name agreement)
    sink_stamped: bool = False     # filled by the sink (report_datetime): NOT NULL in DDL, optional before
    doc: str = ""
    sample: tuple[str, ...] = ()   # preferred codes for `catalog sample` (e.g. xgbz 0), not a rule

    @property
    def is_temporal(self) -> bool:
        return self.kind in ("date", "datetime")


@dataclass(frozen=True)
class Table:
    name: str
    title: str
    family: str
    cadence: str
    batch_time: str
    key: tuple[str, ...]
    fields: tuple[Field, ...]
    checks: tuple[Mapping[str, Any], ...] = ()
    parent: str | None = None
    doc: str = ""
    valuesets: Mapping[str, ValueSet] = dc_field(default_factory=dict, compare=False, repr=False)
    namespace: str = "hisbridge"

    # Derived views are computed once per Table (cached_property writes the instance __dict__, which a
    # frozen dataclass allows): the transform chain asks for them on every record.
    @cached_property
    def _fields_by_name(self) -> Mapping[str, Field]:
        by_name: dict[str, Field] = {}
        for candidate in self.fields:
            by_name.setdefault(candidate.name, candidate)   # the first wins, as the linear search did
        return MappingProxyType(by_name)

    def field(self, name: str) -> Field:
        try:
            return self._fields_by_name[name]
        except (KeyError, TypeError):
            raise KeyError(f"table {self.name} ({self.title}) has no field {name!r}") from None

    @cached_property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    @cached_property
    def carried_names(self) -> tuple[str, ...]:
        """The fields a staged record carries to the front-end: all but the sink-stamped ones."""
        return tuple(f.name for f in self.fields if not f.sink_stamped)

    @cached_property
    def carried_layout(self) -> str:
        """A short digest of `carried_names` in order: what a staged row's COPY line was made of."""
        return hashlib.sha256("\x1f".join(self.carried_names).encode("utf-8")).hexdigest()[:16]

    @cached_property
    def stamped_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields if f.sink_stamped)

    @cached_property
    def encrypted_fields(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields if f.encrypt)

    @property
    def primary_key(self) -> tuple[str, ...]:
        """Front-end primary key: the organisation code, then the business key."""
        return ("yljgdm",) + self.key


@dataclass(frozen=True)
class Catalog:
    version: str
    namespace: str
    tables: Mapping[str, Table]
    valuesets: Mapping[str, ValueSet] = dc_field(default_factory=dict, compare=False, repr=False)

    def table(self, name: str) -> Table:
        try:
            return self.tables[name]
        except KeyError:
            known = ", ".join(sorted(self.tables))
            raise KeyError(f"unknown catalog table {name!r}; known tables: {known}") from None


def frozen_mapping(data: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(data))
