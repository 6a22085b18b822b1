"""Real grids for `tdmarket generate`: a meshed transmission case from `pandapower.networks` and radial
distribution feeders cut from SimBench MV grids (docs/generate.md §1–§2).

Everything here is converted to the SmartNet conventions: impedances in p.u. on a 1 MVA base (ohms divided by
kV²), ratings in MVA, injections in MW / Mvar with generation positive.  Loaded grids are kept in memory for
the run (`functools.cache`); the feeder templates extracted from a SimBench grid are also kept in a small disk
cache (`$TDMARKET_CACHE`, default `~/.cache/tdmarket`), keyed by the simbench version, because loading one
SimBench grid takes several seconds.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.sparse.csgraph import breadth_first_order, connected_components

from ..errors import InputError

# SimBench MV grids the feeders come from (code -> short label), in the order templates are numbered.
SIMBENCH_MV_GRIDS: dict[str, str] = {
    "1-MV-rural--0-sw": "rural",
    "1-MV-semiurb--0-sw": "semiurb",
    "1-MV-urban--0-sw": "urban",
    "1-MV-comm--0-sw": "comm",
}

# Feeder size -> target number of D nodes per area (None: the whole MV grid behind its HV/MV transformer).
FEEDER_SIZES: dict[str, int | None] = {"small": 15, "medium": 40, "large": None}

# Transmission cases offered by --transmission (pandapower.networks function names), smallest first.
TRANSMISSION_CASES = (
    "case118",
    "case300",
    "case1354pegase",
    "case1888rte",
    "case2869pegase",
    "case3120sp",
    "case6470rte",
)
UNRATED_MVA = 90_000.0  # SmartNet: a rating >= 90 000 MVA is "unrated" (docs/format.md, Edges.csv S)


@dataclass(frozen=True)
class TransmissionGrid:
    """A meshed transmission grid: buses 0..n-1, lines, and the case's loads and generation per bus."""

    case: str
    n_bus: int
    line_from: np.ndarray  # bus index
    line_to: np.ndarray  # bus index
    x_pu: np.ndarray  # series reactance, p.u. on 1 MVA
    rating_mva: np.ndarray  # thermal rating, MVA (>= UNRATED_MVA: unrated)
    shift_deg: np.ndarray  # phase shift, degrees
    load_mw: np.ndarray  # (n_bus,) active load, MW
    gen_mw: np.ndarray  # (n_bus,) active generation (gen + sgen + slack share), MW; sums to the load
    ref_bus: int  # angle reference (the case's external grid bus)


@dataclass(frozen=True)
class FeederTemplate:
    """A radial distribution area cut from a SimBench MV grid at its HV/MV transformer.

    Nodes are in breadth-first order from the root (the MV busbar, node 0), so `parent[i] < i`.  Edge i joins
    node i to `parent[i]` (i >= 1); the entries at index 0 are unused (0)."""

    name: str  # e.g. "1-MV-rural--0-sw feeders 1-3"
    parent: np.ndarray  # (n,) parent node, -1 at the root
    r_pu: np.ndarray  # (n,) series resistance of the edge to the parent, p.u. on 1 MVA
    x_pu: np.ndarray  # (n,) series reactance, p.u. on 1 MVA
    b_pu: np.ndarray  # (n,) total charging susceptance, p.u. on 1 MVA
    rating_mva: np.ndarray  # (n,) edge rating, MVA
    p_mw: np.ndarray  # (n,) net active injection (generation − load), MW
    q_mvar: np.ndarray  # (n,) net reactive injection, Mvar
    load_mw: np.ndarray  # (n,) active load, MW
    transformer_mva: float  # HV/MV transformer rating (the interface rating), MVA

    @property
    def n_nodes(self) -> int:
        return len(self.parent)


def _require(module: str):
    try:
        return __import__(module)
    except ImportError as exc:
        raise InputError(
            f"tdmarket generate needs {module}: pip install 'tdmarket[generate]' (pandapower and simbench)"
        ) from exc


