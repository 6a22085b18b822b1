"""Scaling benchmark (issue #11): generated systems with 10, 100, 1 000 (and 5 000 with --huge) DSO areas.

Each system is `tdmarket generate --dsos N --periods 4 --layout operators` (~40 D nodes per area, case118 up to
~350 areas, then the larger pandapower cases; docs/generate.md), written once into --cache.  For every system it
clears, each run in its own process:

* hierarchical with the process pool and with Ray (--workers, default 2): the TSO process reads only its folder
  and the index, every DSO agent reads its own folder on its worker;
* centralized on the assembled instance, stopped past --central-limit-s (600 s) or --central-limit-gib (16 GiB).

and prints one row per run: wall time, critical path, peak resident memory of the TSO process (VmHWM) and of the
largest worker, cut rounds, and the wall time projected on 64 and 512 workers.  Linux only (/proc).

Critical path and projection are computed from every operator request the runtime sent (each `Runtime.ask`:
its wall time and every agent's own time): the TSO's serial work is the wall time outside those requests; a
request round on P workers takes max(slowest agent, sum of agent times / P) (longest-processing-time placement);
the critical path is the serial work plus the slowest agent of every round (P = infinity).  Communication is
assumed to cost what it cost here (in-machine pickling), see docs/scaling.md.

    python benchmarks/scaling.py [--sizes 10 100 1000] [--huge] [--workers 2] [--executors process ray]
        [--skip-centralized] [--cache DIR] [--out DIR]
    python benchmarks/scaling.py --from-json A/scaling.json B/scaling.json --out DIR   # merge runs, plot

The table goes to stdout and OUT/scaling.json; the log-log plot to OUT/scaling.png.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROJECT_WORKERS = (64, 512)
PAGE_KIB = 1024


# ------------------------------------------------------------------------------------------------ child side
def run_one(path: str, scheme: str, executor: str, workers: int) -> None:
    """Clear once (in this process) and print a JSON record on the last line of stdout."""
    import resource

    import tdmarket
    from tdmarket.operators import runtime

    asks: list[dict] = []
    ask = runtime.Runtime.ask

    def timed_ask(self, method, requests, stage=None, **kw):
        t0 = time.perf_counter()
        out = ask(self, method, requests, stage=stage, **kw)
        asks.append(
            {
                "method": method,
                "stage": stage,
                "wall_s": time.perf_counter() - t0,
                "agent_s": [r.time_s for r in out.values()],
            }
        )
        return out

    runtime.Runtime.ask = timed_ask
    t0 = time.perf_counter()
    kw = dict(executor=executor, workers=workers) if scheme == "hierarchical" else {}
    res = tdmarket.clear(path, scheme=scheme, incentives=False, **kw)
    wall = time.perf_counter() - t0
    s = res.summary
    record = {
        "wall_s": wall,
        "total_cost_eur": res.total_cost,
        "rounds": s.get("certificate", {}).get("rounds"),
        "stopped_by": s.get("certificate", {}).get("stopped_by"),
        "dispatched_gap": s.get("certificate", {}).get("dispatched_gap"),
        "mip_gap": s.get("mip", {}).get("gap") if scheme != "hierarchical" else s.get("dso_mip_gap_max"),
        "stages": s.get("timings_s", {}).get("stages", {}),
        "asks": asks,
        "self_maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "tso_cpu_s": sum(resource.getrusage(resource.RUSAGE_SELF)[:2]),
    }
    print(json.dumps(record))


# ------------------------------------------------------------------------------------------------ parent side
def _status_kib(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _cpu_s(pid: int) -> float:
    """User + system CPU time of a process so far (s)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def _processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every process."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{d}/cmdline", "rb") as fh:
                cmd = fh.read().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError, ValueError):
            continue
        out[int(d)] = (ppid, cmd)
    return out


