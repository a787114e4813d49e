"""`hisbridge mappings …` — validate the source-mapping file (against the catalog, and with --against-his
against the HIS's information_schema); check the HIS for local codes no map covers."""
from __future__ import annotations

import json
from typing import Any

import click
from hisbridge.catalog import catalog_for
from hisbridge.chain.mapping import SourceMapping, check_valuemaps, load_mapping
from hisbridge.chain.transcode import mapped_columns, unmapped_counts
from hisbridge.cli.common import group, pass_settings
from hisbridge.messages import EXIT_CHECK_FAILED, OperatorError, render, text
from hisbridge.ops import mapping_check
from hisbridge.settings import Settings


def _load(settings: Settings, path: str | None) -> tuple[Any, SourceMapping]:
    catalog = catalog_for(settings.paths)
    return catalog, load_mapping(catalog, path or settings.paths.mapping, settings.org)


def _his(settings: Settings, dsn: str | None, engine: str | None) -> Any:
    from hisbridge import hisdb
    return hisdb.connect(dsn or hisdb.admin_dsn(settings, engine), engine or settings.source.kind)


def his_problems(conn: Any, mapping: SourceMapping) -> tuple[list[mapping_check.Problem], dict[str, dict[str, str]]]:
    """What the mapping names that the HIS does not have, and the HIS columns of the mapped schemas."""
    from hisbridge import hisdb
    refs = mapping_check.references(mapping)
    columns = hisdb.his_columns(conn, {r.source.rpartition(".")[0] for r in refs})
    return mapping_check.check(refs, columns), columns


def _print_problems(problems: list[mapping_check.Problem]) -> None:
    for problem in problems:
        click.echo(render(problem.message_id, problem.params))


def _his_options(func):
    func = click.option("--engine", type=click.Choice(["postgres", "mariadb", "mysql"]), default=None,
                        help="mappings.engine")(func)
    return click.option("--dsn", default=None, help="mappings.dsn")(func)


def _say_relayout(settings: Settings, mapping: SourceMapping) -> None:
    """What the worker's reference store would read again if the worker were restarted on this mapping."""
    from hisbridge.state.lookups import open_store_read_only, planned_relayout, store_folder
    folder = store_folder(settings.worker.state_dir, settings.worker.app_id)
    store = open_store_read_only(folder)
    if store is None:
        return
    try:
        plan = planned_relayout(store, mapping, settings.source.topic_prefix)
    finally:
        store.close()
    if plan:
        click.echo(text("mappings.relayout", folder=folder, **plan.said()))


@group("mappings", help="mappings.help")
def cli() -> None:
    pass


@cli.command("validate", help="mappings.validate")
@click.option("--mapping", "path", type=click.Path(dir_okay=False), help="mappings.mapping")
@click.option("--against-his", is_flag=True, help="mappings.against_his")
@_his_options
@pass_settings
def validate(settings: Settings, path: str | None, against_his: bool, dsn: str | None, engine: str | None) -> None:
    catalog, mapping = _load(settings, path)
    warnings = check_valuemaps(mapping, catalog)
    for warning in warnings:
        click.echo(text("mappings.valuemap_warning", detail=warning), err=True)
    click.echo(text("mappings.summary", path=mapping.path, tables=len(mapping.tables),
                    names=", ".join(sorted(mapping.tables)), valuemaps=len(mapping.valuemaps), org=mapping.org_code))
    _say_relayout(settings, mapping)
    problems: list[mapping_check.Problem] = []
    if against_his:
        conn = _his(settings, dsn, engine)
        try:
            problems, _ = his_problems(conn, mapping)
        finally:
            conn.close()
        _print_problems(problems)
        if not problems:
            refs = mapping_check.references(mapping)
            click.echo(text("mapping.his_ok", path=mapping.path, tables=len({r.source for r in refs}),
                            columns=len({(r.source, r.column) for r in refs if r.column})))
    if problems:
        raise OperatorError("mapping.his_problems", exit_code=EXIT_CHECK_FAILED, path=mapping.path,
                            count=len(problems))
    if warnings:
        raise OperatorError("mappings.valuemap_problems", exit_code=EXIT_CHECK_FAILED, count=len(warnings))


def _counts(cur: Any, engine: str, source: str, column: str) -> dict[Any, int]:
    from hisbridge.sim.dialect import quote
    schema, _, table = source.rpartition(".")
    target = ".".join(quote(engine, n) for n in (schema, table) if n)
    as_text = f"{quote(engine, column)}::text" if engine == "postgres" else f"CAST({quote(engine, column)} AS CHAR)"
    cur.execute(f"SELECT {as_text}, count(*) FROM {target} GROUP BY 1")
    return {value: count for value, count in cur.fetchall()}


@cli.command("check", help="mappings.check")
@_his_options
@click.option("--mapping", "path", type=click.Path(dir_okay=False), help="mappings.mapping")
@click.option("--json", "as_json", is_flag=True, help="mappings.json")
@pass_settings
def check(settings: Settings, dsn: str | None, engine: str | None, path: str | None, as_json: bool) -> None:
    from hisbridge import hisdb

    _, mapping = _load(settings, path)
    engine = engine or settings.source.kind
    conn = _his(settings, dsn, engine)
    found = 0
    try:
        problems, columns = his_problems(conn, mapping)
        _print_problems(problems)
        with hisdb.transaction(conn) as cur:
            for source, column, valuemap in mapped_columns(mapping):
                if column not in columns.get(source, {}):
                    continue      # reported above
                for value, count in unmapped_counts(valuemap, _counts(cur, engine, source, column)):
                    found += 1
                    if as_json:
                        click.echo(json.dumps({"source": source, "column": column, "valuemap": valuemap.name,
                                               "value": value, "rows": count}, ensure_ascii=False))
                    else:
                        click.echo(f"{source}.{column}\t{valuemap.name}\t{value}\t{count}")
    finally:
        conn.close()
    if problems:
        raise OperatorError("mapping.his_problems", exit_code=EXIT_CHECK_FAILED, path=mapping.path,
                            count=len(problems))
    if found:
        raise OperatorError("mappings.unmapped", exit_code=EXIT_CHECK_FAILED, count=found)
    if not as_json:
        click.echo(text("mappings.all_mapped"), err=True)