# ------------------------------------------------------------------------------------------ transmission
@functools.cache
def load_transmission(case: str) -> TransmissionGrid:
    """The in-service part of a `pandapower.networks` case connected to its external grid, as a DC grid."""
    if case not in TRANSMISSION_CASES:
        raise InputError(f"unknown transmission case {case!r}; choose one of {', '.join(TRANSMISSION_CASES)}")
    _require("pandapower")
    import pandapower.networks as pn

    net = getattr(pn, case)()
    bus_ids = net.bus.index[net.bus.in_service.to_numpy()].to_numpy()
    vn = net.bus.vn_kv
    ln = net.line[net.line.in_service]
    tr = net.trafo[net.trafo.in_service]
    par = ln.parallel.to_numpy(float)
    x_line = ln.x_ohm_per_km.to_numpy() * ln.length_km.to_numpy() / par / vn.loc[ln.from_bus].to_numpy() ** 2
    s_line = np.sqrt(3) * vn.loc[ln.from_bus].to_numpy() * ln.max_i_ka.to_numpy() * par
    x_trafo = tr.vk_percent.to_numpy() / 100.0 / tr.sn_mva.to_numpy() / tr.parallel.to_numpy(float)
    frm = np.concatenate([ln.from_bus.to_numpy(), tr.hv_bus.to_numpy()])
    to = np.concatenate([ln.to_bus.to_numpy(), tr.lv_bus.to_numpy()])
    x = np.concatenate([x_line, x_trafo])
    rating = np.concatenate([s_line, tr.sn_mva.to_numpy() * tr.parallel.to_numpy(float)])
    shift = np.concatenate([np.zeros(len(ln)), tr.shift_degree.to_numpy(float)])
    keep = np.isin(frm, bus_ids) & np.isin(to, bus_ids) & (x > 0) & (frm != to)
    frm, to, x, rating, shift = frm[keep], to[keep], x[keep], rating[keep], shift[keep]

    pos = pd.Series(np.arange(len(bus_ids)), index=bus_ids)
    f, t = pos.loc[frm].to_numpy(), pos.loc[to].to_numpy()
    n = len(bus_ids)
    ref_id = int(net.ext_grid.bus.iloc[0])
    _, comp = connected_components(sp.coo_matrix((np.ones(len(f)), (f, t)), shape=(n, n)), directed=False)
    main = comp == comp[pos.loc[ref_id]]
    new = np.cumsum(main) - 1
    keep = main[f] & main[t]
    f, t, x, rating, shift = new[f[keep]], new[t[keep]], x[keep], rating[keep], shift[keep]
    kept_ids = bus_ids[main]
    kpos = pd.Series(np.arange(len(kept_ids)), index=kept_ids)

    def per_bus(table: pd.DataFrame) -> np.ndarray:
        table = table[table.in_service & table.bus.isin(kept_ids)]
        out = np.zeros(len(kept_ids))
        np.add.at(out, kpos.loc[table.bus].to_numpy(), table.p_mw.to_numpy(float) * table.scaling.to_numpy(float))
        return out

    load = per_bus(net.load)
    gen = per_bus(net.gen) + per_bus(net.sgen)
    # the external grid (slack) supplies what generation lacks; then generation is scaled to the load exactly
    ref = int(kpos.loc[ref_id])
    gen[ref] += max(load.sum() - gen.sum(), 0.0)
    gen *= load.sum() / gen.sum()
    return TransmissionGrid(
        case=case,
        n_bus=len(kept_ids),
        line_from=f.astype(np.int64),
        line_to=t.astype(np.int64),
        x_pu=x,
        rating_mva=np.minimum(rating, UNRATED_MVA),
        shift_deg=shift,
        load_mw=load,
        gen_mw=gen,
        ref_bus=ref,
    )


