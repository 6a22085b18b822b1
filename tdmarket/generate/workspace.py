"""The working state of a variant: the base's tables in memory, their topology and fresh-id strides, row
copying with id remapping, and the atomic write of the result (used by the stages of `variants`)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from ..errors import InputError
from .tables import EDGE_FILES, ID_ROLES, KNOWN_FILES, ORDER_FILES, fmt_ints, ints, read_csv, write_csv

FLAG_FILES = {"AlphaOmegaSet": "AlphaOmegaSet.csv", "NoNewAct": "NoNewAct.csv"}
MANIFEST = "variant.json"


def tidy(values) -> np.ndarray:
    """Round computed floats to 12 significant digits (no 0.30000000000000004 in the files)."""
    return np.array([float(f"{v:.12g}") for v in np.asarray(values, dtype=float)])


@dataclass
class Topology:
    """Node ids and DSO areas of the current tables (an area: the D nodes behind one T–D interface edge)."""

    t_ids: np.ndarray  # sorted T node ids
    ref_id: int  # first reference node
    d_ids: np.ndarray  # sorted D node ids
    d_area: np.ndarray  # area index of each D node (aligned with d_ids)
    roots: np.ndarray  # root D node id per area (areas sorted by root id)
    hosts: np.ndarray  # host T node id per area

    def area_of(self, node_ids: np.ndarray) -> np.ndarray:
        """Area index of each node id; -1 for T nodes (and unknown ids)."""
        node_ids = np.asarray(node_ids, dtype=np.int64)
        pos = np.clip(np.searchsorted(self.d_ids, node_ids), 0, max(len(self.d_ids) - 1, 0))
        found = (self.d_ids[pos] == node_ids) if len(self.d_ids) else np.zeros(len(node_ids), bool)
        return np.where(found, self.d_area[pos] if len(self.d_ids) else -1, -1)

    def nodes_of(self, area: int) -> np.ndarray:
        return self.d_ids[self.d_area == area]


class Workspace:
    """The tables of the variant being made (file name -> DataFrame of strings), its random generator, and
    what the stages record for the manifest (`clones`, `notes`)."""

    def __init__(self, base: Path, edges_file: str, seed: int):
        self.base = base
        self.edges_file = edges_file
        self.rng = np.random.default_rng(seed)
        self.t: dict[str, pd.DataFrame] = {}
        for name in KNOWN_FILES:
            if (base / name).is_file():
                self.t[name] = read_csv(base / name)
        self.flag_style: dict[str, list[str] | None] = {}  # flag -> header of its file, None if a Bids column
        self.clones: list[dict] = []
        self.notes: list[str] = []
        self._pending: dict[str, list[pd.DataFrame]] = {}
        self._normalise_flags()

    # ------------------------------------------------------------------ flags
    def _normalise_flags(self) -> None:
        """Keep AlphaOmega/NoNewAct as Bids columns while working; `denormalise` restores the base's layout."""
        bids = self.t["Bids.csv"]
        qb = ints(bids, "QBid")
        for col, fname in FLAG_FILES.items():
            if col in bids.columns:
                self.flag_style[col] = None
                continue
            flag = np.zeros(len(bids), bool)
            tab = self.t.pop(fname, None)
            header = list(tab.columns) if tab is not None else None
            if tab is not None and len(tab):
                flag = np.isin(qb, ints(tab, "QBid"))
            bids[col] = np.where(flag, "1", "0").astype(object)
            self.flag_style[col] = header

    def denormalise(self) -> dict[str, pd.DataFrame]:
        out = dict(self.t)
        bids = out["Bids.csv"]
        for col, header in self.flag_style.items():
            if header is None:
                continue
            flagged = bids[bids[col].astype(int) == 1].drop_duplicates("QBid")
            rows = {h: np.full(len(flagged), "0", dtype=object) for h in header}
            for h in ("QtBids", "QBid", "forT"):
                if h in rows:
                    rows[h] = flagged[h].to_numpy(dtype=object)
            out[FLAG_FILES[col]] = pd.DataFrame(rows, columns=header)
            bids = bids.drop(columns=[col])
        out["Bids.csv"] = bids
        return out

    def topology(self) -> Topology:
        tn, dn, ed = self.t["TransmissionNodes.csv"], self.t["DistributionNodes.csv"], self.t[self.edges_file]
        t_ids = np.sort(ints(tn, "ID"))
        ref = ints(tn, "ID")[ints(tn, "RefNode") == 1] if "RefNode" in tn.columns else ints(tn, "ID")[:1]
        d_ids = np.sort(ints(dn, "ID"))
        f, to = ints(ed, "NodeFrom"), ints(ed, "NodeTo")
        fd, td = np.isin(f, d_ids), np.isin(to, d_ids)
        n = len(d_ids)
        dd = fd & td
        fp, tp = np.searchsorted(d_ids, f[dd]), np.searchsorted(d_ids, to[dd])
        _, comp = connected_components(sp.coo_matrix((np.ones(len(fp)), (fp, tp)), shape=(n, n)), directed=False)
        iface = fd ^ td
        d_end = np.where(fd[iface], f[iface], to[iface])
        t_end = np.where(fd[iface], to[iface], f[iface])
        order = np.argsort(d_end, kind="stable")
        d_end, t_end = d_end[order], t_end[order]
        area_of_comp = np.full(max(n, 1), -1)
        area_of_comp[comp[np.searchsorted(d_ids, d_end)]] = np.arange(len(d_end))
        return Topology(
            t_ids=t_ids,
            ref_id=int(ref[0]) if len(ref) else int(t_ids[0]),
            d_ids=d_ids,
            d_area=area_of_comp[comp] if n else np.zeros(0, np.int64),
            roots=d_end,
            hosts=t_end,
        )

    def strides(self) -> dict[str, int]:
        """Per id namespace: 10^(digits of the largest id in use)."""
        largest: dict[str, int] = {}
        for name, roles in ID_ROLES.items():
            df = self.t.get(name)
            if df is None or not len(df):
                continue
            for col, role in roles.items():
                if col in df.columns:
                    largest[role] = max(largest.get(role, 0), int(np.abs(ints(df, col)).max()))
        namespaces = {r for roles in ID_ROLES.values() for r in roles.values()}
        return {r: 10 ** max(len(str(largest.get(r, 0))), 1) for r in namespaces}

    def row_qtbids(self, name: str) -> np.ndarray:
        return ints(self.t[name], ORDER_FILES[name])

    def copy_rows(self, masks: dict[str, np.ndarray], offset: dict[str, int], node_map, suffix: str) -> None:
        """Queue copies of the masked rows of each file, with every id column remapped (`flush` appends them).

        The masks refer to the tables as they were at the last `flush`.  `offset[role]` is added to the
        non-node id columns, `node_map(values)` maps node ids, and `suffix` is appended to name columns
        (DecNet labels at D ends, sub-area names)."""
        d_ids = ints(self.t["DistributionNodes.csv"], "ID")
        for name, mask in masks.items():
            df = self.t[name]
            if not mask.any():
                continue
            sub = df[mask].copy()
            for col, role in ID_ROLES.get(name, {}).items():
                if col not in sub.columns:
                    continue
                v = ints(sub, col)
                sub[col] = fmt_ints(node_map(v) if role == "node" else v + offset[role])
            if name in EDGE_FILES:
                for end, label in (("NodeFrom", "DecNetFrom"), ("NodeTo", "DecNetTo")):
                    if label in sub.columns:
                        is_name = pd.to_numeric(sub[label], errors="coerce").isna().to_numpy()
                        at_d = np.isin(ints(df[mask], end), d_ids)
                        sub.loc[is_name & at_d, label] = sub.loc[is_name & at_d, label] + suffix
            if name == "SubAreas.csv" and "Area" in sub.columns:
                named = sub["Area"].astype(str) != ""
                sub.loc[named, "Area"] = sub.loc[named, "Area"] + suffix
            self._pending.setdefault(name, []).append(sub)

    def flush(self) -> None:
        """Append the queued copies after the original rows (original row positions do not change)."""
        for name, parts in self._pending.items():
            self.t[name] = pd.concat([self.t[name], *parts], ignore_index=True)
        self._pending = {}

    def bid_frame(self) -> pd.DataFrame:
        b = self.t["Bids.csv"]
        return pd.DataFrame(
            {
                "qbid": ints(b, "QBid"),
                "qtbid": ints(b, "QtBids"),
                "per": ints(b, "forT"),
                "ao": ints(b, "AlphaOmegaSet") == 1,
            }
        ).drop_duplicates("qbid")

    def write(self, out: Path, manifest: dict, overwrite: bool) -> None:
        tables = self.denormalise()
        check_output(out, overwrite)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
        try:
            for name in sorted(tables):
                write_csv(tmp / name, tables[name])
            text = json.dumps(manifest, indent=1, sort_keys=True, ensure_ascii=False)
            (tmp / MANIFEST).write_text(text + "\n", encoding="utf-8")
            os.chmod(tmp, 0o755)
            if out.exists():
                shutil.rmtree(out)
            os.replace(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


def check_output(out: Path, overwrite: bool) -> None:
    """`out` must be new or empty; with `overwrite`, it may also be an instance folder (it is replaced)."""
    if not out.exists():
        return
    if not out.is_dir():
        raise InputError(f"output {out} exists and is not a folder")
    if not any(out.iterdir()):
        return
    if not overwrite:
        raise InputError(f"output folder {out} exists and is not empty (use --overwrite)")
    if not ((out / MANIFEST).is_file() or (out / "GeneralParam.csv").is_file()):
        raise InputError(f"refusing to overwrite {out}: it is not an instance folder")
