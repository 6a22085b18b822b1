"""The human-readable summary `tdmarket clear` prints: one aligned line per figure present in the summary."""

from __future__ import annotations


def _print_cost_and_solver(s: dict) -> None:
    """Scheme, instance, cost, slack, and the solver figures each scheme may report."""
    c = s["cost"]
    print(f"scheme            {s['scheme']}")
    print(f"instance          {s['instance']}  periods {s['periods']}")
    print(
        f"total cost        {c['total_cost_eur']:.6f} EUR  (market {c['market_cost_eur']:.6f}, "
        f"slack {c['slack_cost_eur']:.6f})"
    )
    print(f"slack             {s['slack']['p_mw']:.6g} MW, {s['slack']['q_mvar']:.6g} Mvar")
    if s.get("mip", {}).get("gap") is not None:
        print(
            f"mip               {s['mip']['binaries']} binaries, bound {s['mip']['lower_bound']:.6f}, "
            f"gap {100 * s['mip']['gap']:.4f} %"
        )
    if "soc_gap" in s:
        print(f"soc gap           max {s['soc_gap']['max']:.3g}, inexact lines {s['soc_gap']['inexact_lines']}")
    if "solver" in s:
        print(f"solver            {s['solver']['name']} {s['solver']['status']} in {s['solver']['time_s']:.2f} s")


def _print_certificate(ce: dict) -> None:
    """Rounds and certified gap of the cut exchange."""
    lb = ce["lower_bound_eur"]
    gap = ce["dispatched_gap"]
    print(f"cut exchange      {ce['rounds']} rounds, stopped by {ce['stopped_by']} ({ce['reason']})")
    print(
        f"certificate       lower bound {lb if lb is None else f'{lb:.6f}'} EUR, certified gap of the "
        f"dispatched point {'n/a' if gap is None else f'{gap:.3g}'} (target {ce['dispatched_target_gap']:g}; exchange gap target {ce['target_gap']:g})"
    )


def _print_curve_scheme(s: dict) -> None:
    """Curves, certificate, messages and timings of the schemes that exchange flexibility curves."""
    cv = s["curves"]
    print(
        f"curves            {cv['evaluations']} evaluations, sum eps {cv['sum_eps_eur']:.4g} EUR, "
        f"error at solution {s['curve_error_at_solution_eur']:.4g} EUR"
    )
    if "certificate" in s:
        _print_certificate(s["certificate"])
    com = s["communication"]
    print(f"messages          {com['messages']} ({com['bytes']} bytes)")
    tm = s["timings_s"]
    print(f"time              wall {tm['wall']:.2f} s, critical path {tm['critical_path']:.2f} s")


def print_summary(s: dict) -> None:
    """Print the summary of a cleared instance (`ClearingResult.summary`)."""
    _print_cost_and_solver(s)
    if "curves" in s:
        _print_curve_scheme(s)
    if "gap_to_centralized" in s:
        g = s["gap_to_centralized"]
        print(
            f"gap to central.   {100 * g['gap']:.5f} %  (centralized {g['centralized_cost_eur']:.6f} EUR in "
            f"{g['centralized_wall_s']:.2f} s; this scheme {s['timings_s']['wall']:.2f} s)"
        )
    for w in s.get("warnings", []):
        print(f"warning           {w}")