def dc_flows(grid: TransmissionGrid, injection_mw: np.ndarray) -> np.ndarray:
    """DC line flows (MW, from → to) of balanced nodal injections (n_bus, T), phase shifts included."""
    n, m = grid.n_bus, len(grid.x_pu)
    rows = np.arange(m)
    A = sp.csr_matrix(
        (np.r_[np.ones(m), -np.ones(m)], (np.r_[rows, rows], np.r_[grid.line_from, grid.line_to])), (m, n)
    )
    bl = 1.0 / grid.x_pu
    shift = np.deg2rad(grid.shift_deg)
    B = (A.T @ sp.diags(bl) @ A).tocsc()
    rhs = injection_mw + (A.T @ (bl * shift))[:, None]
    keep = np.flatnonzero(np.arange(n) != grid.ref_bus)
    theta = np.zeros_like(rhs)
    theta[keep] = sp.linalg.splu(B[keep][:, keep]).solve(rhs[keep])
    return bl[:, None] * (A @ theta - shift[:, None])


# ------------------------------------------------------------------------------------------ distribution
def _cache_dir() -> Path:
    return Path(os.environ.get("TDMARKET_CACHE", Path.home() / ".cache" / "tdmarket"))


@functools.cache
def _simbench_tree(code: str) -> dict[str, np.ndarray | float]:
    """The MV part of a SimBench grid as a BFS spanning tree rooted at its first HV/MV transformer."""
    simbench = _require("simbench")
    version = getattr(simbench, "__version__", "unknown")
    cache = _cache_dir() / f"simbench-{version}-{code}.json"
    if cache.is_file():
        data = json.loads(cache.read_text())
        return {k: (np.array(v) if isinstance(v, list) else v) for k, v in data.items()}
    net = simbench.get_simbench_net(code)
    trafo = net.trafo.sort_index().iloc[0]
    mv_kv = float(trafo.vn_lv_kv)
    mv = net.bus.index[(net.bus.vn_kv == mv_kv) & net.bus.in_service].to_numpy()
    pos = pd.Series(np.arange(len(mv)), index=mv)
    sw = net.switch
    # closed bus–bus switches merge buses; a line with an open switch at either end is out
    bb = sw[(sw.et == "b") & sw.closed & sw.bus.isin(mv) & sw.element.isin(mv)]
    n = len(mv)
    _, rep = connected_components(
        sp.coo_matrix((np.ones(len(bb)), (pos.loc[bb.bus], pos.loc[bb.element])), shape=(n, n)), directed=False
    )
    open_lines = sw.element[(sw.et == "l") & ~sw.closed].to_numpy()
    ln = net.line[net.line.in_service & ~net.line.index.isin(open_lines)]
    ln = ln[ln.from_bus.isin(mv) & ln.to_bus.isin(mv)].sort_index()
    a, b = rep[pos.loc[ln.from_bus].to_numpy()], rep[pos.loc[ln.to_bus].to_numpy()]
    ok = a != b
    ln, a, b = ln[ok], a[ok], b[ok]
    k = rep.max() + 1
    graph = sp.coo_matrix((np.ones(len(a)), (a, b)), shape=(k, k)).tocsr()
    root = rep[pos.loc[int(trafo.lv_bus)]]
    order, pred = breadth_first_order(graph, root, directed=False, return_predecessors=True)
    new = np.full(k, -1)
    new[order] = np.arange(len(order))
    parent = np.where(order == root, -1, new[np.maximum(pred[order], 0)])
    # the line of each tree edge (first of parallel ones)
    lines = pd.DataFrame({"u": np.minimum(a, b), "v": np.maximum(a, b), "line": np.arange(len(ln))})
    lines = lines.drop_duplicates(["u", "v"])
    child = order[1:]
    par_rep = pred[child]
    edges = pd.DataFrame({"u": np.minimum(child, par_rep), "v": np.maximum(child, par_rep)})
    li = edges.merge(lines, on=["u", "v"], how="left")["line"].to_numpy()
    zb = mv_kv**2  # ohm base on 1 MVA
    length = ln.length_km.to_numpy()[li]
    npar = ln.parallel.to_numpy(float)[li]
    r = np.r_[0.0, ln.r_ohm_per_km.to_numpy()[li] * length / npar / zb]
    x = np.r_[0.0, ln.x_ohm_per_km.to_numpy()[li] * length / npar / zb]
    b_pu = np.r_[0.0, 2 * np.pi * 50 * ln.c_nf_per_km.to_numpy()[li] * 1e-9 * length * npar * zb]
    rating = np.r_[0.0, np.sqrt(3) * mv_kv * ln.max_i_ka.to_numpy()[li] * npar]

    def per_node(table: pd.DataFrame, col: str) -> np.ndarray:
        table = table[table.in_service & table.bus.isin(mv)]
        out = np.zeros(len(order))
        node = new[rep[pos.loc[table.bus].to_numpy()]]
        ok = node >= 0
        np.add.at(out, node[ok], (table[col].to_numpy(float) * table.scaling.to_numpy(float))[ok])
        return out

    load_p, load_q = per_node(net.load, "p_mw"), per_node(net.load, "q_mvar")
    gen_p, gen_q = per_node(net.sgen, "p_mw"), per_node(net.sgen, "q_mvar")
    data = {
        "parent": parent.astype(np.int64),
        "r_pu": r,
        "x_pu": x,
        "b_pu": b_pu,
        "rating_mva": rating,
        "p_mw": gen_p - load_p,
        "q_mvar": gen_q - load_q,
        "load_mw": load_p,
        "transformer_mva": float(trafo.sn_mva),
    }
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps({k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in data.items()}))
        os.replace(tmp, cache)
    except OSError:
        pass  # the cache is an optimisation only
    return data


