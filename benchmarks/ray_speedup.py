"""Wall time of the same runs on the serial backend and on Ray with 2 workers, and what a cluster would take.

Runs the same 8 Table 1 runs (``--tasks`` x ``--methods``, seed 0, ``--iterations`` iterations,
``--n`` materials) twice, each side in a fresh Python process timed from launch to exit (imports,
Ray's start and shutdown included): once with ``agents.backends.SerialBackend(torch_threads=1)``
and once on a local Ray instance of ``--workers`` CPUs with one CPU (and one torch thread) per
run, like for like. Checks that both sides give identical metrics and materials, then estimates,
from the per-run times of the committed full Table 1 (``benchmarks/results/table1_runs``), the
wall time of the full Table 1 and of a 5 x 5 setting sweep on a cluster of ``--cluster-cpus``
CPUs (longest-processing-time-first list scheduling, plus the measured start-up cost).

Writes ``benchmarks/results/ray_speedup.md`` and ``.csv`` (``--out`` elsewhere). Needs the
``ray`` extra (``pip install -e ".[ray]"``) and an otherwise idle machine.

Usage:
    python benchmarks/ray_speedup.py [--iterations 100] [--n 300] [--workers 2] [--cluster-cpus 100]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
TASKS = ("formation_energy", "bulk_modulus", "shear_modulus", "sintering_temperature")
METHODS = ("paper_dqn", "constrained_dqn")


def _specs(args: argparse.Namespace, out: Path):
    from agents.backends import RunSpec
    from agents.runs import METHODS as ALL_METHODS
    from agents.runs import TASKS_BY_KEY

    return [RunSpec(TASKS_BY_KEY[t], ALL_METHODS[m], 0, n=args.n, iterations=args.iterations,
                    directory=str(out / t / m)) for t in args.tasks for m in args.methods]


def side(args: argparse.Namespace) -> int:
    """One side of the comparison (run in its own process): the runs, then their results as JSON."""
    from agents.backends import RayBackend, SerialBackend, execute_runs

    out = Path(args.side_out)
    backend = SerialBackend(torch_threads=1) if args.side == "serial" else RayBackend(num_cpus=args.workers)
    t0 = time.perf_counter()
    results = execute_runs(_specs(args, out), backend, progress=False)
    runs_wall = time.perf_counter() - t0
    Path(args.side_json).write_text(json.dumps({"runs_wall": runs_wall, "results": results}))
    return 0


def _measure(args: argparse.Namespace, name: str, folder: Path) -> dict:
    command = [sys.executable, __file__, "--side", name, "--side-out", str(folder / name),
               "--side-json", str(folder / f"{name}.json"), "--iterations", str(args.iterations), "--n", str(args.n),
               "--workers", str(args.workers), "--tasks", *args.tasks, "--methods", *args.methods]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", NUMBA_NUM_THREADS="1")  # one core per run
    t0 = time.perf_counter()
    subprocess.run(command, check=True, env=env)
    wall = time.perf_counter() - t0
    data = json.loads((folder / f"{name}.json").read_text())
    data["wall"] = wall
    return data


def lpt_makespan(durations: list[float], workers: int) -> float:
    """Makespan of longest-processing-time-first list scheduling of ``durations`` on ``workers``.

    Example:
        >>> lpt_makespan([3.0, 3.0, 2.0, 2.0, 2.0], 2)
        7.0
    """
    import heapq

    loads = [0.0] * workers
    for d in sorted(durations, reverse=True):
        heapq.heapreplace(loads, loads[0] + d)  # the least-loaded worker takes the next longest run
    return max(loads)


def _table1_run_seconds() -> dict[str, list[float]]:
    by_method: dict[str, list[float]] = {}
    for path in sorted((RESULTS / "table1_runs").glob("*/*/*/result.json")):
        r = json.loads(path.read_text())
        if r["method"] == "paper_published":
            continue
        by_method.setdefault(r["method"], []).append(r["train_seconds"] + r["generate_seconds"]
                                                     + r["evaluate_seconds"])
    return by_method


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=100, help="training iterations per run (default 100)")
    parser.add_argument("--n", type=int, default=300, help="materials generated per run (default 300)")
    parser.add_argument("--workers", type=int, default=2, help="CPUs of the local Ray instance (default 2)")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), help="tasks (default: the four single-property)")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), help="methods (default paper_dqn "
                        "constrained_dqn)")
    parser.add_argument("--cluster-cpus", type=int, default=100, help="CPUs of the cluster estimated (default 100)")
    parser.add_argument("--out", default=str(RESULTS), help="folder for ray_speedup.md / .csv")
    parser.add_argument("--side", choices=["serial", "ray"], help=argparse.SUPPRESS)
    parser.add_argument("--side-out", help=argparse.SUPPRESS)
    parser.add_argument("--side-json", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.side is not None:
        return side(args)

    from oxide_env.files import atomic_write_csv, atomic_write_text

    n_runs = len(args.tasks) * len(args.methods)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        serial = _measure(args, "serial", folder)
        ray = _measure(args, "ray", folder)
    same = [(a["metrics"], a["task"], a["method"]) for a in serial["results"]] == \
           [(b["metrics"], b["task"], b["method"]) for b in ray["results"]]
    run_seconds = sum(r["train_seconds"] + r["generate_seconds"] + r["evaluate_seconds"] for r in serial["results"])
    speedup = serial["wall"] / ray["wall"]
    overhead = ray["wall"] - lpt_makespan([r["train_seconds"] + r["generate_seconds"] + r["evaluate_seconds"]
                                           for r in ray["results"]], args.workers)
    rows = [("serial (1 torch thread)", 1, serial["wall"], serial["runs_wall"], 1.0),
            (f"ray, local instance of {args.workers} CPUs, 1 per run", args.workers, ray["wall"], ray["runs_wall"],
             speedup)]

    # on paper: the full Table 1 and a 5 x 5 sweep on a cluster
    times = _table1_run_seconds()
    every = [t for ts in times.values() for t in ts]
    cpus = args.cluster_cpus
    table1_cluster = lpt_makespan(every, cpus) + overhead
    ours = times.get("constrained_dqn", [])
    sweep_runs = [sum(ours) / len(ours)] * 75 + [max(times.get("random", [0.2]))] * 3 if ours else []
    sweep_cluster = lpt_makespan(sweep_runs, cpus) + overhead if sweep_runs else float("nan")
    sweep_serial = sum(sweep_runs)

    lines = [
        "# Ray backend: wall time of the same runs, serial vs Ray", "",
        f"The same {n_runs} runs ({', '.join(args.methods)} on {', '.join(args.tasks)}; seed 0, {args.iterations} "
        f"iterations, {args.n} materials each), each side in a fresh process timed from launch to exit (imports, Ray's "
        "start and shutdown included), one torch thread per run on both sides. Same metrics and materials on both: "
        f"**{'yes' if same else 'NO'}**.", "",
        "| backend | workers | wall (s) | runs only (s) | speed-up |", "|---|---|---|---|---|",
        *(f"| {name} | {w} | {wall:.1f} | {runs:.1f} | {s:.2f}x |" for name, w, wall, runs, s in rows), "",
        f"Sum of the runs' own times (training, generation, evaluation; serial side): {run_seconds:.1f} s. Ray's fixed "
        f"cost here (instance start, each worker's imports and first run, shutdown): {overhead:.1f} s over the ideal "
        "split of the runs.", "",
        f"## On paper: a {cpus}-CPU cluster, one CPU per run", "",
        f"From the committed full Table 1 ({len(every)} runs, {sum(every) / 60:.1f} min of run time on 2 CPU cores, "
        "`benchmarks/results/table1_runs/*/result.json`), longest-run-first scheduling plus the fixed cost above:", "",
        "| job | runs | serial (min) | on the cluster (min) |", "|---|---|---|---|",
        f"| full Table 1 (7 tasks x 4 methods x 3 seeds + 3 random) | {len(every)} | {sum(every) / 60:.1f} | "
        f"{table1_cluster / 60:.1f} |",
        f"| 5 x 5 sweep of our method, 1 task x 3 seeds (+ 3 random) | {len(sweep_runs)} | {sweep_serial / 60:.1f} | "
        f"{sweep_cluster / 60:.1f} |", "",
        f"With at most {cpus} runs in flight, every run of either job runs at once: the wall time is the longest run "
        f"({max(every) / 60:.1f} min, MaskablePPO) plus the start-up, so more CPUs no longer help; a sweep over all "
        f"7 tasks (525 + 3 runs) would take about {lpt_makespan(sweep_runs[:75] * 7 + sweep_runs[75:], cpus) / 60:.1f} "
        "min. Assumes each run takes on a cluster CPU what it took here (runs do not share data; each worker loads the "
        "predictors once) and that `--out` is on shared storage.", "",
        f"Command: `python benchmarks/ray_speedup.py --iterations {args.iterations} --n {args.n} --workers {args.workers}`",
        ""]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "ray_speedup.md", "\n".join(lines))
    atomic_write_csv(out / "ray_speedup.csv", ["backend", "workers", "wall_seconds", "runs_wall_seconds", "speedup",
                                               "same_results"],
                     [(name, w, f"{wall:.2f}", f"{runs:.2f}", f"{s:.3f}", same) for name, w, wall, runs, s in rows])
    print("\n".join(lines))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
