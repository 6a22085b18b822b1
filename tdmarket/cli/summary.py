"""The human-readable summary `tdmarket clear` prints: one aligned line per figure present in the summary."""

from __future__ import annotations

from ..reporting.numbers import fmt, fmt_eur, fmt_percent, relative_gap


def _print_cost_and_solver(s: dict) -> None:
    """Scheme, instance, cost, slack, and the solver figures each scheme may report."""
    c = s["cost"]
    print(f"scheme            {s['scheme']}")
    print(f"instance          {s['instance']}  periods {s['periods']}")
    print(
        f"total cost        {fmt_eur(c['total_cost_eur'])} €  (market {fmt_eur(c['market_cost_eur'])}, "
        f"slack {fmt_eur(c['slack_cost_eur'])})"
    )
    print(f"slack             {fmt(s['slack']['p_mw'], 'MW')} MW, {fmt(s['slack']['q_mvar'], 'Mvar')} Mvar")
    if s.get("mip", {}).get("gap") is not None:
        print(
            f"mip               {s['mip']['binaries']} binaries, bound {fmt_eur(s['mip']['lower_bound'])} €, "
            f"gap {fmt_percent(s['mip']['gap'], sign=False)}"
        )
    if "soc_gap" in s:
        g = s["soc_gap"]
        if "fictitious_loss_mw_max_line" in g:
            print(
                f"soc gap           fictitious loss max {g['fictitious_loss_mw_max_line']:.3g} MW per line, "
                f"{g['fictitious_loss_mw_max_period']:.3g} MW per period, voltage drop max "
                f"{g.get('fictitious_vdrop_pu2_max', 0.0):.3g} p.u.²; inexact lines {g['inexact_lines']} "
                f"(> {g['tolerance_mw']:.0e} MW or p.u.²), at solver tolerance {g['tolerance_lines']}; "
                f"cone gap max {g['max']:.3g} MVA²"
            )
        else:  # a summary written before the MW figures existed
            print(f"soc gap           max {g['max']:.3g} MVA², inexact lines {g['inexact_lines']}")
    if "solver" in s:
        print(f"solver            {s['solver']['name']} {s['solver']['status']} in {s['solver']['time_s']:.2f} s")


def _print_certificate(ce: dict) -> None:
    """Rounds and certified gap of the cut exchange."""
    lb = ce["lower_bound_eur"]
    gap = ce["dispatched_gap"]
    print(f"cut exchange      {ce['rounds']} rounds, stopped by {ce['stopped_by']} ({ce['reason']})")
    print(
        f"certificate       lower bound {'n/a' if lb is None else fmt_eur(lb)} €, certified gap of the "
        f"dispatched point {'n/a' if gap is None else fmt_percent(gap, sign=False)} (target "
        f"{fmt_percent(ce['dispatched_target_gap'], sign=False)}; exchange gap target "
        f"{fmt_percent(ce['target_gap'], sign=False)})"
    )


def _print_curve_scheme(s: dict) -> None:
    """Curves, certificate, messages and timings of the schemes that exchange flexibility curves."""
    cv = s["curves"]
    print(
        f"curves            {cv['evaluations']} evaluations, sum eps {fmt_eur(cv['sum_eps_eur'])} €, "
        f"error at solution {fmt_eur(s['curve_error_at_solution_eur'])} €"
    )
    if "certificate" in s:
        _print_certificate(s["certificate"])
    com = s["communication"]
    print(f"messages          {com['messages']:,} ({com['bytes']:,} bytes)")
    tm = s["timings_s"]
    print(f"time              wall {tm['wall']:.2f} s, critical path {tm['critical_path']:.2f} s")


def print_summary(s: dict) -> None:
    """Print the summary of a cleared instance (`ClearingResult.summary`)."""
    _print_cost_and_solver(s)
    if "curves" in s:
        _print_curve_scheme(s)
    if "gap_to_centralized" in s:
        g = s["gap_to_centralized"]
        ref, cost = g["centralized_cost_eur"], g["hierarchical_cost_eur"]
        diff = cost - ref
        share = 0.0 if abs(diff) < 0.005 else relative_gap(cost, ref)
        # the reference's own MIP gap bounds how far below it any scheme can land (a negative gap within it is
        # the reference's, not the scheme's)
        ref_gap = g.get("centralized_mip_gap")
        at_gap = f"at MIP gap {fmt_percent(ref_gap, sign=False)} " if ref_gap is not None and ref_gap > 0 else ""
        print(
            f"gap to central.   {fmt_eur(diff, sign=True)} € ({fmt_percent(share)})  (centralized {fmt_eur(ref)} € "
            f"{at_gap}in {g['centralized_wall_s']:.2f} s; this scheme {s['timings_s']['wall']:.2f} s)"
        )
    if "ac_recovery" in s:
        r = s["ac_recovery"]
        print(
            f"ac check          {r['violations_before']} violations, max |Δx| {r['max_abs_dx_mw_before']:.3g} MW; "
            f"{r['areas_not_deliverable']} of {r['areas_checked']} areas not AC-deliverable "
            f"(|Δx| tolerance {r['dx_tolerance_mw']:g} MW)"
        )
        print(
            f"ac recovery       {r['areas_recovered']} of {r['areas_attempted']} areas recovered, extra cost "
            f"{fmt_eur(r['extra_cost_eur'], sign=True)} €, {r['violations_after']} violations after, max |Δx| "
            f"{r['max_abs_dx_mw_after']:.3g} MW, {r['time_s']:.2f} s (max {r['max_area_time_s']:.2f} s per area)"
        )
    if "ac_dispatch" in s:
        d = s["ac_dispatch"]
        print(
            f"ac dispatch       {d['areas_redispatched']} of {d['areas_not_deliverable']} undeliverable DSO areas "
            f"re-dispatched with the exact AC model ({d['optimality']}), extra cost "
            f"{fmt_eur(d['extra_cost_eur'], sign=True)} €, violations {d['violations_before']} -> "
            f"{d['violations_after']}, {d['time_s']:.2f} s"
        )
    for w in s.get("warnings", []):
        print(f"warning           {w}")
