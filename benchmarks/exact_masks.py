"""Speed of the exact forward masks: batched (one compiled pass per state) against the old per-state path.

For each constraint and step 2-4 (steps 0-1 are all-allowed by proof and cost nothing), draws
``--states`` distinct random reachable states (uniform legal actions) and times

* ``batched cold``: one ``completable_action_masks`` call on all of them, memo emptied first;
* ``batched warm``: the same call again (every state memoised);
* ``one-state cold`` / ``warm``: ``completable_actions`` state by state (n = 1 calls of the
  batched code, as the single env makes), memo emptied first / every state memoised;
* ``old per-state cold``: the previous per-state implementation (``completion.py`` at
  ``--baseline-commit``, loaded from git in this run; charge neutrality and electronegativity
  balance only -- it had no oxide rule), on ``--baseline-states`` of the states, with its
  masks compared to the batched ones (``mismatches`` must be 0).

"steps 2-3" rows give the throughput over equal numbers of step-2 and step-3 states
(total states / total time). One core: run with ``OMP_NUM_THREADS=1``.

Usage:
    OMP_NUM_THREADS=1 python benchmarks/exact_masks.py [--states 5000] [--baseline-states 500]
        [--seed 0] [--baseline-commit c64011d] [--no-baseline]

Writes ``benchmarks/results/exact_masks.md`` and ``.csv``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"
STEPS = (2, 3, 4)


def random_states(n: int, step: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` distinct states after ``step`` uniformly random legal actions."""
    from oxide_env.chemistry.episode import N_ACTIONS, hard_rule_masks

    adds = np.zeros((N_ACTIONS, 80), dtype=np.int64)
    adds[np.arange(N_ACTIONS), np.arange(N_ACTIONS) // 10] = np.arange(N_ACTIONS) % 10
    counts = np.zeros((3 * n, 80), dtype=np.int64)
    for t in range(step):
        masks = hard_rule_masks(counts, t)
        picks = (rng.random(len(masks)) * masks.sum(1)).astype(np.int64)
        counts = counts + adds[np.argmax(np.cumsum(masks, axis=1) > picks[:, None], axis=1)]
    _, first = np.unique(counts, axis=0, return_index=True)
    return counts[np.sort(first)[:n]]


def load_baseline(commit: str) -> types.ModuleType | None:
    """The per-state completion module as of ``commit`` (None if git cannot give it)."""
    root = Path(__file__).resolve().parents[1]
    try:
        source = subprocess.run(
            ["git", "show", f"{commit}:oxide_env/chemistry/completion.py"],
            cwd=root, capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
    except (OSError, subprocess.CalledProcessError) as err:
        print(f"no baseline ({err}); use --no-baseline", file=sys.stderr)
        return None
    module = types.ModuleType("completion_baseline")
    exec(compile(source, f"completion.py@{commit}", "exec"), module.__dict__)  # noqa: S102 (our own git history)
    return module


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--states", type=int, default=5000, help="distinct states per step (default 5000)")
    parser.add_argument("--baseline-states", type=int, default=500,
                        help="states timed on the one-state and old paths (default 500)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--baseline-commit", default="c64011d",
                        help="git commit whose completion.py is the old per-state path")
    parser.add_argument("--no-baseline", action="store_true", help="skip the old per-state path")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    args = parser.parse_args(argv)
    if args.states < 1 or args.baseline_states < 1:
        parser.error(f"--states {args.states} / --baseline-states {args.baseline_states}: must be >= 1")

    from oxide_env.chemistry import completion
    from oxide_env.files import atomic_write_csv, atomic_write_text

    old = None if args.no_baseline else load_baseline(args.baseline_commit)
    rng = np.random.default_rng(args.seed)
    states = {step: random_states(args.states, step, rng) for step in STEPS}
    # The new path is timed first for every constraint: the old one leaves a heap that slows
    # later allocations (up to 2x here), which would distort the new figures.
    timings, sample_masks = {}, {}
    for constraint in completion.CONSTRAINTS:
        completion.completable_action_masks(states[2][:2], 2, constraint)  # tables (and compile)
        for step in STEPS:
            batch = states[step]
            completion.clear_cache()
            masks = None

            def run_batched():
                nonlocal masks
                masks = completion.completable_action_masks(batch, step, constraint)

            cold = timed(run_batched)
            warm = timed(run_batched)
            sample = batch[: args.baseline_states]
            completion.clear_cache()
            one = timed(lambda: [completion.completable_actions(s, step, constraint) for s in sample])
            one_warm = timed(lambda: [completion.completable_actions(s, step, constraint) for s in sample])
            timings[constraint, step] = (len(batch), cold, warm, len(sample), one, one_warm)
            sample_masks[constraint, step] = masks[: len(sample)]
    rows = []
    for constraint in completion.CONSTRAINTS:
        per_step = {}
        for step in STEPS:
            n, cold, warm, n_sample, one, one_warm = timings[constraint, step]
            sample = states[step][:n_sample]
            old_rate, mismatches = float("nan"), ""
            if old is not None and constraint in old.CONSTRAINTS:
                old.clear_cache()
                got = []
                t_old = timed(lambda: got.extend(old.completable_actions(s, step, constraint) for s in sample))
                old_rate = n_sample / t_old
                mismatches = int((np.stack(got) != sample_masks[constraint, step]).any(axis=1).sum())
            row = {
                "constraint": constraint, "step": str(step), "states": n,
                "batched_cold_per_s": n / cold, "batched_warm_per_s": n / warm,
                "one_state_cold_per_s": n_sample / one, "one_state_warm_per_s": n_sample / one_warm,
                "old_per_state_cold_per_s": old_rate,
                "mismatches_vs_old": mismatches,
            }  # fmt: skip
            per_step[step] = (n, cold, warm, n_sample, one, one_warm, old_rate)
            rows.append(row)
            print(row, flush=True)
        (n2, c2, w2, s2, o2, ow2, r2), (n3, c3, w3, s3, o3, ow3, r3) = per_step[2], per_step[3]
        rows.append({
            "constraint": constraint, "step": "2-3", "states": n2 + n3,
            "batched_cold_per_s": (n2 + n3) / (c2 + c3), "batched_warm_per_s": (n2 + n3) / (w2 + w3),
            "one_state_cold_per_s": (s2 + s3) / (o2 + o3), "one_state_warm_per_s": (s2 + s3) / (ow2 + ow3),
            "old_per_state_cold_per_s": 2 / (1 / r2 + 1 / r3) if np.isfinite(r2 + r3) else float("nan"),
            "mismatches_vs_old": "",
        })  # fmt: skip

    header = list(rows[0])
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_csv(args.out / "exact_masks.csv", header,
                     [[f"{v:.0f}" if isinstance(v, float) else v for v in r.values()] for r in rows])

    def fmt(v: float) -> str:
        return "–" if not np.isfinite(v) else f"{v:,.0f}"

    lines = [
        "# Exact forward masks: states per second",
        "",
        f"Command: `OMP_NUM_THREADS=1 python benchmarks/exact_masks.py --states {args.states} "
        f"--baseline-states {args.baseline_states} --seed {args.seed} --baseline-commit {args.baseline_commit}`"
        + (" --no-baseline" if args.no_baseline else ""),
        "",
        "Distinct random reachable states (uniform legal actions), one core. Cold: memo emptied "
        "first; warm: every state memoised. Old: the per-state implementation at the baseline "
        "commit (no oxide rule there). Ratios: batched cold and one-state cold / old per-state cold. "
        "One-state: n = 1 calls (the single env's path). Rows '2-3': "
        "equal numbers of step-2 and step-3 states, total states / total time.",
        "",
        "| constraint | step | batched cold /s | batched warm /s | one-state cold /s | one-state warm /s "
        "| old per-state cold /s | ratio batched | ratio one-state | mismatches vs old |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ratios = [r[k] / r["old_per_state_cold_per_s"] for k in ("batched_cold_per_s", "one_state_cold_per_s")]
        lines.append(
            f"| {r['constraint']} | {r['step']} | {fmt(r['batched_cold_per_s'])} | {fmt(r['batched_warm_per_s'])} "
            f"| {fmt(r['one_state_cold_per_s'])} | {fmt(r['one_state_warm_per_s'])} | {fmt(r['old_per_state_cold_per_s'])} "
            + "".join(f"| {'–' if not np.isfinite(x) else f'{x:.1f}x'} " for x in ratios)
            + f"| {r['mismatches_vs_old']} |"
        )
    atomic_write_text(args.out / "exact_masks.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    bad = [r for r in rows if r["mismatches_vs_old"] not in ("", 0)]
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
