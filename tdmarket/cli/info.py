"""`tdmarket info`: instance statistics (and, with --compare, the calibration figures next to other instances')."""

from __future__ import annotations

import json
from pathlib import Path

from .inputs import load_instance


def _figure_text(value) -> str:
    if isinstance(value, list):
        return " / ".join(f"{v:.3g}" for v in value)
    return f"{value:.3g}"


def compare_table(columns: dict[str, dict]) -> str:
    """Calibration figures (rows) of several instances (columns) as an aligned text table."""
    names = list(columns)
    keys = list(next(iter(columns.values())))
    cells = [[k, *(_figure_text(columns[n][k]) for n in names)] for k in keys]
    header = ["figure", *names]
    widths = [max(len(r[i]) for r in [header, *cells]) for i in range(len(header))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in cells]
    return "\n".join(lines)


def cmd_info(args) -> int:
    from ..model.stats import format_stats, instance_stats

    inst = load_instance(args)
    stats = instance_stats(inst)
    if args.compare:
        from ..generate.calibration import CALIBRATION, measure
        from ..io import read

        columns = {inst.name: measure(inst)}
        for path in args.compare:
            other = read(path, edges_file=args.edges_file)
            columns[other.name if other.name not in columns else str(Path(path))] = measure(other)
        columns["calibration"] = dict(CALIBRATION)
        stats["calibration_figures"] = columns
    if args.json:
        print(json.dumps(stats, indent=2))
    else:
        print(format_stats(stats))
        if args.compare:
            print("\ncalibration figures (docs/generate.md §3):")
            print(compare_table(stats["calibration_figures"]))
    return 0
