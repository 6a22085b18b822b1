"""`tdmarket compare`: clear with several coordination schemes and write an HTML report."""

from __future__ import annotations

import logging
from pathlib import Path

from ..errors import InputError
from .inputs import check_numbers, instance_path, load_instance, model_solve_options
from .progress import progress_display

log = logging.getLogger(__name__)


def _chosen_schemes(args) -> list[str]:
    """The --schemes list (default: the registry's comparison set); unknown ids are an input error."""
    from ..schemes import registry

    available = registry.names()
    schemes = [x.strip() for x in args.schemes.split(",")] if args.schemes else registry.comparison_ids()
    unknown = [x for x in schemes if x not in available]
    if unknown:
        raise InputError(f"unknown scheme(s) {', '.join(unknown)} (available: {', '.join(available)})")
    return schemes


def report_path(args) -> Path:
    """--report, else DIR/report.html with --out DIR, else report.html."""
    if args.report is not None:
        return Path(args.report)
    return Path(args.out) / "report.html" if args.out else Path("report.html")


def check_report_path(report: Path) -> None:
    """Before any solving: the report can be written (not a folder, its parent can be created)."""
    from ..reporting.writer import check_creatable

    path = report.expanduser().resolve()
    if path.is_dir():
        raise InputError("report path is a folder", file=str(path))
    check_creatable(path)


def cmd_compare(args) -> int:
    from ..operators.executors import start_process_workers_early
    from ..reporting.compare import format_rows, run_comparison, write_report
    from ..reporting.writer import dumps

    check_numbers(args)
    check_report_path(report_path(args))
    if is_federation_path(args):
        return cmd_compare_federation(args)
    schemes = _chosen_schemes(args)
    start_process_workers_early(args.executor)  # (only the decentralised schemes use it; starting it is cheap)
    inst = load_instance(args)
    options = model_solve_options(args) | {"executor": args.executor, "workers": args.workers}
    if args.dispatch_model != "soc":  # the default stays out of the options (and of the results' identity)
        options["dispatch_model"] = args.dispatch_model
    display = progress_display(args.quiet)
    try:
        cmp = run_comparison(
            inst, schemes, progress=display, ac=not args.no_ac, ac_recovery=args.ac_recovery, out=args.out, **options
        )
    finally:
        if display is not None:
            display.close()
    report = report_path(args)
    write_report(cmp, report)
    log.info("report written to %s", report)
    if args.json:
        print(
            dumps(
                {
                    "instance": cmp.instance,
                    "rows": cmp.rows.to_dict(orient="records"),
                    "notes": cmp.notes,
                    "loaded": cmp.loaded,
                    "report": str(report),
                    "out": None if args.out is None else str(args.out),
                    "provenance": cmp.provenance,
                }
            )
        )
    else:
        print(format_rows(cmp))
        print(f"report: {report}")
    return 0


def is_federation_path(args) -> bool:
    """The path is a federation folder (it holds `Members.csv`, docs/format.md §7)."""
    from ..io.federation import is_federation

    return args.path is not None and not getattr(args, "example", False) and is_federation(instance_path(args))


def cmd_compare_federation(args) -> int:
    """`compare FEDERATION`: the platform-level schemes side by side (docs/model.md §12.4)."""
    from ..io.federation import read_federation
    from ..operators.executors import start_process_workers_early
    from ..reporting.federation import (
        federation_json,
        format_federation,
        run_federation_comparison,
        save_federation_results,
        write_federation_report,
    )
    from ..reporting.writer import dumps

    schemes = [x.strip() for x in args.schemes.split(",")] if args.schemes else None
    start_process_workers_early(args.executor)
    fed = read_federation(instance_path(args), edges_file=getattr(args, "edges_file", "Edges.csv"))
    options = model_solve_options(args) | {"executor": args.executor, "workers": args.workers}
    options.pop("progress", None)
    cmp = run_federation_comparison(fed, schemes, ac=not args.no_ac, **options)
    if args.ac_recovery and not args.no_ac:
        cmp.notes.append("AC recovery is not run for a federation (the AC check per member is)")
    report = report_path(args)
    write_federation_report(cmp, report)
    if args.out:
        save_federation_results(cmp, args.out)
    log.info("report written to %s", report)
    if args.json:
        print(dumps(federation_json(cmp) | {"report": str(report)}))
    else:
        print(format_federation(cmp))
        print(f"report: {report}")
    return 0
