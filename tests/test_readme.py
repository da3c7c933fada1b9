"""Every Python snippet of the README runs on its own, as a user pastes it (one subprocess each).

The training snippet runs with a tiny budget (its ``total_timesteps`` and ``generate`` size are
cut); everything else runs as written. About 20 CPU-seconds, mostly imports.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
SNIPPETS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
TINY = {"total_timesteps=250_500": "total_timesteps=1_000", "generate(1000, ": "generate(20, "}


def test_the_readme_has_snippets():
    assert len(SNIPPETS) >= 5


@pytest.mark.parametrize("index", range(len(SNIPPETS)))
def test_snippet_runs_on_its_own(index, tmp_path):
    code = SNIPPETS[index]
    for full, tiny in TINY.items():
        code = code.replace(full, tiny)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", MPLBACKEND="Agg")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                         env=env)
    assert out.returncode == 0, f"README snippet {index}:\n{SNIPPETS[index]}\n{out.stderr[-3000:]}"
