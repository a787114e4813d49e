"""`hisbridge mappings …` — validate the source-mapping file; check the HIS for local codes no map covers."""
from __future__ import annotations

import json
from typing import Any

import click
from hisbridge.catalog import CatalogError, catalog_for
from hisbridge.chain.mapping import (MappingError, SourceMapping,
                                     check_valuemaps, load_mapping)
from hisbridge.chain.transcode import mapped_columns, unmapped_counts
from hisbridge.cli.common import pass_settings
from hisbridge.settings import Settings


def _load(settings: Settings, path: str | None) -> tuple[Any, SourceMapping]:
    try:
        catalog = catalog_for(settings.paths)
        return catalog, load_mapping(catalog, path or settings.paths.mapping, settings.org)
    except (CatalogError, MappingError) as exc:
        raise click.ClickException(str(exc)) from None


@click.group("mappings")
def cli() -> None:
    """The hospital's source mapping (HIS tables → catalog tables) and its value maps."""


@cli.command("validate")
@click.option("--mapping", "path", type=click.Path(dir_okay=False), help="mapping file (default HISBRIDGE_MAPPING "
              "or schemas/mapping/demo_hospital.yaml)")
@pass_settings
def validate(settings: Settings, path: str | None) -> None:
    """Load the mapping against the catalog; list value-map codes outside the national value sets."""
    catalog, mapping = _load(settings, path)
    problems = check_valuemaps(mapping, catalog)
    for problem in problems:
        click.echo(f"warning: {problem}", err=True)
    click.echo(f"{mapping.path}: {len(mapping.tables)} table(s) mapped "
               f"({', '.join(sorted(mapping.tables))}), {len(mapping.valuemaps)} value map(s), "
               f"organisation {mapping.org_code}")
    if problems:
        raise SystemExit(1)


def _counts(cur: Any, engine: str, source: str, column: str) -> dict[Any, int]:
    from hisbridge.sim.dialect import quote
    schema, _, table = source.rpartition(".")
    target = ".".join(quote(engine, n) for n in (schema, table) if n)
    as_text = f"{quote(engine, column)}::text" if engine == "postgres" else f"CAST({quote(engine, column)} AS CHAR)"
    cur.execute(f"SELECT {as_text}, count(*) FROM {target} GROUP BY 1")
    return {value: count for value, count in cur.fetchall()}


@cli.command("check")
@click.option("--dsn", default=None, help="HIS connection (default: HISBRIDGE_HIS_DSN, or HISBRIDGE_HIS_MARIADB_DSN "
                                          "for MariaDB/MySQL / the local stack)")
@click.option("--engine", type=click.Choice(["postgres", "mariadb", "mysql"]), default=None,
              help="HIS database engine [default: source.kind]")
@click.option("--mapping", "path", type=click.Path(dir_okay=False), help="mapping file")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per unmapped value")
@pass_settings
def check(settings: Settings, dsn: str | None, engine: str | None, path: str | None, as_json: bool) -> None:
    """Query the HIS: local values in value-mapped columns that have no mapping yet, with row counts.

    Exit status 1 when any value is unmapped (usable in a pre-delivery check)."""
    from hisbridge import hisdb

    _, mapping = _load(settings, path)
    engine = engine or settings.source.kind
    try:
        conn = hisdb.connect(dsn or hisdb.admin_dsn(settings, engine), engine)
    except hisdb.HisConnectionError as exc:
        raise click.ClickException(f"cannot connect to the HIS: {str(exc).strip()}") from None
    found = 0
    try:
        with hisdb.transaction(conn) as cur:
            for source, column, valuemap in mapped_columns(mapping):
                try:
                    counts = _counts(cur, engine, source, column)
                except Exception as exc:  # noqa: BLE001 — the driver's error for an unknown table or column
                    raise click.ClickException(f"{source}.{column} (value map {valuemap.name}): "
                                               f"{str(exc).strip().splitlines()[0]}") from None
                for value, count in unmapped_counts(valuemap, counts):
                    found += 1
                    if as_json:
                        click.echo(json.dumps({"source": source, "column": column, "valuemap": valuemap.name,
                                               "value": value, "rows": count}, ensure_ascii=False))
                    else:
                        click.echo(f"{source}.{column}\t{valuemap.name}\t{value}\t{count}")
    finally:
        conn.close()
    if not as_json:
        click.echo(f"{found} unmapped local value(s)" if found else "every local value has a mapping", err=True)
    if found:
        raise SystemExit(1)
