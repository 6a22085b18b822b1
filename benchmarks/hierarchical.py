"""Benchmark: hierarchical TSO–DSO clearing on italy-652 (binaries on), end to end.

Prints wall time (target <= 15 s on 2 cores), time per stage, critical path (slowest DSO per stage) vs wall
time, the cost gap to the centralized clearing, parallel efficiency of 1 vs 2 workers, and the Ray vs process
overhead when Ray is installed.

    python benchmarks/hierarchical.py [--instance PATH] [--relax] [--skip-scaling] [--skip-ray]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from tdmarket.api import clear, gap_to
from tdmarket.io import read

DEFAULT = Path(__file__).resolve().parents[1].parent / "shared" / "smartnet" / "italy-652"


def run(inst, relax, **kw):
    t0 = time.perf_counter()
    res = clear(inst, scheme="hierarchical", relax=relax, **kw)
    return res, time.perf_counter() - t0


def stages(res) -> str:
    tm = res.summary["timings_s"]
    parts = [
        f"{k} {v['wall_s']:.2f} s (slowest operator {v['slowest_operator_s']:.2f} s)" for k, v in tm["stages"].items()
    ]
    return "\n    ".join(parts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--instance", default=str(DEFAULT))
    ap.add_argument("--relax", action="store_true")
    ap.add_argument("--skip-scaling", action="store_true")
    ap.add_argument("--skip-ray", action="store_true")
    args = ap.parse_args()
    t0 = time.perf_counter()
    inst = read(args.instance)
    print(f"instance {inst.name}: {inst.n_areas - 1} DSO areas, load {time.perf_counter() - t0:.2f} s")
    res, wall2 = run(inst, args.relax, executor="process", workers=2)
    s = res.summary
    print(
        f"process, 2 workers: wall {wall2:.2f} s (target <= 15 s), critical path {s['timings_s']['critical_path']:.2f} s"
    )
    print(f"    {stages(res)}")
    print(
        f"  curve evaluations {s['curves']['evaluations']}, cut rounds {max(len(s['iterations']) - 1, 0)}, "
        f"messages {s['communication']['messages']} ({s['communication']['bytes']} bytes)"
    )
    t1 = time.perf_counter()
    ref = clear(inst, scheme="centralized", relax=args.relax)
    print(
        f"centralized: {ref.total_cost:.6f} EUR in {time.perf_counter() - t1:.2f} s; hierarchical "
        f"{res.total_cost:.6f} EUR; gap {100 * gap_to(res, ref):.5f} % (target <= 0.1 %)"
    )
    if not args.skip_scaling:
        _, wall1 = run(inst, args.relax, executor="process", workers=1)
        print(
            f"process, 1 worker: wall {wall1:.2f} s; parallel efficiency 1 -> 2 workers "
            f"{wall1 / (2 * wall2):.2f} (speed-up {wall1 / wall2:.2f}x)"
        )
    if not args.skip_ray:
        try:
            import ray  # noqa: F401
        except ImportError:
            print("ray: not installed (pip install 'tdmarket[ray]'): overhead not measured")
        else:
            _, wall_ray = run(inst, args.relax, executor="ray", workers=2)
            print(f"ray, 2 workers: wall {wall_ray:.2f} s; overhead vs process {wall_ray - wall2:+.2f} s")


if __name__ == "__main__":
    main()
