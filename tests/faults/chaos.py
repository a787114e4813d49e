"""`make chaos SEED=n`: one simulated day (the demo scenario's data) with 20 faults drawn at random — seeded, so
the same seed is the same day — from the faults that may strike while the HIS is written (worker, Connect,
broker kill -9 / stop, a paused connector, duplicated raw messages), ending with the HIS-side reconcile of
every batch: 0 missing, 0 duplicated, and exactly the planted quarantine. Exit 1 otherwise."""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]

from fault_harness import chaos_plan, run_chaos  # noqa: E402
from hisbridge.settings import load_settings  # noqa: E402
from support import Resources  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--faults", type=int, default=20)
    args = parser.parse_args()
    print(f"chaos seed {args.seed}: {args.faults} faults")
    for i, (name, pause, hold) in enumerate(chaos_plan(args.seed, args.faults).faults, 1):
        print(f"  {i:2d}. {name:<18} after {pause:4.1f}s, held {hold:4.1f}s")
    res = Resources(load_settings())
    try:
        with tempfile.TemporaryDirectory(prefix="hisbridge-chaos-") as tmp:
            verdict = run_chaos(res, Path(tmp), args.seed, args.faults)
    except AssertionError as exc:
        print(f"chaos seed {args.seed}: NOT OK\n{exc}")
        return 1
    finally:
        problems = res.cleanup()
        if problems:
            print("cleanup left things behind: " + "; ".join(problems))
    for batch, output in verdict.batches.items():
        print(f"-- hisbridge reconcile --batch {batch}\n{output}")
    print(f"chaos seed {args.seed}: {args.faults} faults, {verdict.seconds:.0f}s, 0 missing, 0 duplicated: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
