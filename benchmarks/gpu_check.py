"""The policy's GPU path, measured: training and generation on ``cuda`` beside the same work on the CPU.

Three checks, each written to ``--out`` as soon as it finishes (JSON, and ``gpu_check.md`` rebuilt
from them; ``--report-only`` rebuilds it without running anything):

1. **The paper's protocol** (``AgentRun`` defaults: 1 warm-up + ``--iterations`` iterations of
   100 episodes, 100 environments) trained on ``--device``; generation of 10,000 materials
   (plain and with exact oxide-rule masks) on the same device.
2. **Same numbers on both devices**: the trained Q-network and oracles copied to the CPU score
   1,024 random-baseline states; the largest difference of Q to the device's scores.
3. **Our Table 1 method** (``constrained_dqn`` of ``agents.runs.METHODS``) trained on
   ``--device`` for one task and seed; 1,000 materials generated and assessed as Table 1 does
   (``pct_plausible`` etc.), to set beside the CPU run of the same seed in
   ``benchmarks/results/table1_runs``. GPU and CPU runs of one seed are not bit-identical (other
   kernels, other float rounding), so the figures are compared, not the formulas.

Nothing here runs in the tests: CI has no GPU. Usage::

    python benchmarks/gpu_check.py --device cuda --out /tmp/gpu_check
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path


def _write(out: Path, name: str, record: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(record, indent=2, default=float))
    print(json.dumps({name: record}, default=float), flush=True)


def paper_protocol(args) -> dict:
    """Check 1 and 2: the paper's protocol on ``args.device``; generation rates; Q on both devices."""
    import dataclasses

    import numpy as np
    import torch

    from agents.train import AgentRun, train_agent
    from oxide_env.chemistry import completion
    from oxide_env.chemistry.baseline import random_oxide_counts
    from oxide_env.core import observations

    run = AgentRun(task=args.task, seed=args.seed, iterations=args.iterations)
    run = dataclasses.replace(run, model_kwargs={"device": args.device})
    model, seconds = train_agent(run, None, progress=False)
    record = {"device": str(model.device), "task": args.task, "iterations": args.iterations,
              "total_timesteps": run.total_timesteps, "train_seconds": seconds}
    model.generate(100, seed=0)  # warm-up (kernels, memo)
    t0 = time.perf_counter()
    formulas = model.generate(10_000, seed=args.seed + 1)
    record["generate_per_s"] = 10_000 / (time.perf_counter() - t0)
    record["pct_unique_10k"] = 100.0 * len(set(formulas)) / len(formulas)
    completion.clear_cache()
    t0 = time.perf_counter()
    model.generate(10_000, seed=args.seed + 2, exact_masks="oxide_rule")
    record["generate_oxide_rule_per_s_cold"] = 10_000 / (time.perf_counter() - t0)
    obs = torch.as_tensor(observations(random_oxide_counts(1024, seed=0), 4))
    with torch.no_grad():
        q_device, _ = model.policy.scores(obs.to(model.device))
        model.policy.to("cpu")
        q_cpu, _ = model.policy.scores(obs)
        model.policy.to(model.device)
    q_device = q_device.cpu().numpy()
    record["max_abs_q_difference_cpu_vs_device"] = float(np.abs(q_device - q_cpu.numpy()).max())
    record["q_scale"] = float(np.abs(q_cpu.numpy()).max())
    record["sample"] = formulas[:10]
    return record


def table1_method(args) -> dict:
    """Check 3: our Table 1 method on ``args.device``, assessed as Table 1 does."""
    import dataclasses

    import numpy as np

    from agents.runs import METHODS, TASKS, _agent_run, assess_run
    from agents.train import train_agent
    from oxide_env.chemistry.metrics import pct_unique
    from predictors.data import training_keys

    task = next(t for t in TASKS if t.key == args.task)
    method = METHODS["constrained_dqn"]
    run = _agent_run(task, method, args.seed, args.iterations)
    run = dataclasses.replace(run, model_kwargs={**run.model_kwargs, "device": args.device})
    model, seconds = train_agent(run, None, progress=False)
    t0 = time.perf_counter()
    formulas = model.generate(1000, seed=args.seed)
    generate_seconds = time.perf_counter() - t0
    metrics, checks = assess_run(formulas, task, method, training_keys())
    record = {"device": str(model.device), "task": task.key, "seed": args.seed, "iterations": args.iterations,
              "train_seconds": seconds, "generate_seconds": generate_seconds, "pct_unique": pct_unique(formulas),
              **{k: metrics[k] for k in ("pct_plausible", "pct_oxide_rule", "pct_in_domain", "elmd_mean")
                 if k in metrics}}
    for prop in task.properties:
        record[f"{prop}_mean"] = float(np.mean(checks[prop]))
    cpu = Path(__file__).parent / "results" / "table1_runs" / task.key / "constrained_dqn" / f"seed{args.seed}"
    stored = cpu / "result.json"
    if stored.is_file():
        cpu_metrics = json.loads(stored.read_text())
        record["cpu_run"] = {k: cpu_metrics["metrics"].get(k) for k in ("pct_plausible", "pct_oxide_rule",
                                                                        "pct_in_domain", "pct_unique", "elmd_mean")}
        record["cpu_run"]["train_seconds"] = cpu_metrics["train_seconds"]
    record["sample"] = formulas[:10]
    return record


