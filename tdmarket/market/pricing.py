"""Defined prices of a clearing program (docs/model.md §8, "Defined prices").

A nodal price is the dual of a balance row.  Where that dual is not unique — no flexible resource can move the
node's balance (a node behind a held exchange, a DSO area whose orders all sit at a bound), so that any value
between the nearest order prices (or ±κ when nothing else bounds it) is optimal — a solver returns an arbitrary
point of the interval: a simplex method an end (often ±κ), an interior-point method somewhere inside.  Here every
price row gets the interval of its optimal duals (`tdmarket.market.dual_face`), and the published prices are

* the solver's duals where the interval is narrower than PRICE_TOL_EUR_MWH (the price is **unique**);
* otherwise (**degenerate**) the optimal dual vector nearest (least total absolute deviation) to the *reference*
  prices of the degenerate rows: the price of the market the node is coupled to.  For a D node that is the
  interface price of its area (the host's price, or the price the parent sent); for a T node the period's
  system price, the median of the unique T prices of the period; for a reactive price 0 (reactive power is not
  traded across the interface).  Every reference is clipped to the range of the order prices of the program's
  instance, so a price set by slack elsewhere (±κ) is never carried into a pocket that uses none.  In a
  one-parameter pocket the published price is the end of the interval nearest to the reference, or the
  reference itself when it lies inside.

The published vector is one optimal dual solution, so settlement, revenue adequacy and the order checks stay
consistent with the dispatch; ±κ is published only where a constraint forces it (slack used at the node or a
pocket that cannot be balanced otherwise).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from ..formulations.clearing import ClearingProblem
from ..solvers.result import Solution
from .dual_face import DualFace

PRICE_TOL_EUR_MWH = 1e-2  # € per MWh (Mvarh): an interval wider than a cent per MWh makes a price degenerate
BUS_COLUMNS = (
    "price_p_lo_eur_mwh",
    "price_p_hi_eur_mwh",
    "price_p_solver_eur_mwh",
    "price_p_degenerate",
    "price_q_lo_eur_mvarh",
    "price_q_hi_eur_mvarh",
    "price_q_solver_eur_mvarh",
    "price_q_degenerate",
)


@dataclass(frozen=True)
class PriceIntervals:
    """Per (bus, period), dense (n_bus, T), NaN where the program has no balance row: the interval of optimal
    P prices [p_lo, p_hi] (€/MWh) and Q prices [q_lo, q_hi] (€/Mvarh), the solver's own duals, the published
    prices, and timing (s) of the interval LPs."""

    p_lo: np.ndarray
    p_hi: np.ndarray
    p_solver: np.ndarray
    p_published: np.ndarray
    q_lo: np.ndarray
    q_hi: np.ndarray
    q_solver: np.ndarray
    q_published: np.ndarray
    time_s: float

    @property
    def p_degenerate(self) -> np.ndarray:
        return np.nan_to_num(self.p_hi - self.p_lo) > PRICE_TOL_EUR_MWH

    @property
    def q_degenerate(self) -> np.ndarray:
        return np.nan_to_num(self.q_hi - self.q_lo) > PRICE_TOL_EUR_MWH


def _price_rows(cp: ClearingProblem) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Program rows of the P and Q balances and the (bus, period) of each."""
    bal, T, prog = cp.balance, cp.inst.n_periods, cp.prog
    p_bus = np.repeat(bal.p_bus, T)
    q_bus = np.repeat(bal.q_bus, T)
    p_t = np.tile(np.arange(T), len(bal.p_bus))
    q_t = np.tile(np.arange(T), len(bal.q_bus))
    p_rows = prog.rows["balance_p"].start + bal.p_row[p_bus, p_t]
    q_rows = prog.rows["balance_q"].start + bal.q_row[q_bus, q_t] if len(bal.q_bus) else np.zeros(0, np.int64)
    return p_rows, q_rows, np.column_stack([p_bus, p_t]), np.column_stack([q_bus, q_t])


def _dense(n: int, T: int, where: np.ndarray, values: np.ndarray) -> np.ndarray:
    out = np.full((n, T), np.nan)
    out[where[:, 0], where[:, 1]] = values
    return out


