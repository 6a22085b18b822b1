"""Recipe: a federation of the shared SmartNet instances (docs/federation.md §4), built and compared.

    python benchmarks/federation_italy.py WORKDIR [--schemes integrated,hierarchical,dso-unaware,isolated]

1. `italy-693` has periods 1–4 and `italy-652` periods 2–4: a federation needs horizons of one length, so the
   first member is `tdmarket variant ../shared/smartnet/italy-693 WORKDIR/italy-693 --seed 0 --periods 3`
   (its first three periods, nothing else changed); its periods 1–3 are aligned by position with 652's 2–4.
2. `italy-652` is used in place (Members.csv points at ../shared/smartnet/italy-652).
3. Two synthetic interconnectors join the transmission nodes with the largest T order volume:
   693/1743 → 652/4575 and 693/1537 → 652/3074, 30 MW each way in every period.
4. `tdmarket compare WORKDIR/federation --relax --executor inline` clears the four platform schemes.

Prints the comparison (and writes WORKDIR/federation.html).  Figures measured with it are in docs/federation.md;
they are timings of a shared 2-core machine, not benchmarks for claims.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "smartnet"
INTERCONNECTORS = [(1, 1743, 4575, 30.0, 30.0), (2, 1537, 3074, 30.0, 30.0)]


def build(work: Path) -> Path:
    """The federation folder WORKDIR/federation (members: the 3-period variant of 693, and 652 in place)."""
    work.mkdir(parents=True, exist_ok=True)
    member = work / "italy-693"
    if not (member / "Bids.csv").is_file():
        subprocess.run(
            [
                sys.executable,
                "-m",
                "tdmarket",
                "variant",
                str(SHARED / "italy-693"),
                str(member),
                "--seed",
                "0",
                "--periods",
                "3",
                "--overwrite",
            ],
            check=True,
        )
    fed = work / "federation"
    fed.mkdir(exist_ok=True)
    (fed / "Members.csv").write_text(
        f"Member,Path\nitaly-693,{member.resolve()}\nitaly-652,{(SHARED / 'italy-652').resolve()}\n"
    )
    rows = ["ID,FromMember,FromNode,ToMember,ToNode,Period,ATCForward,ATCBackward"]
    for k, a, b, fwd, bwd in INTERCONNECTORS:
        rows += [f"{k},italy-693,{a},italy-652,{b},{t},{fwd:g},{bwd:g}" for t in (1, 2, 3)]
    (fed / "Interconnectors.csv").write_text("\n".join(rows) + "\n")
    return fed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("work", type=Path)
    ap.add_argument("--schemes", default="integrated,hierarchical,dso-unaware,isolated")
    ap.add_argument("--executor", default="inline", help="executor of the members' DSO work (inline, process)")
    args = ap.parse_args()
    fed = build(args.work)
    cmd = [
        sys.executable,
        "-m",
        "tdmarket",
        "compare",
        str(fed),
        "--relax",
        "--executor",
        args.executor,
        "--quiet",
        "--schemes",
        args.schemes,
        "--report",
        str(args.work / "federation.html"),
        "--out",
        str(args.work / "out"),
    ]
    return subprocess.run(cmd).returncode


if __name__ == "__main__":
    raise SystemExit(main())
