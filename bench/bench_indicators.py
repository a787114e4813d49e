"""The indicator evaluator (hisbridge.indicators.evaluate) over one month of one large hospital's detail:
10,000 discharges (basy), 5,000 operations (basy_ss), 60,000 outpatient visits (mjzzlxx), every definition of
schemas/indicators. What the sink's cross-check pays when a month's evaluation rows arrive (plus the read).

Run: .venv/bin/python bench/bench_indicators.py   (median of 5 runs, wall time; the machine is shared)
"""
import random, statistics, time
from hisbridge.catalog import catalog_for
from hisbridge.settings import load_settings
from hisbridge.indicators import definitions, evaluate
s = load_settings(); defs = definitions.load(s.paths.indicators, catalog_for(s.paths))
rng = random.Random(1)
basy = [{"yljgdm": "X", "bah": f"B{i}", "zycs": 1, "cysj": f"2024-03-{1 + i % 28:02d}T10:00:00", "sjzy": rng.randint(1, 20),
         "lyfs": "5" if i % 100 == 0 else "1", "nl": rng.randint(0, 90), "bzyzs_nl": 3, "jbdm": f"I{i % 99:02d}.{i % 9}", "xgbz": "0"} for i in range(10000)]
ss = [{"yljgdm": "X", "bah": f"B{i}", "zycs": 1, "ssjb": str(1 + i % 4), "ssjczbm": f"{i % 80:02d}.{i % 99:02d}", "xgbz": "0"} for i in range(0, 10000, 2)]
mj = [{"yljgdm": "X", "jzsj": f"2024-03-{1 + i % 28:02d}T09:00:00", "xgbz": "0"} for i in range(60000)]
rows = {"basy": basy, "basy_ss": ss, "mjzzlxx": mj}
times = []
for _ in range(5):
    t = time.perf_counter(); evaluate.derive_all(defs.indicators, "2024-03", rows); times.append(time.perf_counter() - t)
print("derive_all 10k discharges + 5k operations + 60k visits: median %.2f s over 5 (min %.2f, max %.2f)" % (statistics.median(times), min(times), max(times)))
