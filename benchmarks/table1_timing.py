"""Run times of a Table 1 folder against another (e.g. a rerun with today's code against the committed reference).

For every run present in both folders (``table1_runs/<task>/<method>/seed<k>/result.json``) it
sums training, generation and evaluation seconds per method, and counts the runs whose
generated materials (``formulas.csv``) are byte-identical. The wall time of the new folder's
invocation is read from its ``table1.md`` ("this invocation took ... min").

Usage:
    oxide-rl benchmark table1 --seeds 0 --out runs/rerun --backend ray --cpus-per-run 1
    python benchmarks/table1_timing.py --runs runs/rerun --reference benchmarks/results

Writes ``benchmarks/results/table1_timing.md`` and ``.csv`` (``--out``).
"""

from __future__ import annotations

import argparse
import csv
import json
import re
from collections import defaultdict
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def run_seconds(result: dict) -> float:
    """Training + generation + evaluation seconds of one stored run."""
    return float(result["train_seconds"]) + float(result["generate_seconds"]) + float(result["evaluate_seconds"])


def compare(runs: Path, reference: Path) -> dict[str, dict[str, float]]:
    """Per method: runs, minutes (new, reference), fastest and slowest new run (s), identical designs."""
    rows: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for path in sorted(runs.glob("table1_runs/*/*/seed*/result.json")):
        other = reference / path.relative_to(runs)
        if not other.is_file():
            continue
        new, old = json.loads(path.read_text()), json.loads(other.read_text())
        row = rows[path.parts[-3]]
        seconds = run_seconds(new)
        row["runs"] += 1
        row["minutes"] += seconds / 60
        row["reference_minutes"] += run_seconds(old) / 60
        row["fastest_s"] = min(row.get("fastest_s", seconds), seconds)
        row["slowest_s"] = max(row["slowest_s"], seconds)
        designs = path.with_name("formulas.csv"), other.with_name("formulas.csv")
        row["identical_designs"] += all(p.is_file() for p in designs) and designs[0].read_bytes() == designs[1].read_bytes()
    return {k: dict(v) for k, v in rows.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", required=True, help="the Table 1 folder to time (its --out)")
    parser.add_argument("--reference", default=str(RESULTS), help="the folder to compare with (default: the committed one)")
    parser.add_argument("--out", default=str(RESULTS / "table1_timing.md"),
                        help="the Markdown report to write (a .md file; the .csv is written beside it)")
    args = parser.parse_args(argv)
    if Path(args.out).suffix != ".md":
        parser.error(f"--out {args.out!r} is not a .md file: name the Markdown report, e.g. "
                     f"--out {Path(args.out).with_suffix('.md')} (its .csv is written beside it)")
    runs, reference = Path(args.runs), Path(args.reference)
    rows = compare(runs, reference)
    if not rows:
        raise SystemExit(f"No run of {runs} has a counterpart in {reference}: run oxide-rl benchmark table1 "
                         f"--out {runs} first.")
    report = runs / "table1.md"
    wall = re.search(r"this invocation took ([\d.]+) min", report.read_text()) if report.is_file() else None
    total = sum(r["minutes"] for r in rows.values())
    total_ref = sum(r["reference_minutes"] for r in rows.values())
    n = int(sum(r["runs"] for r in rows.values()))
    lines = [f"# Table 1 run times: `{runs.name}` against `{reference.name}`", "",
             f"{n} runs present in both. Run time = training + generation + evaluation of one run "
             f"(its `result.json`).", "",
             f"- run time: **{total:.1f} min** (reference: {total_ref:.1f} min, {total_ref / total:.1f}x)",
             f"- wall time of the invocation that made them: "
             f"{wall.group(1) + ' min' if wall else 'unknown (no table1.md)'}", "",
             "| method | runs | run time (min) | reference (min) | speed-up | fastest / slowest run (s) "
             "| identical designs |", "|---|---|---|---|---|---|---|"]
    for method, r in sorted(rows.items(), key=lambda kv: -kv[1]["minutes"]):
        lines.append(f"| {method} | {int(r['runs'])} | {r['minutes']:.1f} | {r['reference_minutes']:.1f} | "
                     f"{r['reference_minutes'] / max(r['minutes'], 1e-9):.1f}x | {r['fastest_s']:.0f} / "
                     f"{r['slowest_s']:.0f} | {int(r['identical_designs'])} of {int(r['runs'])} |")
    given = "" if args.reference == parser.get_default("reference") else f" --reference {args.reference}"
    lines += ["", f"Command: `python benchmarks/table1_timing.py --runs {args.runs}{given}`", ""]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    with out.with_suffix(".csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["method", "runs", "minutes", "reference_minutes", "fastest_s", "slowest_s",
                         "identical_designs"])
        for method, r in sorted(rows.items()):
            writer.writerow([method, int(r["runs"]), f"{r['minutes']:.2f}", f"{r['reference_minutes']:.2f}",
                             f"{r['fastest_s']:.1f}", f"{r['slowest_s']:.1f}", int(r["identical_designs"])])
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
