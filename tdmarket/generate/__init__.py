"""Random but realistic variants of SmartNet instances (`make_variant`) and the benchmark preset.

This package works on the CSV files; it imports only `tdmarket.io` (to validate what it writes) and
`tdmarket.errors`.
"""

from .variants import PRESETS, find_smartnet, make_benchmark_system, make_variant, read_manifest

__all__ = ["PRESETS", "find_smartnet", "make_benchmark_system", "make_variant", "read_manifest"]
