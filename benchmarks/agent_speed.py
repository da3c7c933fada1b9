"""Wall time of the paper's full agent protocol, generation throughput, and what it learned.

Trains ``ConstrainedDQN`` with the paper's defaults (1 warm-up iteration + 500 iterations of
100 episodes, 100 environments stepped together, batched rewards) on one task, then times
generating 10,000 materials and evaluates 1,000 of them beside the random baseline.
The paper reports 2-3 hours per agent on an RTX A5000 GPU.

Usage:
    python benchmarks/agent_speed.py [--task bulk_modulus] [--seed 0] [--iterations 500]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="bulk_modulus")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--iterations", type=int, default=500)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2, this machine's cores)")
    parser.add_argument("--out", default=str(RESULTS / "agent_speed.md"))
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)

    import oxide_env
    import predictors
    from agents.train import AgentRun, train_agent
    from predictors.data import training_keys

    run = AgentRun(task=args.task, seed=args.seed, iterations=args.iterations)  # device "auto": cuda on a GPU
    model, seconds = train_agent(run, None, progress=True)
    model.generate(100, seed=0)
    t0 = time.perf_counter()
    formulas = model.generate(10_000, seed=args.seed + 1)
    gen_rate = 10_000 / (time.perf_counter() - t0)
    exact_rates = {}
    from oxide_env.chemistry import completion

    for constraint in ("electronegativity_balanced", "oxide_rule"):  # the rule's tables, loaded once
        model.generate(100, seed=args.seed + 3, exact_masks=constraint)
    for constraint in ("electronegativity_balanced", "oxide_rule"):  # cold: the mask memo is emptied first
        completion.clear_cache()
        t0 = time.perf_counter()
        model.generate(10_000, seed=args.seed + 2, exact_masks=constraint)
        exact_rates[constraint] = 10_000 / (time.perf_counter() - t0)
    # the fused kernel against plain torch (the reference path) on the same 1,024 states, same run
    import numpy as np

    from agents import kernels
    from oxide_env.core import observations
    from oxide_env.chemistry.baseline import random_oxide_counts

    obs = torch.as_tensor(observations(random_oxide_counts(1024, seed=0), 4))
    timings = {}
    for name, available in (("kernel", kernels.AVAILABLE), ("torch", False)):
        saved, kernels.AVAILABLE = kernels.AVAILABLE, available
        with torch.no_grad():
            model.policy.scores(obs)
            t0 = time.perf_counter()
            for _ in range(5):
                q, logits = model.policy.scores(obs)
            timings[name] = (time.perf_counter() - t0) / 5 / len(obs) * 1e6
            timings[name + "_q"] = q.numpy()
        kernels.AVAILABLE = saved
    max_diff = float(np.abs(timings.pop("kernel_q") - timings.pop("torch_q")).max())
    models = [predictors.load(n) for n in predictors.PREDICTOR_NAMES]
    reference = training_keys()
    t0 = time.perf_counter()
    agent = oxide_env.evaluate(formulas[:1000], reference=reference, predictors=models)
    eval_seconds = time.perf_counter() - t0
    random = oxide_env.evaluate(oxide_env.random_oxides(1000, seed=args.seed), reference=reference,
                                predictors=models)
    lines = [
        f"# Agent speed: the paper's full protocol on `{args.task}` (seed {args.seed})", "",
        f"- device: {model.device} ({torch.get_num_threads()} torch threads); 2 CPU cores",
        f"- protocol: {run.iterations} iterations x 100 episodes + 1 warm-up iteration = "
        f"{run.total_timesteps:,} environment steps, 100 environments",
        f"- **training wall time: {seconds:.1f} s** (target <= 15 s; the paper: 2-3 h on a GPU)",
        f"- generation: {gen_rate:,.0f} materials/s (10,000 materials, batched, top-20% sampling, oracles on)",
        *(f"- generation with exact `{c}` masks (cold mask memo): {r:,.0f} materials/s (target >= 10,000)"
          for c, r in exact_rates.items()),
        f"- scoring all 800 actions with Q + {len(model.constraints)} oracles: fused kernel "
        f"{timings['kernel']:.1f} µs/state vs torch {timings['torch']:.1f} µs/state "
        f"({timings['torch'] / timings['kernel']:.1f}x; max |ΔQ| {max_diff:.1e}; 1,024 random-baseline states)",
        f"- evaluation of 1,000 materials (validity, ElMD, novelty, 4 predictors): {eval_seconds:.2f} s",
        f"- oracle fallbacks (oracles rejected every allowed action): "
        f"{model.oracle_fallbacks} of {model.oracle_decisions} decisions",
        "", "| metric | agent | random |", "|---|---|---|",
    ]
    for key in agent:
        a, r = agent[key], random.get(key)
        lines.append(f"| {key} | {a:.3f} | {r:.3f} |" if isinstance(a, float) else f"| {key} | {a} | {r} |")
    lines += ["", f"Command: `python benchmarks/agent_speed.py --task {args.task} --seed {args.seed} "
              f"--iterations {args.iterations} --threads {args.threads}`"]
    text = "\n".join(lines)
    print(text)
    Path(args.out).write_text(text + "\n")
    Path(args.out).with_suffix(".json").write_text(json.dumps({"seconds": seconds, "generation_per_s": gen_rate,
                                                               "exact_mask_generation_per_s": exact_rates,
                                                               "score_us_per_state": timings,
                                                               "agent": agent, "random": random}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