def _fmt(value, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def write_report(out: Path) -> str:
    """``out/gpu_check.md`` from the JSON records of the checks found in ``out`` (returned too).

    The CPU column holds what the records carry: the stored CPU run of the same task and seed
    (``cpu_run``, from ``benchmarks/results/table1_runs``) for our method; for the paper's protocol,
    the CPU figures live in ``agent_speed.md``.
    """
    def load(name: str) -> dict | None:
        path = out / f"{name}.json"
        return json.loads(path.read_text()) if path.is_file() else None

    info = load("info") or {}
    lines = [f"# The policy's GPU path ({info.get('gpu') or info.get('device', '?')}, torch {info.get('torch', '?')})",
             "", "Written by `benchmarks/gpu_check.py` from the JSON records beside this file. CI never runs it.", ""]
    pp, t1 = load("paper_protocol"), load("table1_method")
    for name, rec in (("paper_protocol", pp), ("table1_method", t1)):
        if rec is not None and "error" in rec:
            lines += [f"**{name} failed:**", "", "```", rec["error"].strip()[-2000:], "```", ""]
    rows = []
    if pp is not None and "error" not in pp:
        rows += [
            (f"paper protocol ({pp['total_timesteps']:,} steps, {pp['task']}): training wall time",
             f"{pp['train_seconds']:.1f} s", "see `agent_speed.md`"),
            ("generation, 10,000 materials, top-20 % sampling on the device", f"{pp['generate_per_s']:,.0f} /s",
             "see `agent_speed.md`"),
            ("generation with exact oxide-rule masks (cold mask memo; masks on the CPU)",
             f"{pp['generate_oxide_rule_per_s_cold']:,.0f} /s", "see `agent_speed.md`"),
            ("Q of 1,024 random-baseline states: max abs difference device vs the same weights on the CPU",
             f"{pp['max_abs_q_difference_cpu_vs_device']:.1e} (|Q| up to {pp['q_scale']:.1f})", "-"),
        ]
    if t1 is not None and "error" not in t1:
        cpu = t1.get("cpu_run") or {}
        rows += [
            (f"our Table 1 method ({t1['task']}, seed {t1['seed']}, {t1['iterations']} iterations): training",
             f"{t1['train_seconds']:.0f} s", f"{_fmt(cpu.get('train_seconds'), '.0f')} s"),
            ("... % plausible / % oxide rule / % in domain / % unique (1,000 designs)",
             " / ".join(_fmt(t1.get(k)) for k in ("pct_plausible", "pct_oxide_rule", "pct_in_domain", "pct_unique")),
             " / ".join(_fmt(cpu.get(k)) for k in ("pct_plausible", "pct_oxide_rule", "pct_in_domain", "pct_unique"))),
            ("... ElMD (mean pairwise)", _fmt(t1.get("elmd_mean"), ".2f"), _fmt(cpu.get("elmd_mean"), ".2f")),
        ]
    if rows:
        lines += [f"| check | on {info.get('device', 'the device')} | on the CPU (stored run) |", "|---|---|---|"]
        lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
        lines += ["", "GPU and CPU runs of one seed are not bit-identical (other kernels, other rounding), so "
                  "their training trajectories diverge: compare the figures with the spread over CPU seeds, "
                  "not with one seed.", ""]
    for name, rec in (("paper protocol", pp), ("our method", t1)):
        if rec is not None and rec.get("sample"):
            lines.append(f"First designs ({name}): {', '.join(rec['sample'][:5])}.")
    text = "\n".join(lines) + "\n"
    (out / "gpu_check.md").write_text(text)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="torch device of the policy (default cuda)")
    parser.add_argument("--task", default="bulk_modulus")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--iterations", type=int, default=500, help="training iterations (paper: 500)")
    parser.add_argument("--threads", type=int, default=4, help="torch CPU threads")
    parser.add_argument("--checks", nargs="+", default=["paper_protocol", "table1_method"],
                        choices=["paper_protocol", "table1_method"])
    parser.add_argument("--out", type=Path, default=Path("gpu_check"))
    parser.add_argument("--report-only", action="store_true",
                        help="only rewrite --out/gpu_check.md from the JSON records already there (no GPU needed)")
    args = parser.parse_args(argv)
    if args.report_only:
        if not (args.out / "info.json").is_file():
            parser.error(f"--report-only: no info.json in {str(args.out)!r}; run the checks there first.")
        print(write_report(args.out))
        return 0

    import torch

    torch.set_num_threads(args.threads)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda but CUDA is not available here; pass --device cpu.")
    info = {"torch": torch.__version__, "device": args.device,
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    _write(args.out, "info", info)
    failed = 0
    for name in args.checks:
        t0 = time.perf_counter()
        try:
            record = {"paper_protocol": paper_protocol, "table1_method": table1_method}[name](args)
        except Exception:  # keep going: one check's failure must not lose the others
            record = {"error": traceback.format_exc()}
            failed += 1
        record["wall_seconds"] = time.perf_counter() - t0
        _write(args.out, name, record)
        write_report(args.out)  # after each check: an interruption keeps the report of what finished
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
