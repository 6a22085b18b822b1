"""Nested decomposition (docs/model.md §6): the mathematics of the hierarchical TSO–DSO exchange.

* `offers`     — what a child area offers its parent (residual supply curves and cuts) and the one vectorised
                 function that writes curve and cut rows into a parent's program.
* `area_model` — C_d(x̂): an area's cost as a function of its exchange, re-solved parametrically.
* `curves`     — per-period residual supply curves with a certified error.
* `master`     — the parent's master LP of the cut exchange, kept warm between rounds, with a trust region.
* `stopping`   — stopping rules as small objects (gap, stall, iteration and time limits).
* `exchange`   — the cut-exchange loop (nested Benders): LP phase, MILP phase, best point and fallbacks.

Nothing here knows about processes or messages: the operators' runtime (`tdmarket.operators`) runs it.
"""
