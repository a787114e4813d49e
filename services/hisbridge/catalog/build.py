"""Write (or compare) the files derived from the catalog: schemas/avro/<table>.avsc and the front-end DDL."""
from __future__ import annotations

import json
from pathlib import Path

from hisbridge.catalog.avro import avro_schema
from hisbridge.catalog.ddl import catalog_ddl
from hisbridge.catalog.model import Catalog
from hisbridge.settings import defaults


def generated_files(catalog: Catalog, avro_dir: Path, sql_dir: Path) -> dict[Path, str]:
    """Path → exact text, deterministic so regeneration of an unchanged catalog is a no-op."""
    files = {avro_dir / f"{t.name}.avsc": json.dumps(avro_schema(t), ensure_ascii=False, indent=2) + "\n"
             for t in catalog.tables.values()}
    files[sql_dir / "frontend.sql"] = catalog_ddl(catalog)
    return files


def build(catalog: Catalog, avro_dir: Path | None = None, sql_dir: Path | None = None,
          check: bool = False) -> list[Path]:
    """Write the generated files; return those that changed (with check=True, write nothing).
    Stale .avsc files of tables no longer in the catalog count as changes and are removed."""
    avro_dir = avro_dir or defaults().paths.avro
    sql_dir = sql_dir or defaults().paths.frontend_sql
    files = generated_files(catalog, avro_dir, sql_dir)
    changed = [p for p, text in files.items() if not p.is_file() or p.read_text(encoding="utf-8") != text]
    stale = [p for p in sorted(avro_dir.glob("*.avsc")) if p not in files] if avro_dir.is_dir() else []
    if not check:
        for path in changed:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(files[path], encoding="utf-8")
        for path in stale:
            path.unlink()
    return changed + stale
