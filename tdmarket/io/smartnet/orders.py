"""SmartNet order files: `Bids.csv` (one row per segment), the flag files and the order-condition files.

Parsing only: ids resolved to positions (unknown QBid), periods inside the horizon, the segment rows of one QBid
agreeing on node, QtBid, period and flags, and the format's own conventions (constant price per segment,
`Xub` = 1, no period windows).  Value and cross-table checks are in `tdmarket.model.validate`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ...model.arrays import lookup
from ...model.instance import Bids, OrderBook, Segments
from ...model.provenance import Origin
from ..table import Table

BID_COLUMNS = ("Node", "QtBids", "QBid", "QBidSeg", "forT", "QuantityLoQ", "QuantityHiQ", "PriceLoQ", "PriceHiQ", "Xlb")


def _origin(tab: Table, **columns: str) -> Origin:
    return Origin(files=[tab.label], row=tab.line, columns={role: tab.name(c) for role, c in columns.items()})


class OrdersReader:
    """Order part of the SmartNet reader (mixed into `reader._Reader`, which provides the file access)."""

    if TYPE_CHECKING:  # provided by `reader._Reader`
        origins: dict[str, Origin]

        def table(self, name: str) -> Table: ...
        def optional_table(self, name: str) -> Table | None: ...
        def bus_pos(self, table: Table, column: str) -> np.ndarray: ...
        @staticmethod
        def check(table: Table, bad: np.ndarray, column: str, reason) -> None: ...

    def read_orders(self, periods: np.ndarray) -> OrderBook:
        bd = self.table("Bids.csv")
        bd.require(*BID_COLUMNS)
        seg_id = bd.int("QBidSeg")
        bd.unique_key("QBidSeg", values=[seg_id])
        bus = self.bus_pos(bd, "Node")
        qt, qb, per = bd.int("QtBids"), bd.int("QBid"), bd.int("forT")
        self.in_horizon(bd, per, periods)
        lo, hi = bd.float("QuantityLoQ"), bd.float("QuantityHiQ")
        p_lo, p_hi = bd.float("PriceLoQ"), bd.float("PriceHiQ")
        xlb, xub = bd.float("Xlb"), bd.float("Xub", 1.0)
        self.check(
            bd,
            p_lo != p_hi,
            "PriceHiQ",
            lambda i: (
                f"price varies within the segment ({p_lo[i]} vs {p_hi[i]}); only constant-price segments are supported"
            ),
        )
        self.check(bd, xub != 1, "Xub", lambda i: f"Xub must be 1, got {xub[i]}")

        # bids (QBids): one node, period, QtBid and flag set per QBid
        uq, first, inv = np.unique(qb, return_index=True, return_inverse=True)
        for name, arr in (("Node", bus), ("QtBids", qt), ("forT", per)):
            self.check(
                bd,
                arr != arr[first][inv],
                name,
                lambda i, name=name: f"QBid {qb[i]} has segments with different {name}",
            )
        ao = self.flags(bd, "AlphaOmegaSet", qb, first, inv, qt, per)
        nna = self.flags(bd, "NoNewAct", qb, first, inv, qt, per)
        bids = Bids(
            id=uq, qtbid=qt[first], bus=bus[first], period=per[first] - periods[0], alpha_omega=ao, no_new_act=nna
        )
        segments = Segments(id=seg_id, bid=inv.astype(np.int64), lo=lo, hi=hi, price=p_lo, xlb=xlb)
        self.origins["segments"] = _origin(bd, hi="QuantityHiQ", xlb="Xlb", price="PriceLoQ")
        nna_column = bd.name("NoNewAct") if bd.has("NoNewAct") else bd.name("QBid")
        self.origins["bids"] = Origin(
            [bd.label], bd.line[first], columns=dict(qtbid=bd.name("QtBids"), no_new_act=nna_column)
        )
        return self.read_conditions(bids, periods, segments)

    def in_horizon(self, tab: Table, per: np.ndarray, periods: np.ndarray) -> None:
        self.check(
            tab,
            (per < periods[0]) | (per > periods[-1]),
            "forT",
            lambda i: f"period {per[i]} outside the horizon {periods[0]}..{periods[-1]}",
        )

    def flags(self, bd: Table, name: str, qb, first, inv, qt, per) -> np.ndarray:
        """A QBid flag from the `Bids.csv` column if present (equal on all segments), else from its file."""
        if not bd.has(name):
            return self.flag_file(f"{name}.csv", qb[first], qt[first], per[first])
        seg = bd.flag(name)
        self.check(bd, seg != seg[first][inv], name, lambda i: f"flag varies within QBid {qb[i]}")
        return seg[first]

    def flag_file(self, name: str, qbids: np.ndarray, qtbids: np.ndarray, per: np.ndarray) -> np.ndarray:
        """Flags from a file of (QtBids, QBid) rows; its rows are recorded (origin `flag:<name>`, one editor row
        per QBid, 0 where unflagged) so that a check on a flag blames this file, not `Bids.csv`."""
        tab = self.optional_table(name)
        flags = np.zeros(len(qbids), bool)
        if tab is None or len(tab) == 0:
            return flags
        tab.require("QtBids", "QBid")
        q = tab.int("QBid")
        pos, found = lookup(qbids, q)
        self.check(tab, ~found, "QBid", lambda i: f"unknown QBid {q[i]}")
        qt = tab.int("QtBids")
        self.check(tab, qtbids[pos] != qt, "QtBids", lambda i: f"QBid {q[i]} belongs to QtBid {qtbids[pos[i]]}")
        flags[pos] = True
        rows = np.zeros(len(qbids), np.int64)
        rows[pos] = tab.line
        self.origins[f"flag:{name.removesuffix('.csv')}"] = Origin(
            [tab.label], rows, columns={"flag": tab.name("QBid")}
        )
        return flags

    def bid_ref(
        self,
        tab: Table,
        qt_col: str,
        qb_col: str,
        bids: Bids,
        period_col: str | None = None,
        periods: np.ndarray | None = None,
    ) -> np.ndarray:
        """Bid positions for a (QtBid, QBid) reference, validated."""
        qb, qt = tab.int(qb_col), tab.int(qt_col)
        pos, found = lookup(bids.id, qb)
        self.check(tab, ~found, qb_col, lambda i: f"unknown QBid {qb[i]}")
        self.check(
            tab,
            bids.qtbid[pos] != qt,
            qb_col,
            lambda i: f"QBid {qb[i]} belongs to QtBid {bids.qtbid[pos[i]]}, not {qt[i]}",
        )
        if period_col is not None:
            assert periods is not None  # given with period_col
            t = tab.int(period_col)
            self.check(
                tab,
                bids.period[pos] + periods[0] != t,
                period_col,
                lambda i: f"QBid {qb[i]} is in period {bids.period[pos[i]] + periods[0]}, not {t[i]}",
            )
        return pos

    def no_window(self, tab: Table, *cols: str) -> None:
        for c in cols:
            if tab.has(c):
                v = tab.int(c)
                self.check(tab, v != -1, c, lambda i: f"period windows are not supported ({c} must be -1, got {v[i]})")

    def optional(self, name: str, *columns: str) -> Table | None:
        """An optional condition file with rows (None if absent or header-only), its columns required."""
        tab = self.optional_table(name)
        if tab is None or len(tab) == 0:
            return None
        tab.require(*columns)
        return tab

    def read_conditions(self, bids: Bids, periods: np.ndarray, segments: Segments) -> OrderBook:
        book = OrderBook.without_conditions(segments, bids)
        ex = self.optional("ExclusiveQtBids.csv", "ID", "QtBid")
        if ex is not None:
            g, q = ex.int("ID"), ex.int("QtBid")
            ex.unique_key("ID", "QtBid", values=[g, q])
            book.exclusive_group, book.exclusive_qtbid = g, q
            self.origins["exclusive"] = _origin(ex, qtbid="QtBid")
        rc = self.optional("RampConstraints.csv", "QtBids", "QBid", "RCRealPowerIncr", "RCMin")
        if rc is not None:
            self.no_window(rc, "RCFrom", "RCTo")
            book.ramp_bid = self.bid_ref(rc, "QtBids", "QBid", bids)
            book.ramp_delta, book.ramp_is_min = rc.float("RCRealPowerIncr"), rc.flag("RCMin")
            book.ramp_id = rc.int("RampConstr", 0)
            self.origins["ramp"] = _origin(rc)
        md = self.optional("MinDurationPairs.csv", "QtBids", "QBid1", "QBid2", "Tau", "ForTime")
        if md is not None:
            book.mindur_bid1 = self.bid_ref(md, "QtBids", "QBid1", bids, "Tau", periods)
            book.mindur_bid2 = self.bid_ref(md, "QtBids", "QBid2", bids, "ForTime", periods)
            self.origins["mindur"] = _origin(md, bid1="QBid1", bid2="QBid2", period2="ForTime")
        hp = self.optional("HalfPlanes.csv", "QtBid", "QPHPSlope", "QPHPOffset", "QPHPConstr")
        if hp is not None:
            self.no_window(hp, "QPHPFrom", "QPHPTo")
            book.hp_qtbid = hp.int("QtBid")
            book.hp_slope, book.hp_offset, book.hp_geq = (
                hp.float("QPHPSlope"),
                hp.float("QPHPOffset"),
                hp.flag("QPHPConstr"),
            )
            self.origins["half_planes"] = _origin(hp, qtbid="QtBid")
        dc = self.optional("QPDisc.csv", "QtBid", "QBids", "QPDMax")
        if dc is not None:
            self.no_window(dc, "QPDFrom", "QPDTo")
            book.disc_bid = self.bid_ref(dc, "QtBid", "QBids", bids)
            book.disc_radius, book.disc_group = dc.float("QPDMax"), dc.int("QPDCID", 0)
            self.origins["discs"] = _origin(dc, bid="QBids", radius="QPDMax")
        return book
