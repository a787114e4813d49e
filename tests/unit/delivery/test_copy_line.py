"""A staged row's COPY line: the front-end columns a flush sends, field for field what
`payload->>'field'` gives, escaped so the line is one verbatim CSV field too (no database)."""
from __future__ import annotations

from datetime import datetime

from hisbridge.catalog import load_catalog
from hisbridge.catalog.sample import sample_records
from hisbridge.delivery.staging import copy_line, staged_row

TABLE = load_catalog().table("mjzzlxx")


def payload(**values) -> dict:
    rec = dict(sample_records(TABLE, 1, seed=3)[0])
    rec.update(values)
    return staged_row(TABLE, rec, "2026-04-01", 1, 1).payload


def fields(line: str) -> dict[str, str]:
    parts = line.split("\t")
    assert len(parts) == len(TABLE.carried_names)
    return dict(zip(TABLE.carried_names, parts))


def test_the_line_carries_every_field_but_report_datetime_in_catalog_order():
    assert TABLE.carried_names == tuple(n for n in TABLE.field_names if n != "report_datetime")
    p = payload(zs="咳嗽三天", nl=41, gj=None)
    got = fields(copy_line(TABLE, p))
    assert got["zs"] == "咳嗽三天" and got["nl"] == "41" and got["gj"] == r"\N"
    assert got["jzsj"] == p["jzsj"] and got["zfy"] == p["zfy"]


def test_separators_backslashes_and_every_control_character_are_escaped():
    got = fields(copy_line(TABLE, payload(zs="a\tb\nc\rd\\e \\N f\x01g\x02h\x1fi\"j,k")))
    assert got["zs"] == r"a\tb\nc\rd\\e \\N f\x01g\x02h\x1fi" + "\"j,k"
    assert not any(ch in copy_line(TABLE, payload(zs="\x01\x02\n\r")) for ch in "\x01\x02\n\r")


def test_scalars_read_as_jsonb_renders_them():
    p = {**payload(), "nl": True, "zfy": 1e16, "zs": False, "gj": 0.5}
    got = fields(copy_line(TABLE, p))
    assert (got["nl"], got["zfy"], got["zs"], got["gj"]) == ("true", "10000000000000000", "false", "0.5")


def test_staged_rows_keep_the_line_of_their_payload():
    row = staged_row(TABLE, dict(sample_records(TABLE, 1, seed=5)[0], scsj=datetime(2026, 4, 1, 8)),
                     "2026-04-01", 7, 7)
    assert row.line == copy_line(TABLE, row.payload)
