"""`tdmarket compare`: clear with several coordination schemes and write an HTML report."""

from __future__ import annotations

import sys

from ..errors import InputError
from .inputs import check_numbers, load_instance, model_solve_options


def _chosen_schemes(args) -> list[str]:
    """The --schemes list (default: the registry's comparison set); unknown ids are an input error."""
    from ..schemes import registry

    available = registry.names()
    schemes = [x.strip() for x in args.schemes.split(",")] if args.schemes else registry.comparison_ids()
    unknown = [x for x in schemes if x not in available]
    if unknown:
        raise InputError(f"unknown scheme(s) {', '.join(unknown)} (available: {', '.join(available)})")
    return schemes


def check_report_path(report: str) -> None:
    """Before any solving: the report can be written (not a folder, its parent can be created)."""
    from pathlib import Path

    from ..reporting.writer import check_creatable

    path = Path(report).expanduser().resolve()
    if path.is_dir():
        raise InputError("report path is a folder", file=str(path))
    check_creatable(path)


def cmd_compare(args) -> int:
    from ..reporting.compare import format_rows, run_comparison, write_report
    from ..reporting.writer import dumps

    check_numbers(args)
    check_report_path(args.report)
    schemes = _chosen_schemes(args)
    inst = load_instance(args)
    say = None if args.quiet else (lambda text: print(f"tdmarket: {text} ...", file=sys.stderr, flush=True))
    options = model_solve_options(args) | {"executor": args.executor, "workers": args.workers}
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