def reference_prices(
    cp: ClearingProblem, p_lo: np.ndarray, p_hi: np.ndarray, p_solver: np.ndarray, interface_price: np.ndarray | None
) -> np.ndarray:
    """(n_bus, T) reference P prices (€/MWh) of the rule in the module docstring.

    `interface_price` (A, T), NaN where unknown, is the price of the market each area is coupled to (the price
    its parent sent); where it is NaN and the area's host is modelled here, the host's reference clipped to its
    interval is used."""
    inst = cp.inst
    b, ar = inst.buses, inst.areas
    n, T = len(b), inst.n_periods
    unique = np.isfinite(p_solver) & ~(np.nan_to_num(p_hi - p_lo) > PRICE_TOL_EUR_MWH)
    is_t = ~b.is_dist
    ref = np.full((n, T), np.nan)
    # T: the period's system price = median of the unique T prices (all unique prices, then 0, as fall-backs)
    for pool in (unique & is_t[:, None], unique):
        med = np.array([np.median(p_solver[pool[:, t], t]) if pool[:, t].any() else np.nan for t in range(T)])
        fill = is_t[:, None] & np.isnan(ref) & np.isfinite(med)[None, :]
        ref = np.where(fill, med[None, :], ref)
    ref = np.where(is_t[:, None] & np.isnan(ref), 0.0, ref)
    # D: the interface price of the bus's area (own areas only; a sub-area's bus uses its own interface)
    pi = np.full((inst.n_areas, T), np.nan) if interface_price is None else np.asarray(interface_price, float)
    host = ar.host_bus
    has_host = host >= 0
    area_ref = pi.copy()
    # an area hosted by a D bus (a sub-DSO's root) takes that bus's reference, which is its own area's: areas nest,
    # so the references go down one level per pass (the solver's dual at a degenerate host is an arbitrary point
    # of its interval, not a price of the market the area is coupled to)
    for _ in range(inst.n_areas):
        node_ref = np.where(b.is_dist[:, None], area_ref[b.area], ref)
        host_ref = np.full((inst.n_areas, T), np.nan)
        host_ref[has_host] = np.clip(node_ref[host[has_host]], p_lo[host[has_host]], p_hi[host[has_host]])
        host_ref[has_host] = np.where(np.isnan(host_ref[has_host]), p_solver[host[has_host]], host_ref[has_host])
        nxt = np.where(np.isfinite(pi), pi, host_ref)
        if np.array_equal(nxt, area_ref, equal_nan=True):
            break
        area_ref = nxt
    ref = np.where(b.is_dist[:, None], area_ref[b.area], ref)
    # no coupled price known (e.g. a D area without a modelled parent): the area's median unique price
    missing = np.isnan(ref) & np.isfinite(p_solver)
    if missing.any():
        ref = np.where(missing, np.nanmedian(np.where(unique, p_solver, np.nan)) if unique.any() else 0.0, ref)
    prices = inst.orders.segments.price
    if len(prices):
        ref = np.clip(ref, prices.min(), prices.max())
    return ref


def publish_prices(
    cp: ClearingProblem,
    sol: Solution,
    *,
    interface_price: np.ndarray | None = None,
    carry_rows: np.ndarray | None = None,
) -> tuple[Solution, PriceIntervals]:
    """(solution with the published row duals, intervals) of a solved clearing program (module docstring).

    `interface_price` (A, T) €/MWh: the price each area's parent published, the reference of its D nodes (NaN or
    None: the host's own price when modelled here).  `carry_rows`: other rows whose duals must belong to the same
    optimal dual as the published prices (a DSO's exchange-fixing rows, whose dual is its marginal cost ρ); they
    take the value of the published dual vector whenever a price was replaced."""
    t0 = time.perf_counter()
    inst = cp.inst
    n, T = len(inst.buses), inst.n_periods
    scale = 1.0 / cp.opts.period_hours
    p_rows, q_rows, p_at, q_at = _price_rows(cp)
    rows = np.concatenate([p_rows, q_rows])
    face = DualFace(cp.prog, sol)
    # distinct positive weights so that no pocket's direction is orthogonal to the objective by accident
    weights = 1.0 + 0.1 * np.modf(np.arange(len(rows)) * 0.6180339887)[0]
    rng = face.ranges(rows, weights)
    k = len(p_rows)
    y_star = np.asarray(sol.row_dual, float)
    p_lo = _dense(n, T, p_at, rng.lo[:k] * scale)
    p_hi = _dense(n, T, p_at, rng.hi[:k] * scale)
    p_solver = _dense(n, T, p_at, y_star[p_rows] * scale)
    q_lo = _dense(n, T, q_at, rng.lo[k:] * scale)
    q_hi = _dense(n, T, q_at, rng.hi[k:] * scale)
    q_solver = _dense(n, T, q_at, y_star[q_rows] * scale)
    degenerate = (rng.hi - rng.lo) * scale > PRICE_TOL_EUR_MWH
    published = y_star.copy()
    if degenerate.any():
        ref_p = reference_prices(cp, p_lo, p_hi, p_solver, interface_price)
        reference = np.concatenate([ref_p[p_at[:, 0], p_at[:, 1]], np.zeros(len(q_rows))]) / scale
        deg_rows = rows[degenerate]
        nearest = face.nearest(deg_rows, reference[degenerate])
        # the nearest point lies in the face; clip against round-off at the interval ends
        published[deg_rows] = np.clip(nearest[deg_rows], rng.lo[degenerate], rng.hi[degenerate])
        if carry_rows is not None and len(carry_rows):
            published[carry_rows] = nearest[carry_rows]
    intervals = PriceIntervals(
        p_lo=p_lo,
        p_hi=p_hi,
        p_solver=p_solver,
        p_published=_dense(n, T, p_at, published[p_rows] * scale),
        q_lo=q_lo,
        q_hi=q_hi,
        q_solver=q_solver,
        q_published=_dense(n, T, q_at, published[q_rows] * scale),
        time_s=time.perf_counter() - t0,
    )
    return replace(sol, row_dual=published), intervals


