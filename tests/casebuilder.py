"""Write tiny SmartNet instances (docs/model.md §2.1) from Python lists, for hand-worked tests.

`write_case` writes the required files (GeneralParam, TransmissionNodes, DistributionNodes, Edges,
NetInjections, Bids with AlphaOmegaSet/NoNewAct columns) and the optional condition files only when their
argument is given.  `single_node_case` is the common special case: one transmission reference node, no
distribution network, and a net injection equal to the imbalance (negative = short, needs upward activation).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path


def _fmt(v) -> str:
    if isinstance(v, bool):
        return str(int(v))
    if isinstance(v, int):
        return str(v)
    f = float(v)
    return str(int(f)) if f.is_integer() and abs(f) < 2**53 else repr(f)


def _write(path: Path, header: Iterable[str], rows: Iterable[Iterable]) -> None:
    lines = [",".join(header)] + [",".join(_fmt(v) for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


BID_DEFAULTS = {"xlb": 0, "ao": 0, "nna": 0}
BID_KEYS = ("node", "qtbid", "qbid", "seg", "t", "lo", "hi", "price")


def write_case(
    folder,
    *,
    periods=(1,),
    t_nodes=(),
    d_nodes=(),
    edges=(),
    injections: Mapping | None = None,
    bids=(),
    exclusive=None,
    ramps=None,
    mindur=None,
    halfplanes=None,
    discs=None,
) -> Path:
    """Write a SmartNet instance into `folder` (created if needed) and return it as a Path.

    periods     consecutive period numbers (StartTime = first, EndTime = last)
    t_nodes     [(id, ref)]                     ref: 1 for the angle reference
    d_nodes     [(id, vmin, vmax)]              squared-voltage bounds (0, 0 = none)
    edges       [(id, from, to, R, X, S)]
    injections  {(node, t): (P, Q)}             missing (node, t) pairs are written as 0, 0
    bids        [dict(node, qtbid, qbid, seg, t, lo, hi, price, xlb=0, ao=0, nna=0)]  one row per segment
    exclusive   [(group, qtbid)]
    ramps       [(qtbid, qbid, delta, rcmin)]
    mindur      [(qtbid, qbid1, qbid2, tau, fortime)]
    halfplanes  [(qtbid, slope, offset, geq)]   geq 1: Q >= offset + slope·P, 0: Q <= offset + slope·P
    discs       [(qtbid, qbid, radius)]
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    periods = [int(t) for t in periods]
    if not periods or periods != list(range(periods[0], periods[0] + len(periods))):
        raise ValueError(f"periods must be consecutive integers, got {periods}")
    injections = dict(injections or {})

    _write(folder / "GeneralParam.csv", ["StartTime", "EndTime", "baseMVA"], [[periods[0], periods[-1], 1]])
    _write(folder / "TransmissionNodes.csv", ["ID", "RefNode"], [[i, r] for i, r in t_nodes])
    _write(folder / "DistributionNodes.csv", ["ID", "Vsqmin", "Vsqmax"], [list(d) for d in d_nodes])
    _write(folder / "Edges.csv", ["ID", "NodeFrom", "NodeTo", "R", "X", "S"], [list(e) for e in edges])

    nodes = [i for i, _ in t_nodes] + [d[0] for d in d_nodes]
    unknown = [k for k in injections if k[0] not in nodes or k[1] not in periods]
    if unknown:
        raise ValueError(f"injections for unknown (node, period) pairs: {unknown}")
    rows = []
    for n in nodes:
        for t in periods:
            p, q = injections.get((n, t), (0.0, 0.0))
            rows.append([n, t, p, q])
    _write(folder / "NetInjections.csv", ["Node", "forT", "P", "Q"], rows)

    rows = []
    for b in bids:
        missing = [k for k in BID_KEYS if k not in b]
        extra = set(b) - set(BID_KEYS) - set(BID_DEFAULTS)
        if missing or extra:
            raise ValueError(f"bid {b}: missing keys {missing}, unknown keys {sorted(extra)}")
        d = {**BID_DEFAULTS, **b}
        rows.append(
            [
                d["node"],
                d["qtbid"],
                d["qbid"],
                d["seg"],
                d["t"],
                d["lo"],
                d["price"],
                d["hi"],
                d["price"],
                d["xlb"],
                1,
                d["ao"],
                d["nna"],
            ]
        )
    _write(
        folder / "Bids.csv",
        [
            "Node",
            "QtBids",
            "QBid",
            "QBidSeg",
            "forT",
            "QuantityLoQ",
            "PriceLoQ",
            "QuantityHiQ",
            "PriceHiQ",
            "Xlb",
            "Xub",
            "AlphaOmegaSet",
            "NoNewAct",
        ],
        rows,
    )

    if exclusive is not None:
        _write(folder / "ExclusiveQtBids.csv", ["ID", "QtBid"], [list(r) for r in exclusive])
    if ramps is not None:
        _write(
            folder / "RampConstraints.csv",
            ["QtBids", "QBid", "RampConstr", "RCFrom", "RCTo", "RCRealPowerIncr", "RCMin"],
            [[q, b, k + 1, -1, -1, d, m] for k, (q, b, d, m) in enumerate(ramps)],
        )
    if mindur is not None:
        _write(
            folder / "MinDurationPairs.csv", ["QtBids", "QBid1", "QBid2", "Tau", "ForTime"], [list(r) for r in mindur]
        )
    if halfplanes is not None:
        _write(
            folder / "HalfPlanes.csv",
            ["ID", "QtBid", "QPHPFrom", "QPHPTo", "QPHPSlope", "QPHPOffset", "QPHPConstr"],
            [[k + 1, q, -1, -1, m, o, g] for k, (q, m, o, g) in enumerate(halfplanes)],
        )
    if discs is not None:
        _write(
            folder / "QPDisc.csv",
            ["QtBid", "QBids", "QPDCID", "QPDFrom", "QPDTo", "QPDMax"],
            [[q, b, k + 1, -1, -1, r] for k, (q, b, r) in enumerate(discs)],
        )
    return folder


def single_node_case(folder, imbalance_by_period, bids, **kw) -> Path:
    """One transmission node (id 1, reference), no distribution network.

    `imbalance_by_period` maps period -> net injection P of node 1 (MW; negative = the system is short and
    needs upward activation), or is a sequence for periods 1, 2, ...  Remaining keywords go to `write_case`.
    """
    if not isinstance(imbalance_by_period, Mapping):
        imbalance_by_period = {t + 1: v for t, v in enumerate(imbalance_by_period)}
    periods = sorted(imbalance_by_period)
    inj = {(1, t): (float(p), 0.0) for t, p in imbalance_by_period.items()}
    return write_case(folder, periods=periods, t_nodes=[(1, 1)], injections=inj, bids=bids, **kw)


# ------------------------------------------------------------------------------------------------ shared data
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "smartnet"
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def shared_path(name: str) -> Path:
    """A shared SmartNet instance folder (../shared/smartnet/NAME); the test is skipped when it is absent."""
    import pytest

    path = SHARED / name
    if not path.is_dir():
        pytest.skip(f"shared SmartNet data not found at {SHARED}")
    return path


def load_example(name: str):
    """An example script of examples/ as a module (examples are not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
