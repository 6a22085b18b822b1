"""Text rendering of `instance_stats` output (`tdmarket info`): one helper per section, aligned by `format_stats`."""

from __future__ import annotations


def _num(v, nd: int = 4) -> str:
    """A figure as text: None is 'unrated', thousands separated by a space, floats to `nd` digits."""
    if v is None:
        return "unrated"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return f"{v:,}".replace(",", " ")
    if isinstance(v, float):
        if v == int(v) and abs(v) < 1e15:
            return f"{int(v):,}".replace(",", " ")
        return f"{v:.{nd}g}" if abs(v) >= 1e4 or abs(v) < 1e-3 else f"{round(v, nd)}"
    return str(v)


def _rng(r, nd: int = 4, unit: str = "") -> str:
    """A [lo, hi] range as 'lo … hi unit' (one value if equal, '–' if None)."""
    if r is None:
        return "–"
    lo, hi = r
    text = _num(lo, nd) if lo == hi else f"{_num(lo, nd)} … {_num(hi, nd)}"
    return f"{text} {unit}".rstrip()


def _network_rows(n: dict) -> list[tuple[str, str] | str]:
    """The ``network`` section."""
    return [
        "network",
        ("T nodes / reference", f"{_num(n['t_nodes'])} / {', '.join(map(str, n['reference_nodes']))}"),
        ("D nodes", _num(n["d_nodes"]) + (f" (+{n['boundary_nodes']} boundary)" if n["boundary_nodes"] else "")),
        (
            "edges total / T–T / D–D / interface",
            " / ".join(_num(n[k]) for k in ("edges", "edges_tt", "edges_dd", "edges_interface")),
        ),
        (
            "interface orientation; ratings (MVA)",
            f"{n['interface_orientation']}; {', '.join(_num(r) for r in n['interface_ratings']) or '–'}",
        ),
        ("T–T rated / unrated", f"{_num(n['tt_rated'])} / {_num(n['tt_unrated'])}"),
        (
            "T–T with X=0 (rated); parallel pairs",
            f"{_num(n['tt_x0'])} ({_num(n['tt_x0_rated'])}); {_num(n['tt_parallel_pairs'])} "
            f"(in {_num(n['tt_parallel_groups'])} node pairs)",
        ),
        (
            "D–D R=X=0 / X=0,R>0 / B≠0 / tap or shift",
            f"{_num(n['dd_r0_x0'])} / {_num(n['dd_x0_rpos'])} / {_num(n['dd_b_nonzero'])}"
            + (f" (|B|≤{_num(n['dd_b_abs_max'])})" if n["dd_b_nonzero"] else "")
            + f" / {_num(n['dd_tap_or_shift'])}",
        ),
    ]


def _area_rows(a: dict) -> list[tuple[str, str] | str]:
    """The ``areas`` section."""
    return [
        "areas",
        (
            "DSO areas; nodes per area min/median/max",
            f"{_num(a['dso_areas'])}"
            + (f" ({a['sub_areas']} nested)" if a["sub_areas"] else "")
            + f"; {_num(a['nodes_per_area_min'])} / {_num(a['nodes_per_area_median'])} / "
            f"{_num(a['nodes_per_area_max'])}",
        ),
        (
            "voltage bounds [w_min, w_max]",
            ", ".join(f"[{_num(lo, 6)}, {_num(hi, 6)}]" for lo, hi in a["voltage_bounds"]) or "–",
        ),
        ("root net Q", _rng(a["root_q_range"], 4, "Mvar")),
        ("area net position", _rng(a["net_position_range"], 4, "MW")),
        ("areas with period-coupling orders", f"{a['areas_with_period_coupling']} of {a['dso_areas']}"),
        ("max segments in one area", _num(a["max_segments_in_area"])),
    ]


def _injection_rows(stats: dict, nums: list) -> list[tuple[str, str] | str]:
    """The ``injections`` section (one figure per period number)."""
    return [
        "injections",
        (
            "system imbalance (MW)",
            ", ".join(f"t={t}: {v:.4f}" for t, v in zip(nums, stats["injections"]["system_imbalance"])),
        ),
    ]