def annotate_buses(inst, buses: pd.DataFrame, iv: PriceIntervals | None) -> pd.DataFrame:
    """The `buses` table with the interval columns (BUS_COLUMNS) of its rows; without intervals the columns are
    the published price itself and not degenerate (nothing was checked: see `price_checked`)."""
    out = buses.copy()
    if not len(out):
        for c in BUS_COLUMNS:
            out[c] = pd.Series(dtype=bool if c.endswith("degenerate") else float)
        return out
    i = inst.bus_index(out.node.to_numpy())
    t = np.searchsorted(inst.periods, out.period.to_numpy())
    p = out.price_p_eur_mwh.to_numpy(float)
    q = out.price_q_eur_mvarh.to_numpy(float)
    if iv is None:
        cols = dict(zip(BUS_COLUMNS, (p, p, p, False, q, q, q, False)))
    else:
        cols = {
            "price_p_lo_eur_mwh": iv.p_lo[i, t],
            "price_p_hi_eur_mwh": iv.p_hi[i, t],
            "price_p_solver_eur_mwh": iv.p_solver[i, t],
            "price_p_degenerate": iv.p_degenerate[i, t],
            "price_q_lo_eur_mvarh": iv.q_lo[i, t],
            "price_q_hi_eur_mvarh": iv.q_hi[i, t],
            "price_q_solver_eur_mvarh": iv.q_solver[i, t],
            "price_q_degenerate": iv.q_degenerate[i, t],
        }
    for c in BUS_COLUMNS:
        out[c] = cols[c]
    out["price_checked"] = iv is not None
    return out


def price_summary(buses: pd.DataFrame, slack_penalty: float) -> dict:
    """Counts of an annotated `buses` table: degenerate P and Q prices, the widest intervals, prices at ±κ where
    the operator used no slack in that period (solver's and published: the published count must be 0), at ±κ
    with slack, and published at ±κ although degenerate (must be 0)."""
    if not len(buses) or "price_p_degenerate" not in buses:
        return {"checked": False}
    p = buses.price_p_eur_mwh.to_numpy(float)
    solver = buses.price_p_solver_eur_mwh.to_numpy(float)
    # "no slack used": none at any node of the bus's operator area in that period
    slack = buses.slack_p_mw.abs().to_numpy() + np.nan_to_num(buses.slack_q_mvar.abs().to_numpy())
    area_slack = pd.Series(slack).groupby([buses.area.to_numpy(), buses.period.to_numpy()]).transform("sum")
    no_slack = area_slack.to_numpy() <= 1e-6
    kappa = lambda v: np.abs(np.abs(v) - slack_penalty) <= 1e-6 * slack_penalty  # noqa: E731
    width_p = np.nan_to_num(buses.price_p_hi_eur_mwh - buses.price_p_lo_eur_mwh)
    width_q = np.nan_to_num(buses.price_q_hi_eur_mvarh - buses.price_q_lo_eur_mvarh)
    return {
        "checked": bool(buses.price_checked.all()),
        "bus_periods": int(len(buses)),
        "degenerate_p": int(buses.price_p_degenerate.sum()),
        "degenerate_q": int(buses.price_q_degenerate.sum()),
        "degenerate_p_t": int((buses.price_p_degenerate & (buses.kind == "T")).sum()),
        "degenerate_p_d": int((buses.price_p_degenerate & (buses.kind == "D")).sum()),
        "max_width_p_eur_mwh": float(width_p.max(initial=0.0)),
        "max_width_q_eur_mvarh": float(width_q.max(initial=0.0)),
        "solver_kappa_without_slack": int((kappa(solver) & no_slack).sum()),
        "published_kappa_without_slack": int((kappa(p) & no_slack).sum()),
        "published_kappa_with_slack": int((kappa(p) & ~no_slack).sum()),
        "published_kappa_degenerate": int((kappa(p) & buses.price_p_degenerate.to_numpy(bool)).sum()),
        "max_abs_change_eur_mwh": float(np.nan_to_num(np.abs(p - solver)).max(initial=0.0)),
    }
