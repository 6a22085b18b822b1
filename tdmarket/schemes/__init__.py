"""Coordination schemes (MODEL.md §6–§7).  `clear(instance, scheme=...)` dispatches by scheme id."""
from __future__ import annotations

from ..errors import InputError
from .result import ClearingResult

SCHEME_ALIASES = {"centralized": "centralized", "common": "centralized"}
SCHEMES = ("centralized", "common")


def clear(instance, scheme: str = "centralized", **options) -> ClearingResult:
    key = SCHEME_ALIASES.get(scheme)
    if key is None:
        raise InputError(f"unknown scheme {scheme!r} (available: {', '.join(SCHEMES)})")
    if key == "centralized":
        from .centralized import clear_centralized
        return clear_centralized(instance, scheme_name=scheme, **options)
    raise AssertionError(key)


__all__ = ["clear", "ClearingResult", "SCHEMES"]