def _workers(root: int, executor: str) -> list[int]:
    """The worker processes of the run: descendants of `root` (process pool), or Ray's actor processes."""
    procs = _processes()
    if executor == "ray":
        return [p for p, (_, cmd) in procs.items() if cmd.startswith("ray::_HostActor")]
    children: dict[int, list[int]] = {}
    for p, (pp, _) in procs.items():
        children.setdefault(pp, []).append(p)
    out, todo = [], list(children.get(root, []))
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def measure(path: Path, scheme: str, executor: str, workers: int, limit_s: float, limit_gib: float) -> dict:
    """Run one clearing in a child process; poll its peak memory and its workers'; stop it past the limits."""
    cmd = [sys.executable, __file__, "--run-one", str(path), scheme, executor, str(workers)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    t0 = time.perf_counter()
    # output to files, not pipes: a pipe that nobody reads until the end blocks the child once it is full
    out_file = tempfile.TemporaryFile("w+")
    err_file = tempfile.TemporaryFile("w+")
    proc = subprocess.Popen(cmd, stdout=out_file, stderr=err_file, text=True, env=env, start_new_session=True)
    peak_main = peak_worker = 0
    worker_cpu: dict[int, float] = {}
    stopped = None
    while proc.poll() is None:
        peak_main = max(peak_main, _status_kib(proc.pid, "VmHWM"))
        for w in _workers(proc.pid, executor):
            peak_worker = max(peak_worker, _status_kib(w, "VmHWM"))
            worker_cpu[w] = max(worker_cpu.get(w, 0.0), _cpu_s(w))
        total = _status_kib(proc.pid, "VmRSS") + sum(_status_kib(w, "VmRSS") for w in _workers(proc.pid, executor))
        elapsed = time.perf_counter() - t0
        if elapsed > limit_s or total > limit_gib * 2**20:
            stopped = f"stopped at {elapsed:.0f} s ({_cpu_s(proc.pid):.0f} s CPU), {total / 2**20:.1f} GiB resident"
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.5)
    proc.wait()
    out_file.seek(0)
    err_file.seek(0)
    out, err = out_file.read(), err_file.read()
    record: dict = {"scheme": scheme, "executor": executor if scheme == "hierarchical" else "-", "workers": workers}
    if stopped is not None:
        record.update(stopped=stopped, wall_s=time.perf_counter() - t0)
    elif proc.returncode != 0:
        record.update(stopped=f"failed (exit {proc.returncode}): {err.strip().splitlines()[-1] if err.strip() else ''}")
    else:
        record.update(json.loads(out.strip().splitlines()[-1]))
        peak_main = max(peak_main, int(record["self_maxrss_mib"] * 1024))
    record["peak_tso_mib"] = peak_main / 1024
    record["peak_worker_mib"] = peak_worker / 1024
    record["workers_cpu_s"] = sum(worker_cpu.values())  # sampled every 0.5 s: up to 0.5 s per worker missing
    if "asks" in record:
        record.update(projection(record))
    return record


def projection(record: dict) -> dict:
    """Serial TSO time, critical path and projected wall times from the runtime's requests (module docstring)."""
    asks = record["asks"]
    in_requests = sum(a["wall_s"] for a in asks)
    serial = max(record["wall_s"] - in_requests, 0.0)
    critical = serial + sum(max(a["agent_s"], default=0.0) for a in asks)
    out = {
        "tso_serial_s": serial,
        "critical_path_s": critical,
        "agent_sum_s": sum(sum(a["agent_s"]) for a in asks),
        "requests": len(asks),
    }
    for p in PROJECT_WORKERS:
        out[f"projected_{p}_s"] = serial + sum(max(max(a["agent_s"], default=0.0), sum(a["agent_s"]) / p) for a in asks)
    return out


def system(n: int, cache: Path, seed: int) -> tuple[Path, float]:
    """The generated layout with `n` DSO areas (written once), and the time it took to write it (s)."""
    from tdmarket.generate.system import GenerateOptions, generate_system

    out = cache / f"dsos-{n}-t4-seed{seed}"
    if (out / "operators.csv").is_file():
        return out, float("nan")
    t0 = time.perf_counter()
    generate_system(out, GenerateOptions(dsos=n, periods=4, seed=seed), layout="operators")
    return out, time.perf_counter() - t0


def _fmt(v, spec: str = ".1f") -> str:
    return "-" if v is None else format(v, spec)


