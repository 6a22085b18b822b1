"""`tdmarket split`: an instance as an operator layout, one folder per operator (docs/layout.md)."""

from __future__ import annotations

import time


def cmd_split(args) -> int:
    from ..io import read
    from ..io.layout import write_layout

    start = time.perf_counter()
    inst = read(args.instance, edges_file=args.edges_file)
    write_layout(inst, args.out, force=args.force)
    dsos = inst.n_areas - 1
    print(
        f"tdmarket: split {inst.name} into {args.out} in {time.perf_counter() - start:.1f} s: the TSO and {dsos} "
        f"DSO folder{'s' if dsos != 1 else ''}, index {args.out}/operators.csv"
    )
    return 0


def add_split_parser(sub) -> None:
    sp = sub.add_parser(
        "split",
        help="write an instance as an operator layout: one folder per operator and an index",
        description="Write INSTANCE (a SmartNet folder or an operator layout) as an operator layout: OUT/TSO/ "
        "holds the TSO's grid and orders, OUT/<area>/ each DSO area's, and OUT/operators.csv says who is whose "
        "parent and which interface joins them. Every command reads OUT; the hierarchical scheme lets each "
        "operator read only its own folder (docs/layout.md).",
        epilog="Documentation: docs/layout.md (the layout), docs/format.md (the files of each folder) and "
        "docs/model.md (the model, §6 for the operators and their messages).",
    )
    sp.add_argument("instance", metavar="INSTANCE", help="instance folder (SmartNet CSV, docs/format.md)")
    sp.add_argument("out", metavar="OUT", help="output folder (new, empty, or an operator layout)")
    sp.add_argument("--edges-file", default="Edges.csv", help="edge file name of INSTANCE (default Edges.csv)")
    sp.add_argument("--force", action="store_true", help="replace a non-empty OUT that is not an operator layout")
    sp.set_defaults(func=cmd_split)
