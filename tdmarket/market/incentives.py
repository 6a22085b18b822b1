"""Incentives of a cleared dispatch (docs/model.md §8): lost opportunity costs and settlement, attached to a result.

`attach_incentives` is the one entry point the schemes and `tdmarket.clear` use after extracting their tables.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..formulations.options import ModelOptions
from ..model.instance import Instance
from .opportunity import LOC_TOL_EUR, lost_opportunity_costs, uplift
from .settlement import settle
from .verification import cause_totals, interface_payments, uplift_by_cause, verify_orders


def incentive_summary(loc_df: pd.DataFrame, tol: float = LOC_TOL_EUR) -> dict:
    """Headline numbers: uplift, participants with LOC > tol, the largest LOC and the solver gap."""
    loc = loc_df["loc_eur"].to_numpy() if len(loc_df) else np.zeros(0)
    by_kind = loc_df.groupby("kind")["loc_eur"].sum() if len(loc_df) else pd.Series(dtype=float)
    return {
        "uplift_eur": uplift(loc_df),
        "participants": int(len(loc)),
        "participants_with_loc": int((loc > tol).sum()),
        "max_loc_eur": float(loc.max(initial=0.0)),
        "uplift_t_eur": float(by_kind.get("T", 0.0)),
        "uplift_d_eur": float(by_kind.get("D", 0.0)),
        "min_raw_loc_eur": float(loc_df.attrs.get("min_raw_loc_eur", 0.0)),
        "best_response_abs_gap_eur": loc_df.attrs.get("abs_gap_eur"),
        "best_response_solver": loc_df.attrs.get("solver"),
    }


def attach_incentives(
    inst: Instance,
    tables: dict[str, pd.DataFrame],
    summary: dict,
    opts: ModelOptions,
    scheme: str,
    *,
    settles_at_interface: bool,
) -> None:
    """Add LOC, settlement and verification tables (`participants`, `settlement_actors`, `settlement_operators`,
    `order_checks`, `uplift_causes`) and the summary keys `incentives` (with `uplift_by_cause_eur`),
    `settlement` (with `interface_payments`) and `verification` in place.

    `scheme` only labels the settlement summary; `settles_at_interface` says whether the scheme pays the interface
    exchange at the interface price (see `tdmarket.market.settlement`); a scheme that does not holds its
    exchanges, which is what the uplift cause `held_exchange` refers to (`tdmarket.market.verification`)."""
    loc = lost_opportunity_costs(inst, tables, opts)
    st = settle(inst, tables, opts, scheme, settles_at_interface=settles_at_interface, loc=loc)
    tables["participants"] = loc
    tables["settlement_actors"] = st["actors"]
    tables["settlement_operators"] = st["operators"]
    summary["incentives"] = incentive_summary(loc)
    summary["settlement"] = st["summary"]
    checks = verify_orders(inst, tables, loc)
    causes = uplift_by_cause(inst, tables, loc, checks.orders, held_exchange=not settles_at_interface)
    tables["order_checks"] = checks.orders
    tables["uplift_causes"] = causes
    summary["verification"] = checks.summary
    summary["incentives"]["uplift_by_cause_eur"] = cause_totals(causes)
    summary["settlement"]["interface_payments"] = interface_payments(st["operators"])
