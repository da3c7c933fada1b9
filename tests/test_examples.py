"""Every script in examples/ runs, as a user runs it, with a tiny budget (one subprocess each).

They need only the main dependencies (``pip install -e .``): no ``rich`` (SB3's progress bar)
and nothing from the ``[test]`` extra. About 50 CPU-seconds for all six, mostly imports.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
TINY = {  # script -> (arguments, a line its output must contain)
    "custom_task.py": ([], "charge neutral:"),
    "random_baseline.py": (["--n", "200"], "pct_charge_neutral"),
    "maskable_ppo.py": (["--timesteps", "500", "--n", "50"], "examples:"),
    "ppo_and_dqn.py --algo ppo": (["--timesteps", "256", "--episodes", "10"], "ppo: mean terminal reward"),
    "ppo_and_dqn.py --algo dqn": (["--timesteps", "1100", "--episodes", "10"], "dqn: mean terminal reward"),
    "constrained_dqn.py": (["--iterations", "1", "--n", "50"], "a few generated oxides:"),
}


def test_every_example_is_covered():
    scripts = {name.split()[0] for name in TINY}
    assert scripts == {p.name for p in EXAMPLES.glob("*.py")}


@pytest.mark.parametrize("example", list(TINY))
def test_example_runs_with_a_tiny_budget(example, tmp_path):
    script, *extra = example.split()
    args, expected = TINY[example]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", MPLBACKEND="Agg")
    out = subprocess.run([sys.executable, str(EXAMPLES / script), *extra, *args], capture_output=True, text=True,
                         timeout=300, cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert expected in out.stdout, out.stdout[-2000:]
    assert "render_mode" not in out.stderr  # SB3's make_vec_env used to trigger gymnasium's warning
