"""SmartNet CSV files as string tables, for the variant generator.

The generator works on the files, not on the in-memory model: every cell is kept as the text it was read
as, and only the cells a variant changes are re-rendered.  Unchanged values therefore keep their exact
spelling (e.g. `2.16E-07`), and the same operations always give the same bytes.

Reading accepts what the published files contain (docs/model.md §2.2): a UTF-8 byte-order mark, CRLF, CR-only or
LF line endings, empty lines, header-only files.  Writing always gives UTF-8 without a BOM, LF line endings and
a final line terminator.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

# Role of every id column of every file: the namespace its values live in.  Cloning offsets a namespace
# consistently in every file that uses it.
ID_ROLES: dict[str, dict[str, str]] = {
    "TransmissionNodes.csv": {"ID": "node"},
    "DistributionNodes.csv": {"ID": "node"},
    "Edges.csv": {"ID": "edge", "NodeFrom": "node", "NodeTo": "node"},
    "Edges_hard.csv": {"ID": "edge", "NodeFrom": "node", "NodeTo": "node"},
    "NetInjections.csv": {"Node": "node"},
    "Bids.csv": {"Node": "node", "QtBids": "qtbid", "QBid": "qbid", "QBidSeg": "segment"},
    "ExclusiveQtBids.csv": {"ID": "exclusive", "QtBid": "qtbid"},
    "ExclusiveBids.csv": {"ID": "exclusive_bids", "QtBid": "qtbid", "QBid": "qbid"},
    "RampConstraints.csv": {"QtBids": "qtbid", "QBid": "qbid", "RampConstr": "ramp"},
    "MinDurationPairs.csv": {"QtBids": "qtbid", "QBid1": "qbid", "QBid2": "qbid"},
    "HalfPlanes.csv": {"ID": "halfplane", "QtBid": "qtbid"},
    "QPDisc.csv": {"QtBid": "qtbid", "QBids": "qbid", "QPDCID": "disc"},
    "Qt2ForT.csv": {"QtBids": "qtbid"},
    "AlphaOmegaSet.csv": {"QtBids": "qtbid", "QBid": "qbid"},
    "NoNewAct.csv": {"QtBids": "qtbid", "QBid": "qbid"},
    "SubAreas.csv": {"Edge": "edge"},
}

# Files whose rows belong to an order (QtBid column -> the column that names it).
ORDER_FILES: dict[str, str] = {
    "Bids.csv": "QtBids",
    "ExclusiveQtBids.csv": "QtBid",
    "ExclusiveBids.csv": "QtBid",
    "RampConstraints.csv": "QtBids",
    "MinDurationPairs.csv": "QtBids",
    "HalfPlanes.csv": "QtBid",
    "QPDisc.csv": "QtBid",
    "Qt2ForT.csv": "QtBids",
    "AlphaOmegaSet.csv": "QtBids",
    "NoNewAct.csv": "QtBids",
}

EDGE_FILES = ("Edges.csv", "Edges_hard.csv")

# Files with a period column (file -> column), for truncating the horizon.
PERIOD_COLUMNS: dict[str, str] = {
    "NetInjections.csv": "forT",
    "Bids.csv": "forT",
    "ExclusiveBids.csv": "forT",
    "Qt2ForT.csv": "forT",
    "AlphaOmegaSet.csv": "forT",
    "NoNewAct.csv": "forT",
}

KNOWN_FILES = tuple(ID_ROLES) + ("GeneralParam.csv",)


def read_csv(path: Path) -> pd.DataFrame:
    """One SmartNet CSV file as a DataFrame of stripped strings (columns in file order)."""
    text = path.read_bytes().decode("utf-8-sig").replace("\r\n", "\n").replace("\r", "\n")
    lines = [ln for ln in text.split("\n") if ln.strip()]
    if not lines:
        raise ValueError(f"{path}: empty file (no header row)")
    header = [h.strip() for h in lines[0].split(",")]
    rows = [[c.strip() for c in ln.split(",")] for ln in lines[1:]]
    bad = [k for k, r in enumerate(rows) if len(r) != len(header)]
    if bad:
        raise ValueError(f"{path}: row {bad[0] + 2} has {len(rows[bad[0]])} fields, the header {len(header)}")
    if not rows:
        return pd.DataFrame({h: pd.Series([], dtype=object) for h in header})
    return pd.DataFrame(rows, columns=header, dtype=object)


def write_csv(path: Path, df: pd.DataFrame) -> None:
    """Write a string table: UTF-8, no BOM, LF line endings, final newline."""
    lines = [",".join(df.columns)]
    if len(df):
        cells = [df[c].astype(str).to_numpy() for c in df.columns]
        lines.extend(",".join(row) for row in zip(*cells))
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        fh.write("\n".join(lines) + "\n")


def floats(df: pd.DataFrame, column: str) -> np.ndarray:
    return pd.to_numeric(df[column]).to_numpy(dtype=float) if len(df) else np.zeros(0)


def ints(df: pd.DataFrame, column: str) -> np.ndarray:
    return np.round(floats(df, column)).astype(np.int64)


def fmt_ints(values: np.ndarray) -> np.ndarray:
    return np.asarray(values, dtype=np.int64).astype(str).astype(object)


def fmt_floats(values: np.ndarray) -> np.ndarray:
    """Shortest round-trip text; integral values without a decimal point (`5`, not `5.0`)."""
    out = []
    for v in np.asarray(values, dtype=float):
        if not np.isfinite(v):
            raise ValueError(f"cannot write non-finite value {v}")
        out.append(str(int(v)) if v == int(v) and abs(v) < 1e15 else repr(float(v)))
    return np.array(out, dtype=object)
