"""Reproduce the paper's Table 1 and Figure 2 with every method side by side (resumable).

Same as ``oxide-rl benchmark table1`` (same options); see ``agents/benchmark.py`` for what it runs.

Usage:
    python benchmarks/table1.py [--seeds 0 1 2] [--n 1000] [--iterations 500] [--out runs/table1] [--force]
"""

from __future__ import annotations

import sys



def main(argv: list[str] | None = None) -> int:
    from agents.cli import main as cli_main

    return cli_main(["benchmark", "table1", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
