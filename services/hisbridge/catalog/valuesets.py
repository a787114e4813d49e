"""National code sets as data files: schemas/valuesets/<name>.yaml (+ the ICD dictionaries)."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import yaml
from hisbridge.catalog.codes import load_code_systems
from hisbridge.catalog.model import CatalogError, ValueSet, frozen_mapping
from hisbridge.settings import defaults


def parse_valueset(data: object, origin: str) -> ValueSet:
    if not isinstance(data, dict):
        raise CatalogError(f"{origin}: a value set file must be a mapping")
    missing = [k for k in ("name", "title", "standard", "codes") if not data.get(k)]
    if missing:
        raise CatalogError(f"{origin}: missing {', '.join(missing)}")
    codes = data["codes"]
    if not isinstance(codes, dict) or not all(isinstance(c, str) for c in codes):
        raise CatalogError(f"{origin}: codes must map quoted string codes to names (write \"01\": 汉族)")
    return ValueSet(name=str(data["name"]), title=str(data["title"]), standard=str(data["standard"]),
                    codes=frozen_mapping({c: str(n) for c, n in codes.items()}),
                    hierarchical=bool(data.get("hierarchical", False)), source=origin)


def load_valuesets(folder: Path | None = None,
                   dictionaries: Mapping[str, Path | None] | None = None) -> dict[str, ValueSet]:
    """Every value set in the folder plus the code systems (icd10, icd9cm3), by name."""
    folder = Path(folder) if folder else defaults().paths.valuesets
    if not folder.is_dir():
        raise CatalogError(f"value set folder not found: {folder}")
    sets: dict[str, ValueSet] = {}
    for path in sorted(folder.glob("*.yaml")):
        valueset = parse_valueset(yaml.safe_load(path.read_text(encoding="utf-8")), str(path))
        if valueset.name in sets:
            raise CatalogError(f"{path}: value set {valueset.name!r} defined twice")
        if valueset.name != path.stem:
            raise CatalogError(f"{path}: value set name {valueset.name!r} must match the file name")
        sets[valueset.name] = valueset
    sets.update(load_code_systems(folder, dictionaries))
    return sets
