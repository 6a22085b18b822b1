"""Columnar instance model: network, operator areas, injections, order book."""

from .instance import Areas, Bids, Branches, BranchKind, Buses, Instance, OrderBook, Segments

__all__ = ["Areas", "Bids", "Branches", "BranchKind", "Buses", "Instance", "OrderBook", "Segments"]
