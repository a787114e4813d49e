"""The catalog — single source of truth for tables, fields, value sets, rules, Avro schemas and DDL."""
from hisbridge.catalog.loader import load_catalog
from hisbridge.catalog.model import Catalog, CatalogError, Field, Table, ValueSet, parse_type
from hisbridge.catalog.valuesets import load_valuesets

__all__ = ["Catalog", "CatalogError", "Field", "Table", "ValueSet", "load_catalog", "load_valuesets",
           "parse_type"]
