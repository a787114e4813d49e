"""The city platform's source mapping, generated from the catalog as data: the identity.

A city platform's source is its own database of its hospitals' uploads: one table per catalog table
(`<schema>.<table>`, catalog-shaped, identity fields already SM4 ciphertext). Its mapping is therefore the
identity — every field from the same-named column of the uploaded row, `yljgdm` and `xgbz` from the row
itself (`organisation: {from_row: true}`), plus the lookup `batch_done` of the hospitals' completion marks
(`<schema>.upload_batch`: yljgdm, batch 'YYYY-MM-DD', completed_at) — and is generated here as the same mapping structure a
hospital's YAML file holds, then parsed by chain.mapping like any other. No per-table code, no file to keep
in step with the catalog.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from hisbridge.catalog.model import Catalog
from hisbridge.chain.mapping import AUTO_FIELDS, SourceMapping, parse_mapping

if TYPE_CHECKING:
    from hisbridge.settings import Settings

ALIAS = "up"
DONE = "batch_done"          # the lookup of the hospitals' completion marks: <schema>.upload_batch


def identity_spec(catalog: Catalog, schema: str, city_code: str, city_name: str = "",
                  tables: Iterable[str] | None = None) -> dict[str, Any]:
    """The mapping structure (as a YAML file would hold it) reading `<schema>.<table>` for each table."""
    names = sorted(tables) if tables is not None else sorted(catalog.tables)
    spec: dict[str, Any] = {}
    for name in names:
        table = catalog.tables[name]
        spec[name] = {"drivers": [{"source": f"{schema}.{name}", "as": ALIAS}],
                      "fields": {f.name: f"{ALIAS}.{f.name}" for f in table.fields
                                 if f.name not in AUTO_FIELDS and not f.sink_stamped}}
    return {"organisation": {"code": city_code, "name": city_name, "from_row": True}, "tables": spec,
            "lookups": {DONE: {"source": f"{schema}.upload_batch", "key": ["yljgdm", "batch"]}}}


def identity_mapping(catalog: Catalog, schema: str, city_code: str, city_name: str = "",
                     tables: Iterable[str] | None = None) -> SourceMapping:
    spec = identity_spec(catalog, schema, city_code, city_name, tables)
    # uploads carry national codes already: the identity names no value map, so there is no folder to read
    mapping = parse_mapping(spec, catalog, f"<identity mapping of {schema}>", Path())
    # no field reads the completion marks (the chain's city check does): keep their time in the store
    reads = {**mapping.lookup_reads, DONE: mapping.lookup_reads[DONE] | {"completed_at"}}
    return replace(mapping, lookup_reads=reads)


def mapping_for_role(catalog: Catalog, settings: "Settings") -> SourceMapping:
    """The source mapping of this deployment: a hospital's file, or a city's identity mapping of its upload
    tables (deployment.city_schema; the city's code and name from its hospital list)."""
    from hisbridge.chain.mapping import load_mapping
    from hisbridge.chain.quality.cross_hospital import load_hospital_list
    if settings.deployment.role != "city":
        return load_mapping(catalog, settings.paths.mapping, settings.org)
    hospitals = load_hospital_list(settings.deployment.city_hospitals)
    return identity_mapping(catalog, settings.deployment.city_schema, hospitals.city_code, hospitals.city_name)
