"""A child's menu in the integer repair (docs/model.md §6.3 item 8): exchanges its binaries deliver, at their
mixed-integer costs, and where known the configuration of binaries behind each and a subgradient of that
configuration's cost there.

A DSO's mixed-integer cost is the minimum over its configurations k (binaries fixed) of convex functions C_k of
the exchange.  An entry with a slope is a cut of its C_k (`C_k(x) >= C + gᵀ(x − X)` inside the interface box);
entries of one configuration together are a cut model of it, in which the parent may move the exchange
continuously.  An entry without a slope is a single exchange at its exact cost.  `add_menu_rows` writes the
choice of one option per child into a parent's mixed-integer program, one vectorised assembly per child.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ..formulations.program import Program

SAME_MW = 1e-6  # entries whose exchanges differ by at most this (per period) are one entry


@dataclass
class MenuEntry:
    point_mw: np.ndarray  # exchange, MW per period
    cost_eur: float  # the child's mixed-integer cost there (its own orders, slack and children's offers)
    slope_eur_mw: np.ndarray | None = None  # subgradient of its configuration's cost there, € per MW per period
    configuration: str | None = None  # opaque label of the binaries (equal labels, equal binaries)
    # exchanges its binaries deliver without slack, per period with the others held at point_mw (MW; None unknown)
    range_lo_mw: np.ndarray | None = None
    range_hi_mw: np.ndarray | None = None
    # the import end of that range where the relaxation burns fictitious losses (MW per period, <= range_lo_mw)
    range_burnt_lo_mw: np.ndarray | None = None

    @property
    def has_range(self) -> bool:
        return self.range_lo_mw is not None and self.range_hi_mw is not None

    @property
    def burns_import(self) -> bool:
        """Its burnt import end lies beyond its range's (by more than SAME_MW in some period)."""
        if self.range_burnt_lo_mw is None or self.range_lo_mw is None:
            return False
        return bool((self.range_burnt_lo_mw < self.range_lo_mw - SAME_MW).any())


def add_entry(menu: list[MenuEntry], entry: MenuEntry) -> None:
    """Add `entry` to `menu`: one entry per exchange (to SAME_MW) and configuration, the cheapest; a slope or a
    range found later for a known exchange is kept.  (Menu exchanges that differ by 1e-9 MW made HiGHS's MILP
    presolve return a wrong optimum, measured on a generated variant: 1 224.7 € where 1 202.8 € is feasible.)"""
    for k, old in enumerate(menu):
        if np.abs(old.point_mw - entry.point_mw).max() > SAME_MW or old.configuration != entry.configuration:
            continue
        keep, other = (entry, old) if entry.cost_eur < old.cost_eur else (old, entry)
        slope = keep.slope_eur_mw if keep.slope_eur_mw is not None else other.slope_eur_mw
        ranged = keep if keep.has_range else other
        menu[k] = MenuEntry(
            keep.point_mw,
            keep.cost_eur,
            slope,
            keep.configuration,
            ranged.range_lo_mw,
            ranged.range_hi_mw,
            ranged.range_burnt_lo_mw,
        )
        return
    menu.append(entry)


def _groups(menu: list[MenuEntry]) -> dict[str, list[MenuEntry]]:
    """The entries with a slope by configuration, for configurations of which some entry has a range."""
    groups: dict[str, list[MenuEntry]] = {}
    for e in menu:
        if e.slope_eur_mw is not None and e.configuration is not None:
            groups.setdefault(e.configuration, []).append(e)
    return {c: g for c, g in groups.items() if any(e.has_range for e in g)}


def _points(menu: list[MenuEntry], grouped: set[str]) -> list[MenuEntry]:
    """The single-exchange options: every entry outside a modelled configuration, one per exchange (the
    cheapest, whatever its configuration)."""
    out: list[MenuEntry] = []
    for e in menu:
        if not (e.configuration in grouped and e.slope_eur_mw is not None):
            add_entry(out, MenuEntry(e.point_mw, e.cost_eur))
    return out


