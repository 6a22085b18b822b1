"""Market economics of a cleared dispatch (docs/model.md §8), independent of the coordination scheme.

* `participants`  — participants: QtBids linked by exclusive groups
* `opportunity`   — lost opportunity cost (best response) per participant
* `settlement`    — pay-as-clear settlement, operator surplus, interface payments, zero-sum check
* `cost_sharing`  — TSO–DSO sharing of the activation cost
* `incentives`    — `attach_incentives`, which fills a result's tables and summary

Imports run one way: `incentives` uses `opportunity` and `settlement`, both use `participants`; nothing here
imports a scheme, and no scheme names appear here (the caller passes `settles_at_interface`).
"""
