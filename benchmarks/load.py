"""Load-time benchmark: parse + validate + build of a SmartNet instance (default italy-652; target < 2 s).

    PYTHONPATH=. python benchmarks/load.py [FOLDER] [--runs 5] [--profile]

Prints best and median wall time over the runs of
* ``parse``: `read_table` of the CSV files `tdmarket.io.read` reads (decode, line endings, split into string cells);
* ``load``:  `tdmarket.io.read` (parse + validate + build the columnar Instance);
* ``stats``: `instance_stats` on the loaded instance (what `tdmarket info` adds).
With ``--profile``, one extra `tdmarket.io.read` run under cProfile: its top 10 functions by cumulative time, then
by own time.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tdmarket.io import read  # noqa: E402
from tdmarket.io.smartnet import OPTIONAL_FILES  # noqa: E402
from tdmarket.io.table import read_table  # noqa: E402
from tdmarket.model.stats import instance_stats  # noqa: E402

DEFAULT = ROOT / ".." / "shared" / "smartnet" / "italy-652"
TARGET_S = 2.0
REQUIRED_FILES = (
    "GeneralParam.csv",
    "TransmissionNodes.csv",
    "DistributionNodes.csv",
    "Edges.csv",
    "NetInjections.csv",
    "Bids.csv",
)


def _times(fn, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", nargs="?", default=str(DEFAULT), help="instance folder (default: italy-652)")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--profile", action="store_true", help="cProfile one load and print the top 10")
    args = ap.parse_args(argv)
    folder = Path(args.folder)
    if not folder.is_dir():
        print(f"load.py: instance folder not found: {folder}", file=sys.stderr)
        return 2
    names = REQUIRED_FILES + OPTIONAL_FILES
    csvs = [folder / n for n in names if (folder / n).is_file()]
    size_mb = sum(p.stat().st_size for p in csvs) / 1e6

    inst = read(folder)  # warm-up (imports, page cache); also validates once
    parse = _times(lambda: [read_table(p, p.name) for p in csvs], args.runs)
    load = _times(lambda: read(folder), args.runs)
    stats = _times(lambda: instance_stats(inst), args.runs)

    print(
        f"instance {folder.resolve().name}: {len(csvs)} CSV files read, {size_mb:.1f} MB; "
        f"{len(inst.buses)} buses, {len(inst.branches)} branches, {len(inst.orders.segments)} segments"
    )
    print(f"{'':<8}{'best':>9}{'median':>9}   ({args.runs} runs)")
    for name, ts in (("parse", parse), ("load", load), ("stats", stats)):
        print(f"{name:<8}{min(ts):>8.3f}s{statistics.median(ts):>8.3f}s")
    verdict = "OK" if statistics.median(load) < TARGET_S else "SLOW"
    print(f"load target < {TARGET_S:.0f} s: {verdict}")

    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        read(folder)
        prof.disable()
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(10)
        print(buf.getvalue().rstrip())
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(10)
        print(buf.getvalue().rstrip())
    return 0 if verdict == "OK" else 1


if __name__ == "__main__":
    sys.exit(main())