def add_menu_rows(
    prog: Program,
    name: str,
    x_cols: np.ndarray,
    theta_col: int,
    menu: list[MenuEntry],
    lo: np.ndarray,
    hi: np.ndarray,
    burnt: bool = False,
) -> None:
    """The child whose exchange columns are `x_cols` (T) and cost column `theta_col` takes exactly one option of
    `menu`: a single exchange X_k at its cost (binary λ_k), or a configuration c (binary μ_c) anywhere in its
    slack-free box [lo_c, hi_c] (the hull of its entries' ranges, inside the parent's bounds [lo, hi], MW; with
    `burnt`, the import ends where the relaxation burns fictitious losses, where known) at a cost above each of
    its cuts:

        x = Σ_k λ_k X_k + Σ_c y_c,   μ_c·lo_c <= y_c <= μ_c·hi_c,   Σ λ + Σ μ = 1,
        θ >= Σ_k λ_k C_k + Σ_c η_c,  η_c >= μ_c (C_j − g_jᵀX_j) + g_jᵀ y_c   for every cut j of c.

    The θ column keeps every row it already has (the child's relaxed cuts, valid below every configuration)."""
    T = len(x_cols)
    by_label = _groups(menu)
    points, groups = _points(menu, set(by_label)), [by_label[c] for c in sorted(by_label)]
    K, G = len(points), len(groups)
    # each configuration's box: the hull of its entries' ranges (a range holds the other periods at its point)
    box_lo: np.ndarray = np.zeros((G, T))
    box_hi: np.ndarray = np.zeros((G, T))
    for c, group in enumerate(groups):
        ranged = [e for e in group if e.range_lo_mw is not None and e.range_hi_mw is not None]
        ends = [e.range_burnt_lo_mw if burnt and e.range_burnt_lo_mw is not None else e.range_lo_mw for e in ranged]
        box_lo[c] = np.min(np.array(ends), axis=0)
        box_hi[c] = np.max(np.array([e.range_hi_mw for e in ranged]), axis=0)
    box_lo = np.clip(box_lo, lo, hi)
    box_hi = np.clip(box_hi, box_lo, hi)
    lam = prog.add_variables(f"{name}_point", K, 0.0, 1.0, 0.0, integer=True).index
    mu = prog.add_variables(f"{name}_configuration", G, 0.0, 1.0, 0.0, integer=True).index
    width = np.maximum(np.abs(lo), np.abs(hi))
    y = prog.add_variables(f"{name}_configuration_mw", G * T, -np.tile(width, G), np.tile(width, G)).index.reshape(G, T)
    eta = prog.add_variables(f"{name}_configuration_eur", G, -np.inf, np.inf).index
    n = prog.n
    X = np.array([e.point_mw for e in points], float).reshape(K, T)
    C = np.array([e.cost_eur for e in points], float)

    def rows(r, c, v, m):
        return sp.csr_matrix((np.asarray(v, float), (np.asarray(r), np.asarray(c))), shape=(m, n))

    # x − Σ_k X_k λ_k − Σ_c y_c = 0, per period
    t_idx = np.arange(T)
    prog.add_rows(
        f"{name}_exchange",
        rows(
            np.concatenate([t_idx, np.repeat(t_idx, K), np.tile(t_idx, G)]),
            np.concatenate([x_cols, np.tile(lam, T), y.ravel()]),
            np.concatenate([np.ones(T), -X.T.ravel(), -np.ones(G * T)]),
            T,
        ),
        0.0,
        0.0,
    )
    choice = np.concatenate([lam, mu])
    prog.add_rows(f"{name}_one", rows(np.zeros(K + G, int), choice, np.ones(K + G), 1), 1.0, 1.0)
    prog.add_rows(
        f"{name}_cost",
        rows(np.zeros(1 + K + G, int), np.r_[theta_col, lam, eta], np.r_[1.0, -C, -np.ones(G)], 1),
        0.0,
        np.inf,
    )
    if not G:
        return
    # μ_c·lo <= y_c <= μ_c·hi
    g_idx = np.repeat(np.arange(G), T)
    box_r = np.arange(G * T)
    ycol = y.ravel()
    prog.add_rows(
        f"{name}_box_hi",
        rows(np.r_[box_r, box_r], np.r_[ycol, mu[g_idx]], np.r_[np.ones(G * T), -box_hi.ravel()], G * T),
        -np.inf,
        0.0,
    )
    prog.add_rows(
        f"{name}_box_lo",
        rows(np.r_[box_r, box_r], np.r_[ycol, mu[g_idx]], np.r_[np.ones(G * T), -box_lo.ravel()], G * T),
        0.0,
        np.inf,
    )
    # cuts, each row scaled by 1/max(1, |g|∞) as the exchange's cut rows are (slopes near the slack penalty)
    cut_group = np.concatenate([np.full(len(gr), c) for c, gr in enumerate(groups)])
    cuts = [e for gr in groups for e in gr]
    g = np.array([e.slope_eur_mw for e in cuts], float).reshape(len(cuts), T)
    Xc = np.array([e.point_mw for e in cuts], float).reshape(len(cuts), T)
    intercept = np.array([e.cost_eur for e in cuts], float) - np.einsum("jt,jt->j", g, Xc)
    scale = 1.0 / np.maximum(1.0, np.abs(g).max(axis=1))
    J = len(cuts)
    r = np.arange(J)
    prog.add_rows(
        f"{name}_cuts",
        rows(
            np.concatenate([r, r, np.repeat(r, T)]),
            np.concatenate([eta[cut_group], mu[cut_group], y[cut_group].ravel()]),
            np.concatenate([scale, -intercept * scale, (-g * scale[:, None]).ravel()]),
            J,
        ),
        0.0,
        np.inf,
    )


# € per MW of exchange moved away from the current point in the menu choice: far below any price that makes a
# move worth checking (the repair's gap tolerance is ~1e-5 of the total), far above HiGHS's dual tolerance (1e-7)
ANCHOR_TIE_BREAK = 1e-5


def add_anchor_rows(prog: Program, x_cols: np.ndarray, anchor: np.ndarray, cost_eur_mw: float) -> None:
    """Make every move of the columns `x_cols` away from `anchor` (MW) cost `cost_eur_mw` € per MW:
    x − u⁺ + u⁻ = anchor, u± >= 0 at that cost.  A tie-break, not a model term: where several choices cost the
    same, the one that leaves the children where they are wins."""
    k = len(x_cols)
    up = prog.add_variables("anchor_up_mw", k, 0.0, np.inf, cost_eur_mw).index
    down = prog.add_variables("anchor_down_mw", k, 0.0, np.inf, cost_eur_mw).index
    r = np.arange(k)
    A = sp.csr_matrix(
        (np.r_[np.ones(k), -np.ones(k), np.ones(k)], (np.r_[r, r, r], np.r_[x_cols, up, down])), shape=(k, prog.n)
    )
    prog.add_rows("anchor", A, anchor, anchor)
