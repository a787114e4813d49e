"""The catalog — single source of truth for tables, fields, value sets, rules, Avro schemas and DDL.

May import: hisbridge.settings (default paths) only; nothing of the pipeline (quality rules are named
here, implemented in chain.quality, which checks its names against catalog.rules)."""
from hisbridge.catalog.loader import load_catalog
from hisbridge.catalog.model import (Catalog, CatalogError, Field, Table,
                                     ValueSet, parse_type)
from hisbridge.catalog.valuesets import load_valuesets
from hisbridge.settings import Paths


def catalog_for(paths: Paths) -> Catalog:
    """The catalog a deployment's settings name (catalog, value sets, a hospital's full dictionaries)."""
    return load_catalog(paths.catalog, paths.valuesets, {"icd10": paths.icd10_dict, "icd9cm3": paths.icd9cm3_dict})


__all__ = ["Catalog", "CatalogError", "Field", "Table", "ValueSet", "catalog_for", "load_catalog",
           "load_valuesets", "parse_type"]
