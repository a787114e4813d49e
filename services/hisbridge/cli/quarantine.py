"""`hisbridge quarantine list|show|dismiss|replay`: see → understand → fix → re-send (delivery.quarantine holds
the entries' life cycle; ops.replay re-runs them). Identity fields stay ciphertext unless `show --decrypt`
is given with the key, and then only on the terminal."""
from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import click
from hisbridge.cli.common import group, pass_settings
from hisbridge.clock import SHANGHAI
from hisbridge.delivery import quarantine, replay, staging
from hisbridge.messages import OperatorError, text
from hisbridge.ops.reach import connect_postgres
from hisbridge.settings import Settings

# what a rule means, for people (the entries' own messages say the details)
RULE_NAMES = {
    "missing_lookup": "参照数据未到达 / reference row missing", "unmapped_code": "本地码无国家值域映射 / unmapped local code",
    "valueset": "不在国家值域内 / not in the national value set", "required": "必填项为空 / required field empty",
    "resident_id": "身份证号无效 / invalid resident ID", "phone": "电话号码无效 / invalid phone number",
    "max_length": "超长 / value too long", "batch": "批次时间无效 / batch time invalid",
    "avro_schema": "不符合 Avro 结构 / Avro schema", "decode_error": "变更消息无法解析 / change message unreadable",
    "unknown_source_table": "映射中无此源表 / source table not mapped", "zero_date": "零日期 / zero date",
    "business_key": "业务主键不完整 / business key incomplete",
    "indicator_mismatch": "评审指标与明细推算值不符 / evaluation indicator differs from the detail data",
}


def _local(moment: datetime | None) -> str:
    return moment.astimezone(SHANGHAI).isoformat(timespec="seconds") if moment else "-"


def _connect(dsn: str):
    conn = connect_postgres(dsn, "HISBRIDGE_STAGING_DSN")
    staging.ensure_schema(conn)
    return conn


def _entry_json(e: quarantine.Entry) -> dict[str, Any]:
    return {"id": e.id, "table": e.table, "key": e.key or None, "version": e.version, "batch": e.batch,
            "rules": e.rules, "state": e.state, "first_seen": _local(e.first_seen), "changed_at": _local(e.changed_at),
            "actor": e.actor, "note": e.note}


filters = [
    click.option("--table", help="quarantine.table"),
    click.option("--batch", help="quarantine.batch"),
    click.option("--rule", help="quarantine.rule"),
]


def with_filters(fn):
    for option in reversed(filters):
        fn = option(fn)
    return fn


@group("quarantine", help="quarantine.help")
def cli() -> None:
    pass


@cli.command("list", help="quarantine.list")
@with_filters
@click.option("--state", type=click.Choice(quarantine.STATES), default="open", show_default=True,
              help="quarantine.state")
@click.option("--limit", default=200, show_default=True, help="quarantine.limit")
@click.option("--json", "as_json", is_flag=True, help="quarantine.json")
@pass_settings
def list_entries(settings: Settings, table, batch, rule, state, limit, as_json) -> None:
    conn = _connect(settings.connections.staging_dsn)
    try:
        counts = quarantine.counts(conn, table, batch, rule, state)
        found = quarantine.entries(conn, table, batch, rule, state, limit)
    finally:
        conn.close()
    if as_json:
        click.echo(json.dumps({"counts": [{"rule": r, "table": t, "state": s, "entries": n} for r, t, s, n in counts],
                               "entries": [_entry_json(e) for e in found]}, ensure_ascii=False, indent=1))
        return
    click.echo(f"{'rule':<22} {'table':<10} {'state':<9} {'entries':>7}")
    for r, t, s, n in counts:
        click.echo(f"{r:<22} {t:<10} {s:<9} {n:>7}")
    click.echo("")
    click.echo(f"{'id':>6} {'table':<10} {'batch':<10} {'state':<9} {'key':<24} rules")
    for e in found:
        click.echo(f"{e.id:>6} {e.table:<10} {e.batch or '-':<10} {e.state:<9} {e.key or '(no key)':<24} "
                   f"{','.join(e.rules)}")