def _subtree(parent: np.ndarray, tops: np.ndarray) -> np.ndarray:
    """Boolean mask of the nodes in the subtrees of `tops` (BFS order: parents before children)."""
    inside = np.zeros(len(parent), bool)
    inside[tops] = True
    for i in range(1, len(parent)):  # one pass in BFS order (templates only: ~100 nodes)
        inside[i] |= inside[parent[i]]
    return inside


@functools.cache
def feeder_templates(size: str, grids: tuple[str, ...] = tuple(SIMBENCH_MV_GRIDS)) -> tuple[FeederTemplate, ...]:
    """Radial areas of about `FEEDER_SIZES[size]` nodes: the root busbar plus whole feeders of one grid,
    grouped in feeder order until the target is reached (a remainder under half the target is dropped)."""
    if size not in FEEDER_SIZES:
        raise InputError(f"unknown feeder size {size!r}; choose one of {', '.join(FEEDER_SIZES)}")
    target = FEEDER_SIZES[size]
    out = []
    for code in grids:
        tree = _simbench_tree(code)
        parent = np.asarray(tree["parent"])
        feeders = np.flatnonzero(parent == 0)
        if target is None:
            groups = [feeders]
        else:
            groups, current, count = [], [], 0
            sizes = [int(_subtree(parent, np.array([f])).sum()) for f in feeders]
            for f, s in zip(feeders, sizes):
                current.append(f)
                count += s
                if count + 1 >= target:
                    groups.append(np.array(current))
                    current, count = [], 0
            if current and count + 1 >= target / 2:
                groups.append(np.array(current))
        for k, group in enumerate(groups):
            keep = _subtree(parent, group)
            keep[0] = True
            idx = np.flatnonzero(keep)
            remap = np.full(len(parent), -1)
            remap[idx] = np.arange(len(idx))
            par = np.where(parent[idx] >= 0, remap[np.maximum(parent[idx], 0)], -1)
            label = "all feeders" if target is None else f"feeder group {k + 1}"
            out.append(
                FeederTemplate(
                    name=f"{code} {label}",
                    parent=par,
                    **{c: np.asarray(tree[c], float)[idx] for c in ("r_pu", "x_pu", "b_pu", "rating_mva")},
                    p_mw=np.asarray(tree["p_mw"], float)[idx],
                    q_mvar=np.asarray(tree["q_mvar"], float)[idx],
                    load_mw=np.asarray(tree["load_mw"], float)[idx],
                    transformer_mva=float(tree["transformer_mva"]),
                )
            )
    return tuple(out)
