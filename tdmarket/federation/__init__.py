"""The pan-European level: TSOs (members of a federation) under a balancing platform (docs/model.md §12).

`registry.py` holds the platform-level schemes (integrated, hierarchical, dso-unaware, isolated); `clear_federation`
runs one of them on a `Federation` (`tdmarket.io.federation.read_federation`) and returns a `FederationResult`.
"""

from __future__ import annotations

from .registry import PLATFORM_SCHEMES, clear_federation, platform_scheme_names
from .result import FederationResult

__all__ = ["PLATFORM_SCHEMES", "FederationResult", "clear_federation", "platform_scheme_names"]
