"""Command-line interface: `tdmarket info|clear|compare ...`.

User errors (bad input data, bad options) print one line to stderr and exit with code 2; no traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .errors import InputError, SolverError, TdmarketError


def _instance_path(args) -> Path:
    if getattr(args, "example", False):
        from .examples import builtin_path

        return builtin_path()
    if args.path is None:
        raise InputError("give an instance folder or --example")
    return Path(args.path)


def _load(args):
    from .io import read

    inst = read(_instance_path(args), edges_file=getattr(args, "edges_file", "Edges.csv"))
    scale = getattr(args, "d_rating_scale", None)
    if scale is not None:
        if not scale > 0:
            raise InputError(f"--d-rating-scale {scale} must be positive")
        inst = inst.with_distribution_ratings_scaled(scale)
    for w in inst.warnings:
        print(f"warning: {w}", file=sys.stderr)
    return inst


def cmd_info(args) -> int:
    from .model.stats import format_stats, instance_stats

    inst = _load(args)
    stats = instance_stats(inst)
    if args.json:
        print(json.dumps(stats, indent=2))
    else:
        print(format_stats(stats))
    return 0


def _progress_printer(quiet: bool):
    if quiet:
        return None

    def show(rec: dict) -> None:
        if "stage" in rec:  # hierarchical progress: a bar over DSOs per stage, or a cut-round line
            if rec["stage"] == "iterate":
                lb = rec["lower_bound"]
                print(
                    f"  [iterate] round {rec['iteration']} ({rec['master']}): LB {lb:.6f}  UB "
                    f"{rec['upper_bound']:.6f}  gap {rec['gap_eur']:.4g} EUR",
                    file=sys.stderr,
                    flush=True,
                )
                return
            done, total = rec["done"], rec["total"]
            width = 30
            fill = int(width * done / max(total, 1))
            end = "\n" if done == total else ""
            print(
                f"\r  [{rec['stage']}] [{'#' * fill}{'.' * (width - fill)}] {done}/{total} {rec['label']:<16}",
                end=end,
                file=sys.stderr,
                flush=True,
            )
            return
        lb, ub, gap = rec.get("lower_bound"), rec.get("upper_bound"), rec.get("gap")
        print(
            f"  [mip] round {rec['round']}: bound {lb:.6f}  incumbent {ub:.6f}  gap {100 * gap:.4f} %  "
            f"({rec['elapsed_s']:.1f} s)",
            file=sys.stderr,
            flush=True,
        )

    return show


def _check_numbers(args) -> None:
    """Reject out-of-range numeric options with a one-line error (exit 2)."""
    checks = [
        ("--mip-gap", getattr(args, "mip_gap", None), lambda v: v >= 0),
        ("--time-limit", getattr(args, "time_limit", None), lambda v: v is None or v > 0),
        ("--threads", getattr(args, "threads", None), lambda v: v >= 1),
        ("--slack-penalty", getattr(args, "slack_penalty", None), lambda v: v > 0),
        ("--workers", getattr(args, "workers", None), lambda v: v is None or v >= 1),
        ("--curve-tol", getattr(args, "curve_tol", None), lambda v: v is None or v > 0),
        ("--max-curve-evals", getattr(args, "max_curve_evals", None), lambda v: v is None or v >= 2),
        ("--gap", getattr(args, "gap", None), lambda v: v is None or 0 < v < 1),
        ("--max-rounds", getattr(args, "max_rounds", None), lambda v: v is None or v >= 1),
    ]
    for flag, value, ok in checks:
        if value is not None and not ok(value):
            raise InputError(f"{flag} {value} is out of range")


def cmd_clear(args) -> int:
    import time

    _check_numbers(args)
    from .api import clear, gap_to
    from .reporting.writer import dumps, write_results

    t0 = time.perf_counter()
    inst = _load(args)
    t_load = time.perf_counter() - t0
    if not args.quiet:
        print(
            f"tdmarket: clearing {inst.name} with scheme {args.scheme}{' (relaxed)' if args.relax else ''} ...",
            file=sys.stderr,
            flush=True,
        )
    options = dict(
        relax=args.relax,
        mip_gap=args.mip_gap,
        time_limit=args.time_limit,
        threads=args.threads,
        dist_model=args.dist_model,
        reactive_policy=args.reactive_policy,
        slack_penalty=args.slack_penalty,
        progress=_progress_printer(args.quiet),
    )
    from .schemes import registry

    spec = registry.get(args.scheme)
    extra = dict(
        executor=args.executor,
        workers=args.workers,
        address=args.address,
        curve_tol=args.curve_tol,
        max_evals=args.max_curve_evals,
        gap=args.gap,
        max_iterations=args.max_rounds,
    )
    options.update({k: v for k, v in extra.items() if spec.accepts(k)})
    result = clear(inst, scheme=args.scheme, **options)
    result.summary["timings_s"]["load"] = t_load
    if args.compare_centralized and args.scheme != "centralized" and args.scheme != "common":
        if not args.quiet:
            print("tdmarket: clearing the centralized reference ...", file=sys.stderr, flush=True)
        t_ref = time.perf_counter()
        ref = clear(
            inst,
            scheme="centralized",
            **{
                k: v
                for k, v in options.items()
                if k in ("relax", "mip_gap", "time_limit", "threads", "dist_model", "reactive_policy", "slack_penalty")
            },
        )
        result.summary["gap_to_centralized"] = {
            "centralized_wall_s": time.perf_counter() - t_ref,
            "centralized_cost_eur": ref.total_cost,
            "hierarchical_cost_eur": result.total_cost,
            "gap": gap_to(result, ref),
            "centralized_mip_gap": ref.summary["mip"].get("gap"),
            "hierarchical_dso_mip_gap_max": result.summary.get("dso_mip_gap_max"),
        }
    if args.out:
        out = write_results(result, args.out)
        if not args.quiet:
            print(f"tdmarket: results written to {out}", file=sys.stderr)
    s = result.summary
    if args.json:
        print(dumps(s))
    else:
        c = s["cost"]
        print(f"scheme            {s['scheme']}")
        print(f"instance          {s['instance']}  periods {s['periods']}")
        print(
            f"total cost        {c['total_cost_eur']:.6f} EUR  (market {c['market_cost_eur']:.6f}, "
            f"slack {c['slack_cost_eur']:.6f})"
        )
        print(f"slack             {s['slack']['p_mw']:.6g} MW, {s['slack']['q_mvar']:.6g} Mvar")
        if s.get("mip", {}).get("gap") is not None:
            print(
                f"mip               {s['mip']['binaries']} binaries, bound {s['mip']['lower_bound']:.6f}, "
                f"gap {100 * s['mip']['gap']:.4f} %"
            )
        if "soc_gap" in s:
            print(f"soc gap           max {s['soc_gap']['max']:.3g}, inexact lines {s['soc_gap']['inexact_lines']}")
        if "solver" in s:
            print(f"solver            {s['solver']['name']} {s['solver']['status']} in {s['solver']['time_s']:.2f} s")
        if "curves" in s:
            cv = s["curves"]
            print(
                f"curves            {cv['evaluations']} evaluations, sum eps {cv['sum_eps_eur']:.4g} EUR, "
                f"error at solution {s['curve_error_at_solution_eur']:.4g} EUR"
            )
            if "certificate" in s:
                ce = s["certificate"]
                lb = ce["lower_bound_eur"]
                gap = ce["dispatched_gap"]
                print(f"cut exchange      {ce['rounds']} rounds, stopped by {ce['stopped_by']} ({ce['reason']})")
                print(
                    f"certificate       lower bound {lb if lb is None else f'{lb:.6f}'} EUR, certified gap of the "
                    f"dispatched point {'n/a' if gap is None else f'{gap:.3g}'} (target {ce['target_gap']:g})"
                )
            com = s["communication"]
            print(f"messages          {com['messages']} ({com['bytes']} bytes)")
            tm = s["timings_s"]
            print(f"time              wall {tm['wall']:.2f} s, critical path {tm['critical_path']:.2f} s")
        if "gap_to_centralized" in s:
            g = s["gap_to_centralized"]
            print(
                f"gap to central.   {100 * g['gap']:.5f} %  (centralized {g['centralized_cost_eur']:.6f} EUR in "
                f"{g['centralized_wall_s']:.2f} s; this scheme {s['timings_s']['wall']:.2f} s)"
            )
        for w in s.get("warnings", []):
            print(f"warning           {w}")
    return 0


def cmd_compare(args) -> int:
    from .reporting.compare import format_rows, run_comparison, write_report
    from .reporting.writer import dumps
    from .schemes import registry

    _check_numbers(args)
    available = registry.names()
    schemes = [x.strip() for x in args.schemes.split(",")] if args.schemes else registry.comparison_ids()
    unknown = [x for x in schemes if x not in available]
    if unknown:
        raise InputError(f"unknown scheme(s) {', '.join(unknown)} (available: {', '.join(available)})")
    inst = _load(args)
    say = None if args.quiet else (lambda text: print(f"tdmarket: {text} ...", file=sys.stderr, flush=True))
    options = dict(
        relax=args.relax,
        mip_gap=args.mip_gap,
        time_limit=args.time_limit,
        threads=args.threads,
        dist_model=args.dist_model,
        reactive_policy=args.reactive_policy,
        slack_penalty=args.slack_penalty,
        executor=args.executor,
        workers=args.workers,
    )
    cmp = run_comparison(inst, schemes, progress=say, ac=not args.no_ac, **options)
    write_report(cmp, args.report)
    if args.json:
        print(
            dumps(
                {
                    "instance": cmp.instance,
                    "rows": cmp.rows.to_dict(orient="records"),
                    "notes": cmp.notes,
                    "report": str(args.report),
                }
            )
        )
    else:
        print(format_rows(cmp))
        print(f"report: {args.report}")
    return 0


def cmd_variant(args) -> int:
    from .generate.variants import PRESETS, make_variant, read_manifest

    base, out = args.base, args.out
    if args.example:
        if base is not None and out is not None:
            raise InputError("give either BASE or --example, not both")
        out = out if out is not None else base
        from .examples import builtin_path

        base = builtin_path()
    if base is None or out is None:
        raise InputError("give a BASE instance folder and an OUT folder (or --example OUT)")
    options = dict(PRESETS[args.preset]) if args.preset else {}
    for key in VARIANT_OPTIONS:
        value = getattr(args, key)
        if value is not None:
            options[key] = value
            alternative = {"dso_copies": "dso_areas", "order_copies": "segments"}
            alternative.update({b: a for a, b in alternative.items()})
            if key in alternative and getattr(args, alternative[key]) is None:
                options.pop(alternative[key], None)  # an explicit option replaces the preset's alternative
    path = make_variant(base, out, seed=args.seed, overwrite=args.overwrite, **options)
    fig = read_manifest(path)["figures"]
    print(
        f"tdmarket: variant written to {path}: {fig['dso_areas']} DSO areas, {fig['segments']} segments "
        f"({100 * fig['aon_share']:.1f} % all-or-nothing), start/stop {100 * fig['start_stop_share_of_bids']:.1f} % "
        f"of bids, negative-price down {100 * fig['negative_price_share_of_down']:.1f} %"
    )
    return 0


VARIANT_OPTIONS = (
    "dso_copies",
    "dso_areas",
    "order_copies",
    "segments",
    "aon_share",
    "start_stop_share",
    "negative_price_share",
    "price_noise",
    "interface_rating_scale",
    "d_rating_scale",
    "imbalance_scale",
    "periods",
    "edges_file",
)


def add_variant_parser(sub) -> None:
    from .generate.variants import PRESETS

    v = sub.add_parser(
        "variant",
        help="write a random variant of an instance (cloned DSO areas, perturbed orders and ratings)",
        description="Write a random but valid variant of a SmartNet instance folder, deterministic for --seed "
        "(the same seed gives byte-identical files). Shares are fractions in [0, 1]; unset options keep the "
        "base's values. The rules are in tdmarket/generate/variants.py; OUT/variant.json records them and the "
        "figures reached.",
    )
    v.add_argument("base", nargs="?", metavar="BASE", help="base instance folder (omit with --example)")
    v.add_argument("out", nargs="?", metavar="OUT", help="output folder (must be new or empty)")
    v.add_argument("--example", action="store_true", help="use the built-in example as BASE")
    v.add_argument("--seed", type=int, required=True, help="random seed (integer >= 0)")
    v.add_argument(
        "--preset", choices=sorted(PRESETS), default=None, help="named option set; explicit options override it"
    )
    v.add_argument(
        "--dso-copies", type=float, metavar="K", help="K >= 1: round(K*n) DSO areas (clones at random T nodes)"
    )
    v.add_argument("--dso-areas", type=int, metavar="N", help="total number of DSO areas (instead of --dso-copies)")
    v.add_argument(
        "--order-copies", type=float, metavar="F", help="F >= 1: duplicate D orders up to F times the D segments"
    )
    v.add_argument("--segments", type=int, metavar="N", help="duplicate D orders up to N segments in all")
    v.add_argument("--aon-share", type=float, metavar="F", help="share of segments that are all-or-nothing (Xlb=1)")
    v.add_argument("--start-stop-share", type=float, metavar="F", help="share of QBids in start/stop blocks")
    v.add_argument(
        "--negative-price-share", type=float, metavar="F", help="share of down segments with a negative price"
    )
    v.add_argument(
        "--price-noise",
        type=float,
        metavar="S",
        help="sigma of a random log-normal price mark-up (prices only rise; 0 = none)",
    )
    v.add_argument("--interface-rating-scale", type=float, metavar="F", help="factor on rated T-D interface ratings")
    v.add_argument("--d-rating-scale", type=float, metavar="F", help="factor on rated D-D line ratings")
    v.add_argument(
        "--imbalance-scale", type=float, metavar="F", help="factor on the system imbalance (spread over T nodes)"
    )
    v.add_argument("--periods", type=int, metavar="N", help="keep the first N periods")
    v.add_argument("--edges-file", default=None, help="edge file defining the topology (default Edges.csv)")
    v.add_argument("--overwrite", action="store_true", help="replace a non-empty OUT folder")
    v.set_defaults(func=cmd_variant)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tdmarket", description=__doc__.splitlines()[0])
    from . import __version__

    p.add_argument("--version", action="version", version=f"tdmarket {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    def add_instance_args(sp, stress: bool = False):
        sp.add_argument("path", nargs="?", help="instance folder in SmartNet CSV format")
        sp.add_argument("--example", action="store_true", help="use the built-in example instance")
        sp.add_argument("--edges-file", default="Edges.csv", help="edge file name (e.g. Edges_hard.csv)")
        if stress:
            sp.add_argument(
                "--d-rating-scale",
                type=float,
                default=None,
                metavar="F",
                help="stressed variant: multiply every distribution line rating by F (e.g. 0.4)",
            )

    info = sub.add_parser("info", help="print instance statistics (docs/model.md §10)")
    add_instance_args(info)
    info.add_argument("--json", action="store_true", help="machine-readable output")
    info.set_defaults(func=cmd_info)

    from .formulations.options import DIST_MODELS, REACTIVE_POLICIES
    from .operators.executors import EXECUTORS
    from .schemes import registry

    scheme_help = "; ".join(f"{n}: {d}" for n, d in registry.describe())

    clear = sub.add_parser("clear", help="clear the balancing market of an instance")
    add_instance_args(clear, stress=True)
    clear.add_argument(
        "--scheme",
        default="centralized",
        choices=registry.names(),
        metavar="SCHEME",
        help=f"coordination scheme (default centralized). {scheme_help}",
    )
    clear.add_argument("--relax", action="store_true", help="continuous relaxation of the binaries (logic kept)")
    clear.add_argument("--out", help="write a results folder (CSV/Parquet tables + summary.json)")
    clear.add_argument("--mip-gap", type=float, default=1e-3, help="relative MIP gap target (default 1e-3)")
    clear.add_argument("--time-limit", type=float, default=None, help="time limit in seconds for the MIP")
    clear.add_argument("--threads", type=int, default=1, help="solver threads (default 1, deterministic)")
    clear.add_argument("--dist-model", default="socp", choices=DIST_MODELS, help="distribution network model")
    clear.add_argument(
        "--reactive-policy",
        default="bounded",
        choices=REACTIVE_POLICIES,
        help="reactive power of D orders without PQ limits (docs/model.md §4.3)",
    )
    clear.add_argument("--slack-penalty", type=float, default=1e4, help="balance slack penalty, EUR/MWh")
    h = clear.add_argument_group("hierarchical scheme")
    h.add_argument(
        "--executor",
        default="process",
        choices=EXECUTORS,
        help="where DSO work runs: process pool (default, all cores), inline, or a Ray cluster",
    )
    h.add_argument("--workers", type=int, default=None, help="parallel workers (default: all cores)")
    h.add_argument("--address", default=None, help="Ray cluster address (default: start a local one)")
    h.add_argument(
        "--curve-tol", type=float, default=0.1, help="certified curve tolerance per area and period, EUR (default 0.1)"
    )
    h.add_argument(
        "--max-curve-evals",
        type=int,
        default=5,
        help="cap on evaluations per area and period when building a curve (default 5; the cut "
        "exchange then certifies the result, docs/model.md §6.3)",
    )
    h.add_argument(
        "--gap",
        type=float,
        default=1e-4,
        help="stop the cut exchange at this certified relative gap (UB - LB) / max(1, |UB|) (default 1e-4)",
    )
    h.add_argument("--max-rounds", type=int, default=50, help="cap on relaxed cut-exchange rounds (default 50)")
    h.add_argument("--compare-centralized", action="store_true", help="also clear centrally and report the cost gap")
    clear.add_argument("--json", action="store_true", help="print the summary as JSON")
    clear.add_argument("--quiet", action="store_true", help="no progress output")
    clear.set_defaults(func=cmd_clear)

    cmp = sub.add_parser("compare", help="clear with every coordination scheme and compare (report.html)")
    add_instance_args(cmp, stress=True)
    cmp.add_argument(
        "--schemes",
        default=None,
        help="comma-separated scheme ids (default: " + ",".join(registry.comparison_ids()) + ")",
    )
    cmp.add_argument("--report", default="report.html", help="HTML report path (default report.html)")
    cmp.add_argument("--relax", action="store_true", help="continuous relaxation of the binaries")
    cmp.add_argument("--no-ac", action="store_true", help="skip the AC power-flow check")
    cmp.add_argument("--mip-gap", type=float, default=1e-3)
    cmp.add_argument("--time-limit", type=float, default=None)
    cmp.add_argument("--threads", type=int, default=1)
    cmp.add_argument("--dist-model", default="socp", choices=DIST_MODELS)
    cmp.add_argument("--reactive-policy", default="bounded", choices=REACTIVE_POLICIES)
    cmp.add_argument("--slack-penalty", type=float, default=1e4)
    cmp.add_argument("--executor", default="process", choices=EXECUTORS)
    cmp.add_argument("--workers", type=int, default=None)
    cmp.add_argument("--json", action="store_true", help="print the comparison as JSON")
    cmp.add_argument("--quiet", action="store_true")
    cmp.set_defaults(func=cmd_compare)
    add_variant_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except InputError as exc:
        print(f"tdmarket: error: {exc.one_line()}", file=sys.stderr)
        return 2
    except SolverError as exc:
        print(f"tdmarket: solver error: {exc}", file=sys.stderr)
        return 3
    except TdmarketError as exc:  # e.g. operator work failed twice: no results folder is written
        print(f"tdmarket: error: {exc}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print("tdmarket: interrupted", file=sys.stderr)
        return 130