def print_row(n: int, r: dict) -> None:
    if "stopped" in r:
        print(f"{n:>6} {r['scheme']:<13} {r['executor']:<8} {r['stopped']}  (peak TSO {r['peak_tso_mib']:.0f} MiB)")
        return
    print(
        f"{n:>6} {r['scheme']:<13} {r['executor']:<8} {r['wall_s']:8.1f} {_fmt(r.get('critical_path_s')):>8} "
        f"{r['peak_tso_mib']:8.0f} {r['peak_worker_mib']:8.0f} {_fmt(r.get('rounds'), 'd') if r.get('rounds') else '-':>6} "
        f"{_fmt(r.get('projected_64_s')):>8} {_fmt(r.get('projected_512_s')):>8} "
        f"{r.get('tso_cpu_s', 0.0):8.1f} {r.get('workers_cpu_s', 0.0):8.1f}  {r['total_cost_eur']:.2f}"
    )


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    series: dict[str, list[tuple[int, float]]] = {}
    for r in rows:
        if "stopped" in r:
            continue
        label = r["scheme"] + (f" ({r['executor']}, {r['workers']} workers)" if r["scheme"] == "hierarchical" else "")
        series.setdefault(label, []).append((r["dsos"], r["wall_s"]))
        if r["scheme"] == "hierarchical" and r["executor"] == "process":
            series.setdefault("hierarchical critical path", []).append((r["dsos"], r["critical_path_s"]))
            for p in PROJECT_WORKERS:
                series.setdefault(f"hierarchical projected, {p} workers", []).append((r["dsos"], r[f"projected_{p}_s"]))
    for label, pts in series.items():
        pts.sort()
        style = "--" if "projected" in label or "critical" in label else "-"
        ax.plot([p[0] for p in pts], [p[1] for p in pts], style, marker="o", label=label)
    for r in rows:
        if "stopped" in r and r["scheme"] == "centralized":
            ax.axvline(r["dsos"], color="grey", lw=0.8, ls=":")
            ax.annotate("centralized stopped", (r["dsos"], ax.get_ylim()[1]), rotation=90, va="top", fontsize=8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("DSO areas (~40 D nodes each, 4 periods)")
    ax.set_ylabel("wall time (s)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--run-one":
        run_one(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000])
    ap.add_argument("--huge", action="store_true", help="add the 5 000-area system")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--executors", nargs="*", default=["process", "ray"], choices=["process", "ray", "inline"])
    ap.add_argument("--skip-centralized", action="store_true")
    ap.add_argument("--central-limit-s", type=float, default=600.0)
    ap.add_argument("--central-limit-gib", type=float, default=16.0)
    ap.add_argument("--hier-limit-s", type=float, default=3600.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "tdmarket-scaling")
    ap.add_argument("--out", type=Path, default=Path("results/scaling"))
    ap.add_argument("--from-json", type=Path, nargs="+", default=None, help="table and plot of earlier runs' JSON")
    args = ap.parse_args()
    sizes = sorted(set(args.sizes + ([5000] if args.huge else [])))
    args.out.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    if args.from_json:
        rows = [r for f in args.from_json for r in json.loads(f.read_text())]
        rows.sort(key=lambda r: (r["dsos"], r["scheme"] != "hierarchical", r["executor"]))
        for r in rows:
            print_row(r["dsos"], r)
        (args.out / "scaling.json").write_text(json.dumps(rows, indent=1))
        plot(rows, args.out / "scaling.png")
        print(f"# table {args.out / 'scaling.json'}, plot {args.out / 'scaling.png'}")
        return
    print(f"# {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start; workers {args.workers}")
    print(
        f"{'DSOs':>6} {'scheme':<13} {'executor':<8} {'wall s':>8} {'crit s':>8} {'TSO MiB':>8} {'wkr MiB':>8} "
        f"{'rounds':>6} {'P=64 s':>8} {'P=512 s':>8} {'TSO cpu':>8} {'wkr cpu':>8}  cost EUR"
    )
    for n in sizes:
        path, t_gen = system(n, args.cache, args.seed)
        print(f"# {n} DSO areas: {path}" + (f" (generated in {t_gen:.0f} s)" if t_gen == t_gen else " (cached)"))
        runs = [("hierarchical", e) for e in args.executors]
        if not args.skip_centralized:
            runs.append(("centralized", "-"))
        for scheme, executor in runs:
            limit_s = args.central_limit_s if scheme == "centralized" else args.hier_limit_s
            r = measure(path, scheme, executor, args.workers, limit_s, args.central_limit_gib)
            r["dsos"] = n
            r["load_average"] = os.getloadavg()[0]
            rows.append(r)
            print_row(n, r)
            (args.out / "scaling.json").write_text(json.dumps(rows, indent=1))
    plot(rows, args.out / "scaling.png")
    print(f"# table {args.out / 'scaling.json'}, plot {args.out / 'scaling.png'}")


if __name__ == "__main__":
    main()
