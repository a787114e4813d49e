"""Clinical code systems: format rules and dictionaries (ICD-10 国家临床版 2.0, ICD-9-CM-3 临床版 3.0).

The formats are derived from published samples (standards.md), not from an official grammar. The full
dictionaries are licensed files a hospital supplies; the repository ships a small subset for tests/demo.
"""
from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import Mapping

from hisbridge.catalog.model import CatalogError, ValueSet
from hisbridge.settings import defaults

ICD10_RE = re.compile(r"^[A-Z]\d{2}\.[\dx]\d{2}(x\d{3})?$")
ICD9CM3_RE = re.compile(r"^\d{2}\.\d[\dx](\d{2})?(x\d{3})?$")
# TCM diseases/syndromes: TCM95 style "BGG000" or GB/T 15657-2021 style "A04.04.04.02"
TCM_RE = re.compile(r"^(?:[A-Z]{3}\d{3}|[A-Z]\d{2}(?:\.\d{2}){1,4})$")
# ICD-O-3 morphology as written on the front page (M8140/3 or the 国家临床版 six-digit M81400/3)
MORPHOLOGY_RE = re.compile(r"^M\d{4,5}/\d$")

FORMATS: dict[str, re.Pattern[str]] = {
    "icd10": ICD10_RE,
    "icd9cm3": ICD9CM3_RE,
    "tcm_code": TCM_RE,
    "morphology": MORPHOLOGY_RE,
}

# system → (value-set title, standard, shipped subset file, full-dictionary stem); a hospital's own full
# dictionary is named by the settings (paths.icd10_dict, paths.icd9cm3_dict) or found as icd/<stem>.tsv
SYSTEMS = {
    "icd10": ("ICD-10 疾病分类与代码", "ICD-10 国家临床版 2.0", "icd10_gjlc_2.0.subset.tsv", "icd10"),
    "icd9cm3": ("ICD-9-CM-3 手术操作分类与代码", "ICD-9-CM-3 国家临床版 3.0", "icd9cm3_lc_3.0.subset.tsv", "icd9cm3"),
}


def matches_format(system: str, code: str) -> bool:
    return bool(FORMATS[system].match(code))


def subset_code(code: str) -> str:
    """亚目 as the evaluation indicators count it: the first 5 characters (A00.0, 00.01)."""
    return code[:5]


def _decode(raw: bytes, path: Path) -> str:
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise CatalogError(f"{path}: neither UTF-8 nor GB18030")


def parse_dictionary(text: str, system: str, origin: str = "<text>") -> dict[str, str]:
    """Two columns (code, name), TAB or comma separated; a header line is skipped.

    Raises CatalogError listing the lines whose code fails the system's format: such a dictionary
    would make the format rule and the membership rule disagree.
    """
    delimiter = "\t" if "\t" in text.split("\n", 1)[0] else ","
    codes: dict[str, str] = {}
    bad: list[str] = []
    for lineno, row in enumerate(csv.reader(io.StringIO(text), delimiter=delimiter), start=1):
        if not row or not row[0].strip():
            continue
        code, name = row[0].strip(), (row[1].strip() if len(row) > 1 else "")
        if not matches_format(system, code):
            if lineno == 1:  # header
                continue
            bad.append(f"line {lineno}: {code!r}")
            continue
        codes[code] = name
    if bad:
        raise CatalogError(f"{origin}: {len(bad)} codes do not match the {system} format, e.g. "
                           + "; ".join(bad[:5]))
    if not codes:
        raise CatalogError(f"{origin}: no {system} codes found")
    return codes


def load_dictionary(path: Path, system: str) -> ValueSet:
    """Load a code dictionary file (the hospital's official full file, or the shipped subset)."""
    title, standard, _subset, _stem = SYSTEMS[system]
    path = Path(path)
    if not path.is_file():
        raise CatalogError(f"{system} dictionary not found: {path}")
    codes = parse_dictionary(_decode(path.read_bytes(), path), system, str(path))
    return ValueSet(name=system, title=title, standard=standard, codes=codes, source=str(path))


def dictionary_path(system: str, valuesets_dir: Path | None = None, override: Path | None = None) -> Path:
    """The full dictionary if a hospital supplied one (`override`, then icd/<stem>.tsv|.csv), else the subset."""
    _title, _standard, subset, stem = SYSTEMS[system]
    folder = (valuesets_dir or defaults().paths.valuesets) / "icd"
    if override:
        return Path(override)
    for suffix in (".tsv", ".csv", ".txt"):
        full = folder / f"{stem}{suffix}"
        if full.is_file():
            return full
    return folder / subset


def load_code_systems(valuesets_dir: Path | None = None,
                      dictionaries: Mapping[str, Path | None] | None = None) -> dict[str, ValueSet]:
    chosen = dictionaries or {}
    return {system: load_dictionary(dictionary_path(system, valuesets_dir, chosen.get(system)), system)
            for system in SYSTEMS}
