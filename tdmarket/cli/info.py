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


def federation_stats(fed) -> dict:
    """`info FEDERATION`: every member's size and imbalance, and the interconnectors with their capacities."""
    from ..model.stats import instance_stats

    ic = fed.interconnectors
    members = []
    for name, inst in zip(fed.members, fed.instances):
        s = instance_stats(inst)
        members.append(
            {
                "member": name,
                "source": inst.source,
                "periods": s["periods"]["numbers"],
                "t_nodes": s["network"]["t_nodes"],
                "d_nodes": s["network"]["d_nodes"],
                "dso_areas": s["areas"]["dso_areas"],
                "sub_areas": s["areas"]["sub_areas"],
                "segments": s["orders"]["segments"],
                "system_imbalance_mw": s["injections"]["system_imbalance"],
            }
        )
    links = [
        {
            "interconnector": int(ic.id[k]),
            "from": f"{fed.members[ic.from_member[k]]}/{int(fed.instances[ic.from_member[k]].buses.id[ic.from_bus[k]])}",
            "to": f"{fed.members[ic.to_member[k]]}/{int(fed.instances[ic.to_member[k]].buses.id[ic.to_bus[k]])}",
            "atc_forward_mw": [float(v) for v in ic.atc_forward_mw[k]],
            "atc_backward_mw": [float(v) for v in ic.atc_backward_mw[k]],
        }
        for k in range(len(ic))
    ]
    return {
        "federation": fed.name,
        "periods": [int(p) for p in fed.periods],
        "members": members,
        "interconnectors": links,
    }


def format_federation_stats(stats: dict) -> str:
    lines = [f"federation {stats['federation']}: periods {stats['periods']}", "members:"]
    for m in stats["members"]:
        imb = " / ".join(f"{v:.4g}" for v in m["system_imbalance_mw"])
        lines.append(
            f"  {m['member']}: {m['t_nodes']} T nodes, {m['d_nodes']} D nodes, {m['dso_areas']} DSO areas "
            f"({m['sub_areas']} sub-areas), {m['segments']} order segments, periods {m['periods']}, "
            f"imbalance {imb} MW  [{m['source']}]"
        )
    lines.append("interconnectors (ATC forward / backward per period, MW):")
    for ic in stats["interconnectors"]:
        fwd = " / ".join(f"{v:g}" for v in ic["atc_forward_mw"])
        bwd = " / ".join(f"{v:g}" for v in ic["atc_backward_mw"])
        lines.append(f"  {ic['interconnector']}: {ic['from']} → {ic['to']}  forward {fwd}  backward {bwd}")
    return "\n".join(lines)


def cmd_info(args) -> int:
    from ..model.stats import format_stats, instance_stats
    from .compare import is_federation_path

    if is_federation_path(args):
        from ..io.federation import read_federation
        from .inputs import instance_path

        fstats = federation_stats(read_federation(instance_path(args), edges_file=args.edges_file))
        print(json.dumps(fstats, indent=2) if args.json else format_federation_stats(fstats))
        return 0
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
