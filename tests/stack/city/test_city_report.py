"""The city platform's relay night on a real PostgreSQL city database: three simulated hospitals write
catalog-shaped uploads (identity fields SM4 ciphertext, throwaway key), one completes its batch late, one
re-uploads another's key; `hisbridge city report --batch D --json` reads the city database and says per
hospital what the city rejected and why, and the relay plan holds the accepted rows until 22:00 and lets
them go only until D+1 03:00. (Not here yet: capture by Debezium and the worker's sink writing them to the
front-end — see the branch report.)"""
from __future__ import annotations

import datetime as dt
import json

import psycopg2
import pytest
from click.testing import CliRunner
from hisbridge.catalog.loader import load_catalog
from hisbridge.chain.crypto import parse_key
from hisbridge.chain.quality.cross_hospital import load_hospital_list
from hisbridge.cli import main
from hisbridge.clock import SHANGHAI
from hisbridge.delivery.city_relay import deliverable_now, plan_night
from hisbridge.delivery.schedule import parse as parse_schedule
from hisbridge.settings import load_settings
from hisbridge.sim.city import load_city, plan_uploads

D = dt.date(2026, 11, 30)
KEY = parse_key("00112233445566778899aabbccddeeff", "throwaway")


@pytest.fixture(scope="module")
def city(module_resources):
    settings = load_settings()
    catalog = load_catalog(settings.paths.catalog, settings.paths.valuesets)
    hospitals = load_hospital_list(settings.deployment.city_hospitals)
    first, second, late = sorted(hospitals.hospitals)
    plan = plan_uploads(catalog, [first, second, late], D, 6, KEY, seed=3, late=late, duplicate=(first, second))
    dsn = module_resources.database("his", f"city_{module_resources.id}")
    conn = psycopg2.connect(dsn)
    try:
        load_city(conn, catalog, plan, D)
    finally:
        conn.close()
    return {"dsn": dsn, "catalog": catalog, "hospitals": hospitals, "plan": plan,
            "first": first, "second": second, "late": late}


def _report(city) -> dict:
    env = {"HISBRIDGE_HIS_DSN": city["dsn"], "HISBRIDGE_ROLE": "city", "HISBRIDGE_LANG": "both"}
    result = CliRunner().invoke(main, ["city", "report", "--batch", D.isoformat(), "--json"], env=env)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_the_report_says_per_hospital_what_the_city_rejected_and_why(city):
    report = _report(city)["hospitals"]
    first, second, late = city["first"], city["second"], city["late"]
    assert report[first]["rejected"] == 0 and report[first]["accepted"] == 6
    assert report[second]["by_rule"] == {"duplicate_key_across_hospitals": 1}
    assert report[second]["accepted"] == 6
    [dup] = report[second]["rows"]
    assert dup["key"] == ["H0V00000"] and first in dup["reasons"][0]["message"]
    assert report[late]["by_rule"] == {"hospital_batch_late": 6} and report[late]["accepted"] == 0
    assert "23:30:00+08:00" in report[late]["late"]


def test_accepted_rows_go_out_only_inside_the_relay_window(city):
    plan, hospitals = city["plan"], city["hospitals"]
    from hisbridge.chain.quality.cross_hospital import Upload
    uploads = [Upload("mjzzlxx", org, (rec["jzlsh"],), at, rec) for org, at, rec in plan.rows]
    night = plan_night(city["catalog"], parse_schedule({}, mode="city_relay"), D.isoformat(), uploads,
                       plan.completed, hospitals)
    at = lambda day, hh, mm=0: dt.datetime.combine(day, dt.time(hh, mm), SHANGHAI)   # noqa: E731
    assert deliverable_now(night, at(D, 21, 59)) == ()
    out = deliverable_now(night, at(D, 22))
    assert sorted((u.org, u.record["jzlsh"]) for u in out) == sorted(
        (o, r["jzlsh"]) for o, _, r in plan.rows if o != city["late"] and not (o == city["second"] and r["jzlsh"] == "H0V00000"))
    assert deliverable_now(night, at(D + dt.timedelta(days=1), 3)) == ()