def _order_rows(o: dict) -> list[tuple[str, str] | str]:
    """The ``orders`` section."""
    return [
        "orders",
        ("segments total / T / D", f"{_num(o['segments'])} / {_num(o['segments_t'])} / {_num(o['segments_d'])}"),
        (
            "segments up / down / zero-width; stacked",
            f"{_num(o['segments_up'])} / {_num(o['segments_down'])} / {_num(o['segments_zero_width'])}; "
            f"{_num(o['segments_stacked'])}",
        ),
        (
            "AON total / non-zero width (T, D)",
            f"{_num(o['aon'])} / {_num(o['aon_nonzero_width'])} ({_num(o['aon_nonzero_width_t'])}, "
            f"{_num(o['aon_nonzero_width_d'])})",
        ),
        ("raw prices (€/MWh)", _rng(o["price_range"], 4)),
        ("bids total / T / D", f"{_num(o['bids'])} / {_num(o['bids_t'])} / {_num(o['bids_d'])}"),
        ("QtBids / multi-period", f"{_num(o['qtbids'])} / {_num(o['qtbids_multi_period'])}"),
        ("max segments per bid; bids up and down", f"{_num(o['max_segments_per_bid'])}; {_num(o['bids_up_and_down'])}"),
        ("bids with acceptance logic", _num(o["bids_with_acceptance_logic"])),
    ]


def _condition_rows(c: dict) -> list[tuple[str, str] | str]:
    """The ``conditions`` section."""
    pq = c["d_bids_pq"]
    return [
        "conditions",
        (
            "exclusive groups (rows); sizes",
            f"{_num(c['exclusive_groups'])} ({_num(c['exclusive_rows'])}); {c['exclusive_sizes_text'] or '–'}",
        ),
        (
            "start/stop bids (QtBids); T / D",
            f"{_num(c['start_stop_bids'])} ({_num(c['start_stop_qtbids'])}); {_num(c['start_stop_bids_t'])} / "
            f"{_num(c['start_stop_bids_d'])} ({c['start_stop_share_of_bids_pct']} % of bids)",
        ),
        (
            "no-new-activation bids / min-duration pairs",
            f"{_num(c['no_new_act_bids'])} / {_num(c['min_duration_pairs'])}",
        ),
        (
            "ramp rows / ids / constraints (max+min)",
            f"{_num(c['ramp_rows'])} / {_num(c['ramp_ids'])} / {_num(c['ramp_constraints_max'])}+"
            f"{_num(c['ramp_constraints_min'])}",
        ),
        ("ramp rows T / D", f"{_num(c['ramp_rows_t'])} / {_num(c['ramp_rows_d'])}"),
        (
            "half-plane rows D (T dropped); D ≥ / ≤",
            f"{_num(c['half_plane_rows_d'])} ({_num(c['half_plane_rows_t_dropped'])}); "
            f"{_num(c['half_plane_constraints_geq'])} / {_num(c['half_plane_constraints_leq'])}",
        ),
        ("disc rows D (T dropped)", f"{_num(c['disc_rows_d'])} ({_num(c['disc_rows_t_dropped'])})"),
        (
            "D bids: no PQ / one-sided / fixed pf / disc",
            " / ".join(_num(pq[k]) for k in ("no_pq", "one_sided", "fixed_pf", "disc")),
        ),
    ]


def format_stats(stats: dict) -> str:
    """A readable, aligned text block of `instance_stats` output."""
    p = stats["periods"]
    nums = p["numbers"]
    per = f"{p['count']} ({nums[0]}–{nums[-1]})" if len(nums) > 1 else f"{p['count']} (t={nums[0]})"
    rows: list[tuple[str, str] | str] = [
        f"instance {stats['name']}",
        ("periods", per),
        *_network_rows(stats["network"]),
        *_area_rows(stats["areas"]),
        *_injection_rows(stats, nums),
        *_order_rows(stats["orders"]),
        *_condition_rows(stats["conditions"]),
    ]
    width = max(len(r[0]) for r in rows if isinstance(r, tuple))
    out = []
    for r in rows:
        if isinstance(r, str):
            out.append(r if r.startswith("instance") else f"{r}:")
        else:
            out.append(f"  {r[0]:<{width}}  {r[1]}")
    return "\n".join(out)
