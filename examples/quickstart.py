# %% [markdown]
# # tdmarket quick start: an instance from pandas DataFrames, cleared and plotted
#
# A notebook-style script (the `# %%` cells open as a notebook in VS Code, Jupyter with jupytext, or Spyder;
# `python examples/quickstart.py [OUT_DIR]` runs it top to bottom).
#
# We build a tiny system: two transmission (T) nodes and one distribution (D) feeder of three buses hanging
# from T node 2, over two periods, with four balancing orders.  Every table is a pandas DataFrame with the
# columns of one SmartNet file (docs/format.md §2); `tdmarket.io.from_frames` checks them exactly like a
# folder on disk, so an error names the file, editor row and column.

# %%
import sys
from pathlib import Path

import pandas as pd

import tdmarket
from tdmarket.io import from_frames

OUT = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("results/quickstart")
OUT.mkdir(parents=True, exist_ok=True)

# %% [markdown]
# ## The network
# Node ids share one namespace.  T node 1 is the angle reference.  D buses 21–23 form a radial feeder; edge 3
# (T node 2 – D bus 21) is the T–D interface.  Impedances in p.u. on 1 MVA, ratings in MVA, squared voltage
# limits in p.u.² (0.9² … 1.1²).

# %%
general = pd.DataFrame({"StartTime": [1], "EndTime": [2], "baseMVA": [1.0]})
t_nodes = pd.DataFrame({"ID": [1, 2], "RefNode": [1, 0]})
d_nodes = pd.DataFrame({"ID": [21, 22, 23], "Vsqmin": 0.81, "Vsqmax": 1.21, "G": 0.0, "B": 0.0})
edges = pd.DataFrame(
    {
        "ID": [1, 3, 4, 5],
        "NodeFrom": [1, 2, 21, 22],
        "NodeTo": [2, 21, 22, 23],
        "R": [0.0, 0.0, 0.002, 0.003],
        "X": [0.02, 0.0, 0.004, 0.006],
        "B": 0.0,
        "S": [100.0, 0.0, 6.0, 4.0],  # MVA; 0 = unrated (the interface)
    }
)

# %% [markdown]
# ## Net injections (the BRP positions)
# One row per (node, period): positive = net generation (MW, Mvar).  The system is short by 12 MW in period 1
# and 15 MW in period 2; the feeder's load at bus 23 is 3–4 MW.

# %%
injections = pd.DataFrame(
    {
        "Node": [1, 2, 21, 22, 23] * 2,
        "forT": [1] * 5 + [2] * 5,
        "P": [-5.0, -4.0, 0.0, 0.0, -3.0, -6.0, -5.0, 0.0, 0.0, -4.0],
        "Q": [0.0, 0.0, 0.0, 0.0, -0.5, 0.0, 0.0, 0.0, 0.0, -0.6],
    }
)

# %% [markdown]
# ## Orders
# One row per order segment: a QtBid (multi-period order) has one QBid per period, each with segments.  Up
# offers have positive quantities (MW), prices in €/MWh.  A cheap D flexibility at bus 23 competes with a
# dearer T generator at node 1; a T demand response at node 2 is all-or-nothing (`Xlb` = 1).

# %%
orders = [
    # (node, QtBid, QBid, segment, period, quantity MW, price €/MWh, Xlb)
    (1, 1, 11, 111, 1, 20.0, 60.0, 0),
    (1, 1, 12, 121, 2, 20.0, 65.0, 0),
    (2, 2, 21, 211, 1, 5.0, 45.0, 1),
    (2, 2, 22, 221, 2, 5.0, 45.0, 1),
    (23, 3, 31, 311, 1, 6.0, 30.0, 0),
    (23, 3, 32, 321, 2, 6.0, 30.0, 0),
    (22, 4, 41, 411, 1, 2.0, 40.0, 0),
    (22, 4, 42, 421, 2, 2.0, 40.0, 0),
]
rows = pd.DataFrame(orders, columns=["Node", "QtBids", "QBid", "QBidSeg", "forT", "Q", "Price", "Xlb"])
bids = pd.DataFrame(
    {
        "Node": rows.Node,
        "QtBids": rows.QtBids,
        "QBid": rows.QBid,
        "QBidSeg": rows.QBidSeg,
        "forT": rows.forT,
        "QuantityLoQ": 0.0,
        "PriceLoQ": rows.Price,
        "QuantityHiQ": rows.Q,
        "PriceHiQ": rows.Price,
        "Xlb": rows.Xlb,
        "Xub": 1,
    }
)

# %% [markdown]
# ## Build, check and clear
# `from_frames` writes the tables as CSV into a temporary folder and reads them back with every check of
# docs/format.md §4.  `tdmarket.clear` runs a coordination scheme (docs/model.md §7): here the integrated
# clearing (`common`) and the hierarchical TSO–DSO scheme, in this process (`executor="inline"`).

# %%
inst = from_frames(
    {
        "GeneralParam": general,
        "TransmissionNodes": t_nodes,
        "DistributionNodes": d_nodes,
        "Edges": edges,
        "NetInjections": injections,
        "Bids": bids,
    },
    name="quickstart",
)
print(f"{inst.name}: {len(inst.buses.id)} buses, {inst.n_periods} periods, {len(inst.orders.segments)} segments")

common = tdmarket.clear(inst, scheme="common")
hierarchical = tdmarket.clear(inst, scheme="hierarchical", executor="inline")
for res in (common, hierarchical):
    print(f"{res.scheme:>14}: total cost {res.total_cost:,.2f} €")

# %% [markdown]
# ## Results
# Every result carries pandas tables (`segments`, `bids`, `buses`, `interfaces`, `lines`, settlement tables)
# and a JSON-ready summary with its provenance.

# %%
buses = common.tables["buses"]
accepted = common.tables["segments"].query("accepted_mw > 1e-6")[["node", "period", "accepted_mw", "price_eur_mwh"]]
print(accepted.to_string(index=False))
print(common.tables["interfaces"][["area", "period", "export_mw"]].to_string(index=False))

# %% [markdown]
# ## Plot: nodal prices and activated orders
# Left: the price of every node per period (LMP at T, DLMP at D).  Right: the cleared orders per node.

# %%
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

fig, (ax_price, ax_orders) = plt.subplots(1, 2, figsize=(10, 3.8))
for period, part in buses.groupby("period"):
    ax_price.plot(part.node.astype(str), part.price_p_eur_mwh, marker="o", label=f"period {period}")
ax_price.set_xlabel("node")
ax_price.set_ylabel("price (€/MWh)")
ax_price.set_title("Nodal prices (common clearing)")
ax_price.legend()
volume = accepted.pivot_table(index="node", columns="period", values="accepted_mw", aggfunc="sum").fillna(0.0)
volume.plot.bar(ax=ax_orders, rot=0)
ax_orders.set_xlabel("node")
ax_orders.set_ylabel("activated (MW)")
ax_orders.set_title("Activated orders")
fig.tight_layout()
figure = OUT / "quickstart.png"
fig.savefig(figure, dpi=110)
print(f"figure: {figure}")
