"""Progress lines on stderr while `tdmarket clear` runs (hierarchical stages, cut rounds, MIP rounds)."""

from __future__ import annotations

import sys


def _show_iterate(rec: dict) -> None:
    """One line per round of the hierarchical cut exchange."""
    lb = rec["lower_bound"]
    print(
        f"  [iterate] round {rec['iteration']} ({rec['master']}): LB {lb:.6f}  UB "
        f"{rec['upper_bound']:.6f}  gap {rec['gap_eur']:.4g} EUR",
        file=sys.stderr,
        flush=True,
    )


def _show_stage_bar(rec: dict) -> None:
    """A bar over the DSOs of a hierarchical stage, redrawn in place until the stage is done."""
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


def _show_mip_round(rec: dict) -> None:
    """One line per round of the centralized MIP."""
    lb, ub, gap = rec.get("lower_bound"), rec.get("upper_bound"), rec.get("gap")
    print(
        f"  [mip] round {rec['round']}: bound {lb:.6f}  incumbent {ub:.6f}  gap {100 * gap:.4f} %  "
        f"({rec['elapsed_s']:.1f} s)",
        file=sys.stderr,
        flush=True,
    )


def progress_printer(quiet: bool):
    """The progress callback for `tdmarket.clear`, or None with --quiet."""
    if quiet:
        return None

    def show(rec: dict) -> None:
        if "stage" in rec:  # hierarchical progress: a bar over DSOs per stage, or a cut-round line
            if rec["stage"] == "iterate":
                _show_iterate(rec)
            else:
                _show_stage_bar(rec)
            return
        _show_mip_round(rec)

    return show
