"""The argument parser of `tdmarket`: one sub-parser per command."""

from __future__ import annotations

import argparse

from .clear import cmd_clear
from .compare import cmd_compare
from .generate import add_generate_parser
from .info import cmd_info
from .split import add_split_parser
from .variant import add_variant_parser

# Every --help ends with where the documentation is (in the repository, and in the source distribution).
DOCS_EPILOG = (
    "Documentation: docs/format.md (the input files: every file, column, unit and check), docs/model.md (the "
    "model: networks, orders, schemes, prices, settlement) and docs/README.md (code map), in the tdmarket "
    "repository."
)


def add_instance_args(sp, stress: bool = False) -> None:
    """The instance arguments every command takes (PATH or --example, --edges-file; --d-rating-scale if stress)."""
    sp.add_argument("path", nargs="?", help="instance folder in SmartNet CSV format (docs/format.md)")
    sp.add_argument("--example", action="store_true", help="use the built-in example instance")
    sp.add_argument("--edges-file", default="Edges.csv", help="edge file name (e.g. Edges_hard.csv)")
    sp.add_argument(
        "--max-file-mb",
        type=float,
        default=None,
        metavar="MB",
        help="refuse input files larger than this many MiB before reading them (default 16)",
    )
    if stress:
        sp.add_argument(
            "--d-rating-scale",
            type=float,
            default=None,
            metavar="F",
            help="stressed variant: multiply every distribution line rating by F (e.g. 0.4)",
        )


def add_info_parser(sub) -> None:
    info = sub.add_parser(
        "info",
        help="print instance statistics (docs/model.md §10)",
        description="Read and check an instance and print its statistics (docs/model.md §10); an input problem "
        "is one line naming file, editor row and column (docs/format.md §4), exit code 2.",
        epilog=DOCS_EPILOG,
    )
    add_instance_args(info)
    info.add_argument("--json", action="store_true", help="machine-readable output")
    info.add_argument(
        "--compare",
        nargs="+",
        default=None,
        metavar="PATH",
        help="also print the order-book calibration figures (docs/generate.md §3) of this instance, of each PATH "
        "and the generator's targets, side by side",
    )
    info.set_defaults(func=cmd_info)


def _add_hierarchical_args(clear) -> None:
    """The options of the hierarchical (curve-exchanging) schemes, as an argument group of `clear`."""

    h = clear.add_argument_group("hierarchical scheme")
    _add_executor_args(h)
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
        default=1e-5,
        help="stop the cut exchange at this certified relative gap (UB - LB) / max(1, |UB|) (default 1e-5)",
    )
    h.add_argument("--max-rounds", type=int, default=50, help="cap on relaxed cut-exchange rounds (default 50)")
    h.add_argument(
        "--skip-bracketed",
        type=float,
        default=0.05,
        help="do not ask DSOs whose cost the TSO already brackets (cuts and inner bound) within this share of the "
        "current gap, together (default 0.05; 0 asks every DSO every round; docs/model.md §6.3)",
    )
    h.add_argument(
        "--repair-rounds",
        type=int,
        default=12,
        help="integer repair after the dispatch: DSOs whose binaries could not deliver their exchange propose the "
        "exchange they prefer at the interface prices; kept if the total cost falls (default 12 rounds; 0 = none; "
        "docs/model.md §6.3)",
    )
    _add_dispatch_model_arg(h)
    h.add_argument("--compare-centralized", action="store_true", help="also clear centrally and report the cost gap")


def _add_dispatch_model_arg(group) -> None:
    from ..formulations.options import DISPATCH_MODELS

    group.add_argument(
        "--dispatch-model",
        default="soc",
        choices=DISPATCH_MODELS,
        help="the DSOs' dispatch model: soc (default, the clearing's model) or ac: each DSO then re-dispatches its "
        "area with the exact AC model (Ipopt, local optimum) where its dispatch is not AC-deliverable "
        "(needs tdmarket[ac]; docs/model.md §5(h))",
    )


def _add_executor_args(group) -> None:
    """Where the hierarchical scheme's DSO work runs (`clear` and `compare`)."""
    from ..operators.executors import EXECUTORS

    group.add_argument(
        "--executor",
        default="process",
        choices=EXECUTORS,
        help="where DSO work of the hierarchical scheme runs: process pool (default, all cores), inline, or a Ray "
        "cluster",
    )
    group.add_argument("--workers", type=int, default=None, help="parallel workers (default: all cores)")


