"""`tdmarket generate`: a realistic T&D system from real grids (docs/generate.md)."""

from __future__ import annotations

import time


def cmd_generate(args) -> int:
    from ..generate.system import GenerateOptions, generate_system

    opts = GenerateOptions(
        dsos=args.dsos,
        periods=args.periods,
        seed=args.seed,
        feeder_size=args.feeder_size,
        transmission=args.transmission,
        sub_dso_depth=args.sub_dso_depth,
    )
    start = time.perf_counter()
    manifest = generate_system(args.out, opts, force=args.force, layout=args.layout)
    fig = manifest["figures"]
    print(
        f"tdmarket: generated {args.out} in {time.perf_counter() - start:.1f} s: {manifest['transmission']['case']} "
        f"({fig['t_nodes']} T nodes), {fig['dso_areas']} DSO areas ({fig['sub_dso_areas']} split into a sub-DSO), "
        f"{fig['d_nodes']} D nodes, {fig['segments']} segments, imbalance "
        + ", ".join(f"{v:g}" for v in fig["imbalance_mw"])
        + " MW"
    )
    return 0


def add_generate_parser(sub) -> None:
    from ..generate.grids import FEEDER_SIZES, TRANSMISSION_CASES

    g = sub.add_parser(
        "generate",
        help="write a realistic T&D system built from real grids (pandapower, SimBench)",
        description="Write a SmartNet instance folder: a meshed transmission case of pandapower.networks, N radial "
        "DSO areas cut from SimBench MV grids, and an order book and imbalance calibrated on the SmartNet "
        "instances (docs/generate.md). The same options and seed give byte-identical files. Needs the "
        "'generate' extra (pandapower, simbench).",
        epilog="Documentation: docs/generate.md (grids, calibration, options) and docs/format.md (the files).",
    )
    g.add_argument("out", metavar="OUT", help="output folder (new, empty, or written by tdmarket generate)")
    g.add_argument("--dsos", type=int, required=True, metavar="N", help="number of DSO areas (1 … 10 000)")
    g.add_argument("--periods", type=int, default=4, metavar="T", help="periods (1 … 96, default 4)")
    g.add_argument("--seed", type=int, default=0, help="random seed (integer >= 0, default 0)")
    g.add_argument(
        "--feeder-size",
        default="medium",
        choices=list(FEEDER_SIZES),
        help="D nodes per area: small ~15, medium ~40 (default), large = a whole SimBench MV grid (54–114)",
    )
    g.add_argument(
        "--transmission",
        default=None,
        choices=TRANSMISSION_CASES,
        metavar="CASE",
        help="pandapower.networks case (" + ", ".join(TRANSMISSION_CASES) + "); default: the smallest of "
        "case118, case1354pegase, case1888rte, case2869pegase, case6470rte with at least N/3 load buses",
    )
    g.add_argument(
        "--sub-dso-depth",
        type=int,
        default=0,
        choices=(0, 1),
        help="0: no nesting (default); 1: a quarter of the areas hold a sub-DSO area (SubAreas.csv)",
    )
    g.add_argument(
        "--layout",
        default="smartnet",
        choices=("smartnet", "operators"),
        help="smartnet: one SmartNet folder (default); operators: one folder per operator and an index "
        "operators.csv (docs/layout.md), as `tdmarket split` writes",
    )
    g.add_argument("--force", action="store_true", help="replace a non-empty OUT that tdmarket generate did not write")
    g.set_defaults(func=cmd_generate)
