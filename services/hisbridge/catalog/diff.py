"""What a revised catalog changes: the explicit, reviewed step of schema evolution."""
from __future__ import annotations

from typing import Any

from hisbridge.catalog.model import Catalog, Field, Table

_FIELD_ATTRS = ("type", "required", "valueset", "encrypt")


def _field_changes(old: Field, new: Field) -> dict[str, Any]:
    return {attr: {"old": getattr(old, attr), "new": getattr(new, attr)}
            for attr in _FIELD_ATTRS if getattr(old, attr) != getattr(new, attr)}


def _table_changes(old: Table, new: Table) -> dict[str, Any]:
    old_fields, new_fields = {f.name: f for f in old.fields}, {f.name: f for f in new.fields}
    changes: dict[str, Any] = {
        "fields_added": [n for n in new_fields if n not in old_fields],
        "fields_removed": [n for n in old_fields if n not in new_fields],
        "fields_changed": {n: c for n in old_fields if n in new_fields
                           for c in [_field_changes(old_fields[n], new_fields[n])] if c},
    }
    for attr in ("title", "family", "cadence", "batch_time", "key"):
        if getattr(old, attr) != getattr(new, attr):
            changes[attr] = {"old": getattr(old, attr), "new": getattr(new, attr)}
    return {k: v for k, v in changes.items() if v}


def diff_catalogs(old: Catalog, new: Catalog) -> dict[str, Any]:
    """{"tables_added", "tables_removed", "tables_changed": {table: {...}}}; empty lists when equal."""
    return {
        "old_version": old.version,
        "new_version": new.version,
        "tables_added": [n for n in new.tables if n not in old.tables],
        "tables_removed": [n for n in old.tables if n not in new.tables],
        "tables_changed": {n: c for n in old.tables if n in new.tables
                           for c in [_table_changes(old.tables[n], new.tables[n])] if c},
    }


def render_diff(diff: dict[str, Any]) -> str:
    lines = [f"catalog {diff['old_version']} → {diff['new_version']}"]
    lines += [f"+ table {n}" for n in diff["tables_added"]]
    lines += [f"- table {n}" for n in diff["tables_removed"]]
    for table, changes in diff["tables_changed"].items():
        lines.append(f"~ table {table}")
        for attr in ("title", "family", "cadence", "batch_time", "key"):
            if attr in changes:
                lines.append(f"    {attr}: {changes[attr]['old']} → {changes[attr]['new']}")
        lines += [f"    + field {n}" for n in changes.get("fields_added", [])]
        lines += [f"    - field {n}" for n in changes.get("fields_removed", [])]
        for name, attrs in changes.get("fields_changed", {}).items():
            detail = ", ".join(f"{a}: {v['old']} → {v['new']}" for a, v in attrs.items())
            lines.append(f"    ~ field {name}: {detail}")
    if len(lines) == 1:
        lines.append("no changes")
    return "\n".join(lines)
