"""The SmartNet CSV instance format (docs/model.md §2): `parse` (files -> model + provenance) and `write_instance`."""

from .reader import OPTIONAL_FILES, ReadOptions, detect, parse
from .writer import write_instance

__all__ = ["OPTIONAL_FILES", "ReadOptions", "detect", "parse", "write_instance"]
