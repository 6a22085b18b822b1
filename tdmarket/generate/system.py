"""`tdmarket generate`: a realistic T&D system from real grids, deterministic for a seed (docs/generate.md).

Transmission: a meshed `pandapower.networks` case (DC data).  Distribution: N radial areas, each a copy of a
SimBench MV feeder template (`grids.feeder_templates`) with its loads, generation and ratings randomised, hosted
at a transmission bus drawn with probability proportional to its load.  Orders: `orderbook.sample_orders`.
Imbalance: `CALIBRATION["imbalance_ratio"]` of the system load per period, of one sign per instance.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..io.atomic import atomic_dir
from .calibration import target
from .grids import (
    FEEDER_SIZES,
    SIMBENCH_MV_GRIDS,
    TRANSMISSION_CASES,
    UNRATED_MVA,
    dc_flows,
    feeder_templates,
    load_transmission,
)
from .orderbook import NodeSet, sample_orders

MARKER = "generated.json"  # written into every generated folder: the folder may be replaced by `generate`
MAX_DSOS, MAX_PERIODS = 10_000, 96
VSQ_MIN, VSQ_MAX = 0.9025, 1.1025  # squared voltage bounds of every D node (0.95–1.05 p.u., as in the data)
LOAD_SCALE = (0.6, 1.0)  # per-area factor on the template's loads (and reactive injections)
GEN_SCALE = (0.3, 1.0)  # per-area factor on the template's generation
RATING_SCALE = (0.9, 1.1)  # per-area factor on the template's line ratings
SUB_DSO_SHARE = 0.25  # with --sub-dso-depth 1: share of areas split in two (at least one)
IMBALANCE_SPREAD = (0.5, 1.5)  # factor on the calibrated imbalance ratio, drawn once per instance
IMBALANCE_PERIOD_NOISE = 0.2  # per-period factor in [1 − x, 1 + x]
IMBALANCE_CAP = 0.5  # |imbalance| at most this share of the divisible volume offered in its direction
RATING_MARGIN = 1.25  # T ratings below this × the base-case DC flow are raised to it
FIRST_PERIOD = 1


@dataclass(frozen=True)
class GenerateOptions:
    """The options of `tdmarket generate` (docs/generate.md §4)."""

    dsos: int
    periods: int = 4
    seed: int = 0
    feeder_size: str = "medium"
    transmission: str | None = None  # None: the smallest case with at least dsos / 3 load buses
    sub_dso_depth: int = 0

    def check(self) -> None:
        if not 1 <= self.dsos <= MAX_DSOS:
            raise InputError(f"--dsos must be in 1 … {MAX_DSOS}, not {self.dsos}")
        if not 1 <= self.periods <= MAX_PERIODS:
            raise InputError(f"--periods must be in 1 … {MAX_PERIODS}, not {self.periods}")
        if self.seed < 0:
            raise InputError(f"--seed must be >= 0, not {self.seed}")
        if self.feeder_size not in FEEDER_SIZES:
            raise InputError(f"--feeder-size must be one of {', '.join(FEEDER_SIZES)}, not {self.feeder_size!r}")
        if self.transmission is not None and self.transmission not in TRANSMISSION_CASES:
            raise InputError(
                f"--transmission must be one of {', '.join(TRANSMISSION_CASES)}, not {self.transmission!r}"
            )
        if self.sub_dso_depth not in (0, 1):
            raise InputError(
                f"--sub-dso-depth must be 0 or 1 (deeper nesting is not generated), not {self.sub_dso_depth}"
            )


DEFAULT_CASES = ("case118", "case1354pegase", "case1888rte", "case2869pegase", "case6470rte")


def default_case(dsos: int) -> str:
    """The smallest of `DEFAULT_CASES` with at least dsos / 3 load buses (at most three areas per host on
    average), else the largest."""
    for case in DEFAULT_CASES:
        if (load_transmission(case).load_mw > 0).sum() * 3 >= dsos:
            return case
    return DEFAULT_CASES[-1]


def _subtree_sizes(parent: np.ndarray) -> np.ndarray:
    size = np.ones(len(parent), np.int64)
    for i in range(len(parent) - 1, 0, -1):  # one template (~40 nodes)
        size[parent[i]] += size[i]
    return size


def _columns(tables: dict[str, dict[str, np.ndarray]], folder: Path) -> None:
    for name in sorted(tables):
        cols = tables[name]
        cells = [np.asarray(v).astype(str) for v in cols.values()]
        lines = [",".join(cols)]
        lines.extend(map(",".join, zip(*cells)))
        with open(folder / name, "w", encoding="utf-8", newline="\n") as fh:
            fh.write("\n".join(lines) + "\n")


def build_tables(opts: GenerateOptions) -> tuple[dict[str, dict[str, np.ndarray]], dict]:
    """The SmartNet files (name -> columns) and the manifest of a generated system."""
    opts.check()
    rng = np.random.default_rng(opts.seed)
    case = opts.transmission or default_case(opts.dsos)
    grid = load_transmission(case)
    templates = feeder_templates(opts.feeder_size, tuple(SIMBENCH_MV_GRIDS))
    periods = np.arange(FIRST_PERIOD, FIRST_PERIOD + opts.periods)
    T, N = opts.periods, opts.dsos

    # --- areas: template, host, scales
    tmpl = rng.integers(0, len(templates), N)
    loaded = np.flatnonzero(grid.load_mw > 0)
    host = np.sort(rng.choice(loaded, N, p=grid.load_mw[loaded] / grid.load_mw[loaded].sum()))
    load_f = rng.uniform(*LOAD_SCALE, N)
    gen_f = rng.uniform(*GEN_SCALE, N)
    rating_f = rng.uniform(*RATING_SCALE, N)
    split = np.zeros(N, bool)
    if opts.sub_dso_depth:
        split = rng.random(N) < SUB_DSO_SHARE
        split[rng.integers(0, N)] = True
    sizes = np.array([t.n_nodes for t in templates])[tmpl]
    n_t = grid.n_bus
    d_start = n_t + 1 + np.r_[0, np.cumsum(sizes)[:-1]]  # first D node id of each area (T ids are 1 … n_t)
    n_d = int(sizes.sum())

    d_id = np.zeros(n_d, np.int64)
    d_area = np.zeros(n_d, np.int64)
    d_parent = np.zeros(n_d, np.int64)
    cols = {k: np.zeros(n_d) for k in ("r", "x", "b", "s", "p", "q", "load")}
    split_edge_child = []
    for k, t in enumerate(templates):  # a loop over the few templates; areas of one template are vectorised
        areas = np.flatnonzero(tmpl == k)
        if not len(areas):
            continue
        pos = (d_start[areas] - n_t - 1)[:, None] + np.arange(t.n_nodes)
        ids = d_start[areas][:, None] + np.arange(t.n_nodes)
        d_id[pos] = ids
        d_area[pos] = areas[:, None]
        d_parent[pos] = np.where(t.parent >= 0, d_start[areas][:, None] + np.maximum(t.parent, 0), 0)
        gen = t.p_mw + t.load_mw
        cols["r"][pos], cols["x"][pos], cols["b"][pos] = t.r_pu, t.x_pu, t.b_pu
        cols["s"][pos] = np.round(t.rating_mva * rating_f[areas][:, None], 4)
        cols["load"][pos] = t.load_mw * load_f[areas][:, None]
        cols["p"][pos] = np.round(gen * gen_f[areas][:, None] - t.load_mw * load_f[areas][:, None], 6)
        cols["q"][pos] = np.round(t.q_mvar * load_f[areas][:, None], 6)
        if split[areas].any():
            sub = _subtree_sizes(t.parent)
            child = 1 + int(np.argmin(np.abs(sub[1:] - t.n_nodes / 3)))
            split_edge_child.append(d_start[areas[split[areas]]] + child)
    is_root = d_parent == 0

    # --- injections: D constant over the horizon; T generation balances T load and the D net positions
    area_net = np.bincount(d_area, weights=cols["p"], minlength=N)
    t_load = grid.load_mw.copy()
    np.add.at(t_load, host, np.bincount(d_area, weights=cols["load"], minlength=N) * -1.0)
    t_load = np.maximum(t_load, 0.0)
    gen_scale = (t_load.sum() - area_net.sum()) / grid.gen_mw.sum()
    t_base = grid.gen_mw * gen_scale - t_load
    system_load = t_load.sum() + cols["load"].sum()

    # --- the order book (needed to cap the imbalance by the offered volume)
    nodes = NodeSet(np.r_[np.arange(1, n_t + 1), d_id], np.r_[np.zeros(n_t, bool), np.ones(n_d, bool)])
    files = sample_orders(rng, nodes, periods)
    bids = files["Bids.csv"]
    divisible = bids["Xlb"] == 0
    up_vol = np.bincount(
        bids["forT"] - FIRST_PERIOD, weights=np.maximum(bids["QuantityHiQ"], 0) * divisible, minlength=T
    )
    dn_vol = np.bincount(
        bids["forT"] - FIRST_PERIOD, weights=np.maximum(-bids["QuantityHiQ"], 0) * divisible, minlength=T
    )
    negative = rng.random() < target("imbalance_negative_share")
    ratio = target("imbalance_ratio") * rng.uniform(*IMBALANCE_SPREAD)
    size = system_load * ratio * rng.uniform(1 - IMBALANCE_PERIOD_NOISE, 1 + IMBALANCE_PERIOD_NOISE, T)
    size = np.minimum(size, IMBALANCE_CAP * (up_vol if negative else dn_vol))
    imbalance = np.round(-size if negative else size, 3)
    share = t_load / t_load.sum()
    t_p = np.round(t_base[:, None] + share[:, None] * imbalance[None, :], 6)
    t_p[grid.ref_bus] += imbalance - t_p.sum(axis=0) - cols["p"].sum()  # exact system imbalance after rounding

    # --- T ratings: raised where the DC flow of the base injections (D areas at their hosts) exceeds them
    inj = t_p.copy()
    np.add.at(inj, host, np.repeat(area_net[:, None], T, axis=1))
    flow = np.abs(dc_flows(grid, inj)).max(axis=1)
    rating = grid.rating_mva.copy()
    raised = (rating < UNRATED_MVA) & (RATING_MARGIN * flow > rating)
    rating[raised] = np.round(RATING_MARGIN * flow[raised], 1)
    rating = np.where(rating >= UNRATED_MVA, 0.0, rating)

    # --- files
    n_tt = len(grid.x_pu)
    dd = ~is_root
    edge_tt = np.arange(1, n_tt + 1)
    edge_if = n_tt + np.arange(1, N + 1)
    edge_dd = n_tt + N + np.arange(1, dd.sum() + 1)
    d_area_root = d_id[is_root]
    iface_s = np.array([t.transformer_mva for t in templates])[tmpl]
    tables: dict[str, dict[str, np.ndarray]] = {
        "GeneralParam.csv": {"StartTime": periods[:1], "EndTime": periods[-1:], "baseMVA": np.array([1])},
        "TransmissionNodes.csv": {
            "ID": np.arange(1, n_t + 1),
            "RefNode": (np.arange(n_t) == grid.ref_bus).astype(np.int64),
        },
        "DistributionNodes.csv": {
            "ID": d_id,
            "Vsqmin": np.full(n_d, VSQ_MIN),
            "Vsqmax": np.full(n_d, VSQ_MAX),
            "G": np.zeros(n_d),
            "B": np.zeros(n_d),
        },
        "Edges.csv": {
            "ID": np.r_[edge_tt, edge_if, edge_dd],
            "NodeFrom": np.r_[grid.line_from + 1, host + 1, d_parent[dd]],
            "NodeTo": np.r_[grid.line_to + 1, d_area_root, d_id[dd]],
            "R": np.r_[np.zeros(n_tt + N), cols["r"][dd]],
            "X": np.r_[grid.x_pu, np.zeros(N), cols["x"][dd]],
            "B": np.r_[np.zeros(n_tt + N), cols["b"][dd]],
            "S": np.r_[rating, iface_s, cols["s"][dd]],
            "Tap": np.ones(n_tt + N + dd.sum()),
            "Shift": np.r_[grid.shift_deg, np.zeros(N + dd.sum())],
        },
        "NetInjections.csv": {
            "Node": np.repeat(np.r_[np.arange(1, n_t + 1), d_id], T),
            "forT": np.tile(periods, n_t + n_d),
            "P": np.r_[t_p.ravel(), np.repeat(cols["p"], T)],
            "Q": np.r_[np.zeros(n_t * T), np.repeat(cols["q"], T)],
        },
        **files,
    }
    if split_edge_child:
        child_ids = np.sort(np.concatenate(split_edge_child))
        edge_of_child = edge_dd[np.searchsorted(d_id[dd], child_ids)]
        tables["SubAreas.csv"] = {"Edge": edge_of_child, "Area": np.array([f"DSO-{c}" for c in child_ids])}
    manifest = {
        "generator": "tdmarket generate",
        "options": asdict(opts) | {"transmission": case},
        "transmission": {"case": case, "buses": int(n_t), "lines": int(n_tt), "ratings_raised": int(raised.sum())},
        "feeders": {
            "simbench_grids": list(SIMBENCH_MV_GRIDS),
            "templates": [t.name for t in templates],
            "areas_per_template": np.bincount(tmpl, minlength=len(templates)).tolist(),
        },
        "figures": {
            "dso_areas": N,
            "sub_dso_areas": int(split.sum()),
            "t_nodes": int(n_t),
            "d_nodes": n_d,
            "segments": len(bids["QBidSeg"]),
            "system_load_mw": round(float(system_load), 3),
            "imbalance_mw": imbalance.tolist(),
        },
    }
    return tables, manifest


def check_output(out: Path, force: bool) -> None:
    """OUT must be new, empty, a folder `generate` wrote (it has MARKER), or replaced with `force`."""
    if out.exists() or out.is_symlink():
        if not out.is_dir():
            raise InputError(f"output {out} exists and is not a folder")
        if any(out.iterdir()) and not (out / MARKER).is_file() and not force:
            raise InputError(
                f"output folder {out} exists, is not empty and was not written by tdmarket generate (no {MARKER}); "
                "choose a new folder, or replace it with --force"
            )


def generate_system(out: str | Path, opts: GenerateOptions, *, force: bool = False, layout: str = "smartnet") -> dict:
    """Write the generated system into `out` atomically (temporary sibling, then rename); returns the manifest.

    `layout="operators"` writes an operator layout instead of one SmartNet folder (`tdmarket.io.layout`: one
    folder per operator and the index `operators.csv`), with the manifest in its root."""
    if layout not in ("smartnet", "operators"):
        raise InputError(f"unknown layout {layout!r} (smartnet or operators)")
    out = Path(out)
    opts.check()
    check_output(out, force)
    tables, manifest = build_tables(opts)
    text = json.dumps(manifest, indent=1, sort_keys=True) + "\n"
    if layout == "operators":
        import tempfile

        from ..io import read
        from ..io.layout import write_layout

        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=f".{out.name}.flat-", dir=out.parent) as flat:
            _columns(tables, Path(flat))
            inst = read(flat, max_file_mb=4096.0)  # our own files (a 1 000-area Bids.csv has ~17 MiB)
        write_layout(inst, out, force=True, extra={MARKER: text})  # OUT was checked above
        return manifest
    with atomic_dir(out) as tmp:
        _columns(tables, tmp)
        (tmp / MARKER).write_text(text, encoding="utf-8")
    return manifest
