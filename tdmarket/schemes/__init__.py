"""Coordination schemes (docs/model.md §6–§7): the mathematics of each scheme.

The entry point that dispatches by scheme id is `tdmarket.clear` (`tdmarket/api.py`), because the decentralised
schemes run through the operator agents of `tdmarket.operators`.
"""

from .result import ClearingResult

__all__ = ["ClearingResult"]
