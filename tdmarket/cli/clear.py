"""`tdmarket clear`: assemble the solver options, clear, optionally clear the centralized reference, print."""

from __future__ import annotations

import logging
import time

from .inputs import check_numbers, instance_path, load_instance, load_layout_index, model_solve_options
from .progress import progress_display
from .summary import print_summary

log = logging.getLogger(__name__)

# options every scheme takes, and so the ones the centralized reference is cleared with
COMMON_OPTIONS = ("relax", "mip_gap", "time_limit", "threads", "dist_model", "reactive_policy", "slack_penalty")


def clear_options(args) -> dict:
    """Keyword arguments for `tdmarket.clear`: the common options plus those the chosen scheme accepts."""
    from ..schemes import registry

    options = model_solve_options(args) | {"progress": progress_display(args.quiet)}
    spec = registry.get(args.scheme)
    extra = dict(
        executor=args.executor,
        workers=args.workers,
        address=args.address,
        curve_tol=args.curve_tol,
        max_evals=args.max_curve_evals,
        gap=args.gap,
        max_iterations=args.max_rounds,
        skip_bracketed=args.skip_bracketed,
        repair_rounds=args.repair_rounds,
    )
    if args.dispatch_model != "soc":  # the default stays out of the options (and of the results' identity)
        extra["dispatch_model"] = args.dispatch_model
    options.update({k: v for k, v in extra.items() if spec.accepts(k)})
    return options


def add_gap_to_centralized(inst, result, options: dict, quiet: bool) -> None:
    """Clear `inst` centrally with the common options and record the cost gap in `result.summary`."""
    from ..api import clear, gap_to

    log.info("clearing the centralized reference ...")
    t_ref = time.perf_counter()
    ref = clear(inst, scheme="centralized", **{k: v for k, v in options.items() if k in COMMON_OPTIONS})
    result.summary["gap_to_centralized"] = {
        "centralized_wall_s": time.perf_counter() - t_ref,
        "centralized_cost_eur": ref.total_cost,
        "hierarchical_cost_eur": result.total_cost,
        "gap": gap_to(result, ref),
        "centralized_mip_gap": ref.summary["mip"].get("gap"),
        "hierarchical_dso_mip_gap_max": result.summary.get("dso_mip_gap_max"),
    }


def cmd_clear(args) -> int:
    check_numbers(args)
    from ..api import clear, integrated
    from ..reporting.writer import check_results_folder, dumps, write_results

    protect = (instance_path(args),)
    if args.out is not None:  # a results folder that cannot be written is known now, not after the solve
        check_results_folder(args.out, force=args.force, protect=protect)
    if args.ac_recovery or args.dispatch_model == "ac":  # a missing solver stack is known now, not after the clearing
        from ..reporting.ac_recovery import require_recovery_stack

        require_recovery_stack()
    from ..operators.executors import start_process_workers_early
    from ..schemes import registry

    if registry.get(args.scheme).accepts("executor"):
        start_process_workers_early(args.executor)  # its workers' start overlaps with reading the instance
    t0 = time.perf_counter()
    inst = load_layout_index(args) or load_instance(args)
    t_load = time.perf_counter() - t0
    log.info("clearing %s with scheme %s%s ...", inst.name, args.scheme, " (relaxed)" if args.relax else "")
    options = clear_options(args)
    display = options["progress"]
    try:
        result = clear(inst, scheme=args.scheme, **options)
    finally:
        if display is not None:
            display.close()
    result.summary["timings_s"]["load"] = t_load
    if args.ac_recovery:
        from ..reporting.ac_recovery import attach_recovery, recover

        log.info("AC check and recovery ...")
        attach_recovery(result, recover(integrated(inst), result.tables, options))
    if args.compare_centralized and args.scheme != "centralized" and args.scheme != "common":
        add_gap_to_centralized(inst, result, options, args.quiet)
    if args.out is not None:
        out = write_results(result, args.out, force=args.force, protect=protect)
        log.info("results written to %s", out)
    if args.json:
        print(dumps(result.summary))
    else:
        print_summary(result.summary)
    return 0