def _add_solver_args(sp, time_limit_help: str) -> None:
    """The model and solver options that `clear` and `compare` share."""
    from ..formulations.options import DIST_MODELS, REACTIVE_POLICIES

    sp.add_argument("--mip-gap", type=float, default=1e-3, help="relative MIP gap target (default 1e-3)")
    sp.add_argument("--time-limit", type=float, default=None, help=time_limit_help)
    sp.add_argument("--threads", type=int, default=1, help="solver threads (default 1, deterministic)")
    sp.add_argument("--dist-model", default="socp", choices=DIST_MODELS, help="distribution network model")
    sp.add_argument(
        "--reactive-policy",
        default="bounded",
        choices=REACTIVE_POLICIES,
        help="reactive power of D orders without PQ limits (docs/model.md §4.3)",
    )
    sp.add_argument("--slack-penalty", type=float, default=1e4, help="balance slack penalty, EUR/MWh (default 1e4)")


def add_clear_parser(sub) -> None:
    from ..schemes import registry

    scheme_help = "; ".join(f"{n}: {d}" for n, d in registry.describe())
    clear = sub.add_parser(
        "clear",
        help="clear the balancing market of an instance",
        description="Clear the balancing market of an instance with one coordination scheme (docs/model.md "
        "§5-§7) and print the summary; --out writes the results folder (README, 'Results folder').",
        epilog=DOCS_EPILOG,
    )
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
    clear.add_argument(
        "--force",
        action="store_true",
        help="let --out replace an existing non-empty folder that tdmarket did not write (never the working "
        "folder, its parents or a folder holding the input)",
    )
    _add_solver_args(
        clear,
        "time limit in seconds: of the MIP (centralized schemes), of the whole scheme for hierarchical (its curves "
        "included; the cut exchange then stops with its best point and the DSOs dispatch it)",
    )
    clear.add_argument(
        "--ac-recovery",
        action="store_true",
        help="check the distribution dispatch with an AC power flow and re-dispatch every area that is not "
        "AC-deliverable with an exact AC OPF (Ipopt; needs tdmarket[ac]; docs/model.md §5(h))",
    )
    _add_hierarchical_args(clear)
    clear.add_argument("--json", action="store_true", help="print the summary as JSON")
    clear.add_argument("--quiet", action="store_true", help="no progress output (warnings still shown)")
    clear.set_defaults(func=cmd_clear)


def add_compare_parser(sub) -> None:
    from ..schemes import registry

    cmp = sub.add_parser(
        "compare",
        help="clear with every coordination scheme and compare (report.html)",
        description="Clear with every coordination scheme (docs/model.md §7), check each dispatch with an AC "
        "power flow, print one row per scheme and write a self-contained HTML report: cost gap to common, AC "
        "violations, residual supply curves, interface exchanges, prices, settlement, cut-exchange convergence "
        "and a single-line diagram of one feeder.",
        epilog=DOCS_EPILOG,
    )
    add_instance_args(cmp, stress=True)
    cmp.add_argument(
        "--schemes",
        default=None,
        help="comma-separated scheme ids (default: " + ",".join(registry.comparison_ids()) + ")",
    )
    cmp.add_argument(
        "--out",
        default=None,
        metavar="DIR",
        help="save each scheme's results in DIR/<scheme>/ as soon as it is done; re-run with the same DIR, "
        "input files and options to resume (saved schemes are loaded, not cleared again)",
    )
    cmp.add_argument(
        "--report",
        default=None,
        help="HTML report path (default DIR/report.html with --out, else report.html)",
    )
    cmp.add_argument("--relax", action="store_true", help="continuous relaxation of the binaries")
    cmp.add_argument("--no-ac", action="store_true", help="skip the AC power-flow check")
    cmp.add_argument(
        "--ac-recovery",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="re-dispatch every area that is not AC-deliverable with an exact AC OPF and report violations "
        "before and after and the recovery cost (default on; skipped with a note when casadi is missing)",
    )
    _add_solver_args(cmp, "time limit in seconds per scheme (as for clear: the MIP, or the whole hierarchical scheme)")
    _add_executor_args(cmp)
    _add_dispatch_model_arg(cmp)
    cmp.add_argument("--json", action="store_true", help="print the comparison as JSON")
    cmp.add_argument("--quiet", action="store_true", help="no progress output (warnings still shown)")
    cmp.set_defaults(func=cmd_compare)


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__
    from . import __doc__ as cli_doc

    p = argparse.ArgumentParser(prog="tdmarket", description=cli_doc.splitlines()[0], epilog=DOCS_EPILOG)
    p.add_argument("--version", action="version", version=f"tdmarket {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    add_info_parser(sub)
    add_clear_parser(sub)
    add_compare_parser(sub)
    add_variant_parser(sub)
    add_generate_parser(sub)
    add_split_parser(sub)
    return p