@cli.command("show", help="quarantine.show")
@click.argument("entry_id", type=int)
@click.option("--decrypt", is_flag=True, help="quarantine.decrypt")
@pass_settings
def show(settings: Settings, entry_id: int, decrypt: bool) -> None:
    conn = _connect(settings.connections.staging_dsn)
    try:
        e = quarantine.get(conn, entry_id)
    finally:
        conn.close()
    if e is None:
        raise OperatorError("quarantine.no_entry", id=entry_id)
    doc = e.entry
    click.echo(f"entry {e.id}: {e.table} key {e.key or '(no key)'} batch {e.batch or '-'} state {e.state}"
               + (f" ({e.note}{', ' + e.actor if e.actor else ''})" if e.note else ""))
    click.echo(f"first seen {_local(e.first_seen)}, changed {_local(e.changed_at)}, version {e.version}")
    click.echo("reasons / 原因:")
    for r in doc.get("reasons", []):
        click.echo(f"  - {r.get('rule')} [{RULE_NAMES.get(r.get('rule'), r.get('rule'))}]"
                   f" field {r.get('field') or '-'}: {r.get('message')}")
    click.echo("source / 来源: " + json.dumps(doc.get("source"), ensure_ascii=False, sort_keys=True))
    record = dict(doc.get("record") or {})
    if decrypt and record:
        record = _decrypted(settings, e.table, record)
    click.echo("record / 记录" + (" (decrypted)" if decrypt else " (identity fields SM4 ciphertext)") + ":")
    click.echo(json.dumps(record, ensure_ascii=False, sort_keys=True, indent=1))


def _decrypted(settings: Settings, table: str, record: dict[str, Any]) -> dict[str, Any]:
    from hisbridge.catalog import catalog_for
    from hisbridge.chain import crypto
    try:
        key = crypto.load_key(settings.sm4)
    except Exception as exc:  # noqa: BLE001 — no key configured: an operator error, said in one line
        raise OperatorError("quarantine.no_key", detail=str(exc)) from None
    fields = catalog_for(settings.paths).table(table).encrypted_fields
    return crypto.decrypt_fields(record, fields, key, crypto.sm4_settings(settings.sm4))


@cli.command("dismiss", help="quarantine.dismiss")
@click.argument("entry_id", type=int)
@click.option("--operator", required=True, help="quarantine.operator")
@click.option("--reason", required=True, help="quarantine.dismiss_reason")
@pass_settings
def dismiss(settings: Settings, entry_id: int, operator: str, reason: str) -> None:
    conn = _connect(settings.connections.staging_dsn)
    try:
        e = quarantine.dismiss(conn, entry_id, operator, reason)
    except quarantine.NotDismissable:
        raise OperatorError("quarantine.not_open", id=entry_id) from None
    finally:
        conn.close()
    click.echo(f"entry {e.id} dismissed by {operator} at {_local(e.changed_at)}: {reason}")


@cli.command("replay", help="quarantine.replay")
@with_filters
@click.option("--id", "ids", type=int, multiple=True, help="quarantine.ids")
@click.option("--operator", required=True, help="quarantine.operator")
@click.option("--reason", default="quarantine replay after a fix", show_default=True, help="quarantine.reason")
@pass_settings
def replay_cmd(settings: Settings, table, batch, rule, ids, operator, reason) -> None:
    from hisbridge.ops.replay import Replayer, ReplaySender, replay_entries
    conn = _connect(settings.connections.staging_dsn)
    try:
        found = [e for e in quarantine.entries(conn, table, batch, rule, "open") if not ids or e.id in ids]
        # an indicator_mismatch the operator dismissed (the reported value accepted) goes out as reported when
        # replayed by its id: the cross-check lets a dismissed version through (hisbridge.indicators.crosscheck)
        found += [e for e in quarantine.entries(conn, table, batch, rule, "dismissed")
                  if e.id in ids and "indicator_mismatch" in e.rules]
        if not found:
            click.echo(text("quarantine.nothing"))
            return
        args = {"table": table, "batch": batch, "rule": rule, "ids": [e.id for e in found]}
        rid = replay.request(conn, "quarantine", operator, reason, args)
        sender = ReplaySender(settings.connections.kafka_bootstrap, settings.worker.core_prefix)
        try:
            with Replayer(settings) as replayer:
                outcome = replay_entries(replayer, sender, rid, found)
        finally:
            sender.close()
        replay.record_sent(conn, rid, outcome.sent)
    finally:
        conn.close()
    click.echo(f"replay {rid}: {len(found)} entries, {outcome.sent} records to the replay topic, "
               f"{len(outcome.still_failing)} still failing, {len(outcome.not_found)} source messages not found")
    for entry in outcome.still_failing:
        click.echo(f"  still failing {entry.table} {entry.key or '(no key)'}: {', '.join(entry.rules)}")
    for e in outcome.not_found:
        click.echo(f"  no source message for entry {e.id} ({e.version}) on its raw topic")
