"""What a front-end table made from an earlier catalog lacks, as the statements that add it."""
from __future__ import annotations

from hisbridge.catalog import load_catalog
from hisbridge.catalog.ddl import FrontendMigration, frontend_migration

TABLE = load_catalog().table("mjzzlxx")
ALL = TABLE.field_names


def test_a_table_with_every_field_needs_nothing_and_extra_columns_are_named_not_dropped():
    assert frontend_migration(TABLE, ALL, has_rows=True) == FrontendMigration("mjzzlxx")
    kept = frontend_migration(TABLE, [*ALL, "old_field"], has_rows=True)
    assert not kept.needed and kept.extra == ("old_field",) and kept.statements == ()


def test_missing_fields_are_added_in_catalog_order_with_their_comments_not_null_only_on_an_empty_table():
    without = [c for c in ALL if c not in ("gzdw", "jzksmc")]          # optional, then required
    empty = frontend_migration(TABLE, without, has_rows=False)
    assert empty.statements == (
        "ALTER TABLE mjzzlxx ADD COLUMN IF NOT EXISTS gzdw text;",
        "COMMENT ON COLUMN mjzzlxx.gzdw IS '工作单位（SM4 密文）';",
        "ALTER TABLE mjzzlxx ADD COLUMN IF NOT EXISTS jzksmc varchar(50) NOT NULL;",
        "COMMENT ON COLUMN mjzzlxx.jzksmc IS '就诊科室名称';")
    full = frontend_migration(TABLE, without, has_rows=True)
    assert full.left_nullable == ("jzksmc",) and "jzksmc varchar(50);" in full.statements[2]


def test_a_missing_key_column_or_table_is_said_not_altered():
    keyless = frontend_migration(TABLE, [c for c in ALL if c != "jzlsh"], has_rows=True)
    assert keyless.key_columns == ("jzlsh",) and keyless.statements == () and keyless.needed
    assert frontend_migration(TABLE, None, has_rows=False) == FrontendMigration("mjzzlxx", missing_table=True)
