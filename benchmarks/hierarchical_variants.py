"""Benchmark: the hierarchical scheme against centralized on the property test's generated variants.

Each seed draws the hard variant of the built-in example and the scheme options that
`tests/test_hierarchical_property.py` uses (`tdmarket.generate.variants.property_test_options`: more DSO areas,
all-or-nothing and start/stop orders, negative prices, tight interfaces and D lines), clears it centralized
(MIP gap 1e-6) and hierarchical (with the integer repair, and, unless --no-baseline, without it), and prints per
seed and in summary: the gap to centralized (target <= 1e-4 on every instance), the certified gap of the
dispatched point, how the integer repair ended, and the wall times.  `--family dense` draws a harder family
(`dense_test_options`: 3-6 copies of each DSO, mostly all-or-nothing orders and start/stop blocks, tight
interfaces) with the scheme's default options.  The test asserts only what must hold on
every instance (a valid bound, a cost within the certified gap); this script shows how close the scheme gets.

    python benchmarks/hierarchical_variants.py [--seeds 0-49] [--no-baseline] [--family property|dense]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import numpy as np

import tdmarket
from tdmarket.examples import builtin_path
from tdmarket.generate.variants import TEST_FAMILIES, make_variant


def seeds_from(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out += list(range(int(lo), int(hi or lo) + 1))
    return out


def clear_variant(seed: int, folder: Path, baseline: bool, family: str = "property") -> dict:
    variant, scheme = TEST_FAMILIES[family](seed)
    inst = tdmarket.load(make_variant(builtin_path(), folder / f"v{seed}", seed=seed, **variant))
    t = time.perf_counter()
    central = tdmarket.clear(inst, scheme="centralized", mip_gap=1e-6, incentives=False)
    row = {"seed": seed, "central_s": time.perf_counter() - t, "areas": inst.n_areas - 1}
    scale = max(1.0, abs(central.total_cost))
    for label, extra in [("repair", {})] + ([("no_repair", {"repair_rounds": 0})] if baseline else []):
        t = time.perf_counter()
        res = tdmarket.clear(inst, scheme="hierarchical", executor="inline", incentives=False, **scheme, **extra)
        row[f"{label}_s"] = time.perf_counter() - t
        row[f"{label}_gap"] = (res.total_cost - central.total_cost) / scale
        row[f"{label}_certified"] = res.summary["certificate"]["dispatched_gap"]
        repair = res.summary.get("integer_repair") or {}
        row[f"{label}_rounds"] = len(repair.get("rounds", []))
    return row


def summary(name: str, values: list[float]) -> str:
    v = np.asarray(values, float)
    counts = ", ".join(f"{(v <= tol).sum()} within {tol:g}" for tol in (1e-4, 1e-3, 1e-2))
    return f"{name}: median {np.median(v):.2e}, worst {v.max():.2e}; {counts} (of {len(v)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0-49", help="seeds, e.g. 0-49 or 3,7,10-12 (default 0-49)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the runs without integer repair")
    parser.add_argument(
        "--family",
        choices=sorted(TEST_FAMILIES),
        default="property",
        help="property: the property test's variants (default); dense: many copies of each DSO, mostly "
        "all-or-nothing orders, many start/stop blocks, tight interfaces (generate.variants.dense_test_options)",
    )
    args = parser.parse_args()
    logging.getLogger("tdmarket").setLevel(logging.ERROR)  # the per-run gap warnings are the figures below
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds_from(args.seeds):
            row = clear_variant(seed, Path(tmp), not args.no_baseline, args.family)
            rows.append(row)
            text = (
                f"seed {seed:3d} ({row['areas']} DSO areas): gap to centralized {row['repair_gap']:+.2e}, certified "
                f"{row['repair_certified']:.2e}, repair rounds {row['repair_rounds']}, {row['repair_s']:.1f} s "
                f"(centralized {row['central_s']:.1f} s)"
            )
            if "no_repair_gap" in row:
                text += f"; without repair {row['no_repair_gap']:+.2e}, certified {row['no_repair_certified']:.2e}"
            print(text, flush=True)
    print()
    print(summary("gap to centralized", [r["repair_gap"] for r in rows]))
    print(summary("certified gap", [r["repair_certified"] for r in rows]))
    if rows and "no_repair_gap" in rows[0]:
        print(summary("without repair: gap to centralized", [r["no_repair_gap"] for r in rows]))
        print(summary("without repair: certified gap", [r["no_repair_certified"] for r in rows]))
    print(
        f"wall: hierarchical {sum(r['repair_s'] for r in rows):.0f} s, centralized "
        f"{sum(r['central_s'] for r in rows):.0f} s over {len(rows)} variants"
    )


if __name__ == "__main__":
    main()
