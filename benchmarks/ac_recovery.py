"""Benchmark: the exact AC re-dispatch of one distribution area (docs/model.md §5(h)), time per area and its split.

Clears the instance (`common`, distribution ratings scaled by `--d-rating-scale`), then re-dispatches the areas
that are not AC-deliverable (with `--all-areas`, every area, to time many areas) one after the other in this
process, and prints per area: buses, lines, periods, the time of the SOC start, the CasADi build, Ipopt and the
AC power flow certificate (s), the total wall and CPU time (CPU: robust on a shared machine), Ipopt's
iterations and status.  Target (issue 12): <= 1 s per area of ~40 nodes x
4 periods.  Each area is timed twice (`--repeat`): the second run reuses the CasADi function of the first (same
area, same program shape), as a DSO agent or a worker does from its second recovery on.

    python benchmarks/ac_recovery.py [--instance ../shared/smartnet/italy-693] [--d-rating-scale 0.4] [--all-areas]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import tdmarket
from tdmarket.formulations.options import ModelOptions
from tdmarket.operators.ac_dispatch import AreaTask, area_tables, deliverability, recover_area
from tdmarket.solvers.ac_network import top_areas
from tdmarket.solvers.ac_powerflow import ac_power_flow

DEFAULT = Path(__file__).resolve().parents[1].parent / "shared" / "smartnet" / "italy-693"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--instance", default=str(DEFAULT))
    ap.add_argument("--d-rating-scale", type=float, default=0.4)
    ap.add_argument("--all-areas", action="store_true", help="re-dispatch every area, deliverable or not")
    ap.add_argument("--max-areas", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    inst = tdmarket.load(args.instance).with_distribution_ratings_scaled(args.d_rating_scale)
    t0 = time.perf_counter()
    res = tdmarket.clear(inst, "common", incentives=False)
    print(f"{inst.name} x{args.d_rating_scale}: common cleared in {time.perf_counter() - t0:.1f} s")
    status = deliverability(ac_power_flow(inst, res.tables)["areas"]).set_index("area")
    names = list(inst.areas.name)
    areas = [int(a) for a in top_areas(inst) if args.all_areas or not bool(status.loc[names[int(a)], "deliverable"])]
    areas = areas[: args.max_areas]
    opts = ModelOptions(integer=True)
    print(
        f"{'area':>12} {'run':>3} {'buses':>5} {'lines':>5} {'T':>2} {'soc':>6} {'build':>6} {'ipopt':>6} "
        f"{'cert':>6} {'total':>6} {'cpu':>6} {'iter':>4}  status"
    )
    totals = []
    for a in areas:
        sub = inst.area_instance(a)
        row = status.loc[names[a]]
        task = AreaTask(
            names[a], sub, area_tables(sub, res.tables), opts, int(row.violations), float(row.max_abs_dx_mw)
        )
        for k in range(args.repeat):
            c0 = time.process_time()
            r = recover_area(task).recovery
            cpu = time.process_time() - c0
            n_bus = int((~sub.buses.is_boundary).sum())
            n_line = int(np.sum(sub.buses.is_dist[sub.branches.f] & sub.buses.is_dist[sub.branches.t]))
            print(
                f"{names[a]:>12} {k + 1:>3} {n_bus:>5} {n_line:>5} {sub.n_periods:>2} {r.soc_start_s:6.3f} "
                f"{r.build_s:6.3f} {r.ipopt_s:6.3f} {r.certificate_s:6.3f} {r.time_s:6.3f} {cpu:6.3f} {r.iterations:>4}  "
                f"{r.status}{' (recovered)' if r.recovered else ''}"
            )
            if k == args.repeat - 1:
                totals.append((r.time_s, cpu))
    if totals:
        wall, cpu_s = np.array(totals).T
        print(
            f"per area (last run): wall median {np.median(wall):.3f} s, max {wall.max():.3f} s; CPU (this process) "
            f"median {np.median(cpu_s):.3f} s, max {cpu_s.max():.3f} s; over {len(totals)} areas"
        )


if __name__ == "__main__":
    main()
