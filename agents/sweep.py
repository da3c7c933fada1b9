"""Hyperparameter sweeps: a grid over tasks x methods x seeds x agent settings, on either backend.

``oxide-rl sweep CONFIG`` reads a small TOML file, checks every key and value before any work,
runs every (task, method, setting combination, seed) as one run of the Table 1 harness
(:func:`agents.runs.run_one`, on :mod:`agents.backends`' serial or Ray backend), and
writes to ``--out``:

* ``sweep.md`` / ``sweep.csv`` — one row per (task, method, combination): mean ± std over seeds
  of the chosen metrics, % plausible, % unique, % novel, ElMD, the task's properties and their
  shift versus the random baseline of the same seed (always run, once per seed), training time.
* ``sweep.png`` — each metric against each swept setting (one line per task, method and
  combination of the other settings; error bars: std over seeds).
* ``sweep_runs/<task>/<method>/<combination>/seed<k>/`` — each run's ``result.json`` and
  ``formulas.csv``. A combination is a derived :class:`~agents.runs.Method` (its own key and
  changed fields; λ a derived task), so its settings — stored in ``result.json`` — differ from any
  other combination's: a changed setting is never served from an old result. Rerun the same command
  to resume; runs of other settings in ``--out`` are refused before any work (``--force`` reruns them).

The config (every key but ``grid`` optional; ``examples/sweep.toml`` is a complete one)::

    tasks = ["bulk_modulus"]          # Table 1 task keys, or "sintering_bulk" (λ from the grid, else 125)
    methods = ["constrained_dqn"]     # agents.runs.METHODS keys
    seeds = [0, 1, 2]
    n = 1000                          # materials generated per run
    iterations = 500                  # training iterations of 100 episodes
    metrics = ["pct_plausible", "pct_unique"]   # plotted against each setting

    [grid]                            # one list of values per swept setting
    top_n_pct = [5, 10, 20]
    gradient_steps = [1, 10]

Example:
    >>> config = SweepConfig.from_dict({"seeds": [0], "iterations": 1, "n": 20,
    ...                                 "grid": {"top_n_pct": [10, 20]}})
    >>> [spec.method.key for spec in plan(config, "/tmp/sweep") if spec.method.kind == "dqn"]
    ['constrained_dqn[top_n_pct=10]', 'constrained_dqn[top_n_pct=20]']
    >>> SweepConfig.from_dict({"grid": {"top_n": [10]}})
    Traceback (most recent call last):
    ...
    ValueError: Unknown grid setting 'top_n'; allowed: top_n_pct, gradient_steps, lam, learning_rate, gamma, batch_size, exploration_decay, merge_noops, oracle_threshold.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import itertools
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agents.backends import RunSpec, execute_runs
from agents.runs import METHODS, PROPERTIES, TASKS_BY_KEY, BenchTask, Method


@dataclass(frozen=True)
class SweepSetting:
    """A setting the grid can sweep: where it goes, its type and its allowed range."""

    name: str
    where: str  # "method": a Method field; "model": a ConstrainedDQN keyword (model_kwargs); "task": λ
    kind: type  # float, int or bool
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    help: str = ""

    def allowed(self) -> str:
        if self.kind is bool:
            return "true or false"
        kind = "integers" if self.kind is int else "numbers"
        if self.low is not None and self.high is not None:
            return f"{kind} in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}]"
        return f"{kind} {'>' if self.low_open else '>='} {self.low:g}"

    def check(self, value: Any) -> Any:
        """``value`` as this setting's type; ``ValueError`` naming it and the allowed values."""
        bad = ValueError(f"Invalid grid value {self.name}={_show(value)}: expected {self.allowed()}.")
        if self.kind is bool:
            if not isinstance(value, bool):
                raise bad
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise bad
        if self.kind is int and not isinstance(value, int):
            raise bad
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            raise bad
        if self.high is not None and value > self.high:
            raise bad
        return self.kind(value)


SWEEP_SETTINGS: dict[str, SweepSetting] = {s.name: s for s in (
    SweepSetting("top_n_pct", "method", float, 0.0, 100.0, low_open=True,
                 help="sample among the top n % allowed actions by Q"),
    SweepSetting("gradient_steps", "method", int, 1, help="Q-network updates per iteration"),
    SweepSetting("lam", "task", float, 0.0, help="bulk weight λ of sintering_bulk (paper: 62.5, 125, 250)"),
    SweepSetting("learning_rate", "model", float, 0.0, low_open=True, help="Adam learning rate (paper 0.01)"),
    SweepSetting("gamma", "model", float, 0.0, 1.0, help="discount factor (paper 0.9)"),
    SweepSetting("batch_size", "model", int, 1, help="samples per update (paper 100)"),
    SweepSetting("exploration_decay", "model", float, 0.0, 1.0, low_open=True,
                 help="ε multiplied by this per iteration (paper 0.99)"),
    SweepSetting("merge_noops", "model", bool, help="rank the 80 count-0 actions as one in top-n % sampling"),
    SweepSetting("oracle_threshold", "model", float, 0.0, 1.0,
                 help="mask actions whose oracle probability is below this (paper 0.5; methods with oracles)"),
)}
"""The settings a sweep's ``[grid]`` may hold (agent settings apply to the DQN methods only)."""

SWEEP_METRICS = ("pct_plausible", "pct_unique", "pct_novel", "elmd_mean", "pct_oxide_rule", "pct_in_domain",
                 "pct_charge_neutral", "pct_electronegativity_balanced", "pct_charge_neutral_paper_rule",
                 "pct_electronegativity_balanced_paper_rule", "median_e_above_hull",
                 *(f"{p}_mean" for p in PROPERTIES), *(f"{p}_shift" for p in PROPERTIES), "train_seconds")
"""Metrics a sweep can plot (``<property>_shift``: vs the random baseline of the same seed, in its std)."""

CONFIG_KEYS = ("tasks", "methods", "seeds", "n", "iterations", "metrics", "grid")
SWEEP_TASKS = (*TASKS_BY_KEY, "sintering_bulk")
MAX_RUNS = 10_000
DQN_METHODS = tuple(k for k, m in METHODS.items() if m.kind == "dqn")


def _show(value: Any) -> str:
    """``repr(value)``, truncated to 100 characters (for error messages)."""
    text = repr(value)
    return text if len(text) <= 100 else text[:97] + "..."


def _list(value: Any, key: str, example: str) -> list[Any]:
    if not isinstance(value, list) or not value:
        raise ValueError(f"Invalid {key}={_show(value)}: expected a non-empty list, e.g. {key} = {example}.")
    if len({repr(v) for v in value}) != len(value):
        raise ValueError(f"Invalid {key}={_show(value)}: a value is repeated.")
    return value


def _choices(value: Any, key: str, allowed: Sequence[str]) -> tuple[str, ...]:
    values = _list(value, key, f'["{allowed[0]}"]')
    for v in values:
        if v not in allowed:
            raise ValueError(f"Invalid {key} value {_show(v)}; allowed: {', '.join(allowed)}.")
    return tuple(values)


def _int(value: Any, key: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"Invalid {key}={_show(value)}: expected an integer >= {minimum}.")
    return value


@dataclass(frozen=True)
class SweepConfig:
    """A validated sweep: what to run (see the module docstring for the file format).

    Build it with :meth:`from_dict` or :func:`load_config`; every bad key or value raises
    ``ValueError`` naming it and the allowed values.
    """

    grid: tuple[tuple[str, tuple[Any, ...]], ...]
    tasks: tuple[str, ...] = ("bulk_modulus",)
    methods: tuple[str, ...] = ("constrained_dqn",)
    seeds: tuple[int, ...] = (0, 1, 2)
    n: int = 1000
    iterations: int = 500
    metrics: tuple[str, ...] = ("pct_plausible",)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "the sweep config") -> SweepConfig:
        """Check ``data`` (a parsed TOML file) and build the config."""
        if not isinstance(data, dict):
            raise ValueError(f"Invalid {source}: expected a table of keys ({', '.join(CONFIG_KEYS)}).")
        for key in data:
            if key not in CONFIG_KEYS:
                raise ValueError(f"Unknown key {_show(key)} in {source}; allowed: {', '.join(CONFIG_KEYS)}.")
        kwargs: dict[str, Any] = {}
        if "tasks" in data:
            kwargs["tasks"] = _choices(data["tasks"], "tasks", SWEEP_TASKS)
        if "methods" in data:
            kwargs["methods"] = _choices(data["methods"], "methods", tuple(METHODS))
        if "seeds" in data:
            kwargs["seeds"] = tuple(_int(s, "seed", 0) for s in _list(data["seeds"], "seeds", "[0, 1, 2]"))
        if "n" in data:
            kwargs["n"] = _int(data["n"], "n", 2)
        if "iterations" in data:
            kwargs["iterations"] = _int(data["iterations"], "iterations", 1)
        if "metrics" in data:
            kwargs["metrics"] = _choices(data["metrics"], "metrics", SWEEP_METRICS)
        grid = data.get("grid")
        if not isinstance(grid, dict) or not grid:
            raise ValueError(f"Invalid grid in {source}: give at least one setting to sweep, e.g. [grid] "
                             f"top_n_pct = [5, 10, 20]; allowed settings: {', '.join(SWEEP_SETTINGS)}.")
        entries = []
        for name, values in grid.items():
            if name not in SWEEP_SETTINGS:
                raise ValueError(f"Unknown grid setting {_show(name)}; allowed: {', '.join(SWEEP_SETTINGS)}.")
            setting = SWEEP_SETTINGS[name]
            example = "[true, false]" if setting.kind is bool else "[5, 10, 20]"
            checked = tuple(setting.check(v) for v in _list(values, f"grid.{name}", example))
            if len(set(checked)) != len(checked):
                raise ValueError(f"Invalid grid.{name}={list(values)!r}: a value is repeated.")
            entries.append((name, checked))
        config = cls(grid=tuple(entries), **kwargs)
        config._check_applicable()
        n_runs = len(plan(config, "."))
        if n_runs > MAX_RUNS:
            raise ValueError(f"Invalid sweep: {n_runs:,} runs (at most {MAX_RUNS:,}); sweep fewer values or seeds.")
        return config

    def _check_applicable(self) -> None:
        names = [name for name, _ in self.grid]
        if "lam" in names:
            others = [t for t in self.tasks if _base_task(t).task != "sintering_bulk"]
            if others:
                raise ValueError(f"Invalid grid setting 'lam' for task {others[0]!r}: λ weighs the bulk modulus of "
                                 "the sintering_bulk tasks only (tasks = [\"sintering_bulk\"]).")
        agent = [name for name in names if SWEEP_SETTINGS[name].where != "task"]
        for key in self.methods:
            method = METHODS[key]
            if agent and method.kind not in ("dqn", "random"):
                raise ValueError(f"Invalid grid setting {agent[0]!r} for method {key!r}: agent settings apply to "
                                 f"the DQN methods ({', '.join(DQN_METHODS)}); sweep {key!r} separately.")
            if "oracle_threshold" in names and method.kind == "dqn" and not method.constraints:
                raise ValueError(f"Invalid grid setting 'oracle_threshold' for method {key!r}: it has no learned "
                                 "oracles (use constrained_dqn or paper_dqn).")

    def combinations(self) -> list[dict[str, Any]]:
        """Every combination of the grid's values, in the order of the file (last setting fastest)."""
        names = [name for name, _ in self.grid]
        return [dict(zip(names, values)) for values in itertools.product(*(values for _, values in self.grid))]

    def as_toml(self) -> str:
        """This config as TOML text (what :func:`load_config` reads back)."""
        def value(v: Any) -> str:
            if isinstance(v, bool):
                return "true" if v else "false"
            if isinstance(v, str):
                return f'"{v}"'
            if isinstance(v, (tuple, list)):
                return "[" + ", ".join(value(x) for x in v) + "]"
            return repr(v)

        lines = [f"{key} = {value(getattr(self, key))}" for key in CONFIG_KEYS if key != "grid"]
        lines += ["", "[grid]"] + [f"{name} = {value(values)}" for name, values in self.grid]
        return "\n".join(lines) + "\n"


def load_config(path: str | Path) -> SweepConfig:
    """Read and check a sweep config file (TOML).

    Raises:
        ValueError: the file is missing, is not valid TOML, or has a bad key or value (named).
    """
    try:
        import tomllib  # Python >= 3.11
    except ImportError:  # pragma: no cover - Python 3.10
        try:
            import tomli as tomllib
        except ImportError:
            raise ImportError("Reading a sweep config needs Python >= 3.11 (tomllib) or: pip install tomli") from None

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"Invalid sweep config {str(path)[:200]!r}: no such file (see examples/sweep.toml).")
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"Invalid sweep config {str(path)[:200]!r}: not valid TOML ({exc}).") from None
    return SweepConfig.from_dict(data, source=repr(str(path)[:200]))


# ---------------------------------------------------------------------------------- the grid
def _base_task(key: str) -> BenchTask:
    if key == "sintering_bulk":
        return _lam_task(125.0)
    return TASKS_BY_KEY[key]


def _lam_task(lam: float) -> BenchTask:
    key = f"sintering_bulk_{lam:g}"
    if key in TASKS_BY_KEY:
        return TASKS_BY_KEY[key]
    return BenchTask(key, f"Sinter+Bulk (λ = {lam:g})", "sintering_bulk", lam, ("sintering_temperature",
                                                                               "bulk_modulus"), (-1, 1))


def _format(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return f"{value:g}" if isinstance(value, float) else str(value)


def combination_name(combination: dict[str, Any]) -> str:
    """The agent settings of a combination as ``name=value,...`` (``default``: none).

    Example:
        >>> combination_name({"top_n_pct": 5.0, "gradient_steps": 10, "lam": 62.5})
        'top_n_pct=5,gradient_steps=10'
    """
    parts = [f"{k}={_format(v)}" for k, v in combination.items() if SWEEP_SETTINGS[k].where != "task"]
    return ",".join(parts) or "default"


def derived_method(method: Method, combination: dict[str, Any]) -> Method:
    """``method`` with the combination's agent settings: its own key, label and changed fields.

    Example:
        >>> m = derived_method(METHODS["paper_dqn"], {"top_n_pct": 5.0, "learning_rate": 0.001})
        >>> m.key, m.top_n_pct, m.model_kwargs
        ('paper_dqn[top_n_pct=5,learning_rate=0.001]', 5.0, {'learning_rate': 0.001})
    """
    agent = {k: v for k, v in combination.items() if SWEEP_SETTINGS[k].where != "task"}
    if not agent or method.kind == "random":
        return method
    name = combination_name(agent)
    fields = {k: v for k, v in agent.items() if SWEEP_SETTINGS[k].where == "method"}
    model_kwargs = dict(method.model_kwargs)
    model_kwargs.update((k, v) for k, v in agent.items() if SWEEP_SETTINGS[k].where == "model")
    return dataclasses.replace(method, key=f"{method.key}[{name}]", label=f"{method.label} [{name}]",
                               model_kwargs=model_kwargs, **fields)


@dataclass(frozen=True)
class SweepRun:
    """One planned run with the sweep coordinates it belongs to."""

    spec: RunSpec
    task_group: str  # the task as configured (λ variants share one)
    method_group: str  # the method's key in METHODS
    combination: dict[str, Any]


def _plan(config: SweepConfig, out: str | Path) -> list[SweepRun]:
    out = Path(out)
    runs: list[SweepRun] = []
    seen: set[str] = set()
    for seed in config.seeds:
        directory = out / "sweep_runs" / "all" / "random" / f"seed{seed}"  # one per seed serves every task
        runs.append(SweepRun(RunSpec(_base_task(config.tasks[0]), METHODS["random"], seed, n=config.n,
                                     iterations=config.iterations, directory=str(directory)), "all", "random", {}))
        seen.add(str(directory))
        for task_key in config.tasks:
            for method_key in config.methods:
                if method_key == "random":
                    continue
                for combination in config.combinations():
                    task = _lam_task(combination["lam"]) if "lam" in combination else _base_task(task_key)
                    method = derived_method(METHODS[method_key], combination)
                    directory = (out / "sweep_runs" / task.key / method_key / combination_name(combination)
                                 / f"seed{seed}")
                    if str(directory) in seen:  # e.g. two sintering_bulk tasks under a λ grid
                        continue
                    seen.add(str(directory))
                    runs.append(SweepRun(RunSpec(task, method, seed, n=config.n, iterations=config.iterations,
                                                 directory=str(directory)), task_key, method_key, combination))
    return runs


def plan(config: SweepConfig, out: str | Path) -> list[RunSpec]:
    """Every run of the sweep (the random baseline once per seed first), with its folder under ``out``."""
    return [run.spec for run in _plan(config, out)]


# ------------------------------------------------------------------------------------ driver
def run_sweep(config: SweepConfig, out: str | Path = "runs/sweep", *, backend: Any = None, progress: bool = True,
              force: bool = False, command: str | None = None) -> str:
    """Run (or resume) a sweep on ``backend`` and write its report; returns the Markdown.

    ``out`` is locked while the sweep runs. A finished run is reused only when every setting that
    produced it matches; before any work, runs of other recorded settings raise ``ValueError``
    naming the setting (``force=True`` reruns them). A run that raises does not stop the others:
    :class:`agents.backends.RunsFailed` names each once all have finished.

    Example:
        ``run_sweep(load_config("examples/sweep.toml"), "/tmp/sweep", backend=RayBackend())``
    """
    import predictors

    from agents.runs import predictor_ids, run_settings, settings_conflict
    from oxide_env.files import DirectoryLock, check_output_folder

    if not isinstance(config, SweepConfig):
        raise TypeError(f"Invalid config {_show(config)}: expected a SweepConfig (load_config(path)).")
    out = check_output_folder(out)
    with DirectoryLock(out):
        runs = _plan(config, out)
        ids = predictor_ids([predictors.load(name) for name in predictors.PREDICTOR_NAMES])
        conflicts = [c for r in runs
                     if (c := settings_conflict(r.spec.task, r.spec.method, r.spec.seed, directory=Path(r.spec.directory),
                                        settings=run_settings(r.spec.task, r.spec.method, r.spec.seed, n=config.n,
                                                              iterations=config.iterations, predictors=ids),
                                        iterations=config.iterations)) is not None]
        if conflicts and not force:
            raise ValueError(f"{len(conflicts)} run(s) in {str(out)!r} were made with other settings, e.g. "
                             f"{conflicts[0]}; use another --out, or --force to rerun them.")
        specs = [dataclasses.replace(r.spec, force=force) for r in runs]
        t0 = time.perf_counter()
        results = execute_runs(specs, backend, progress=progress, desc="sweep")
        wall = time.perf_counter() - t0
        if command is None:
            command = f"oxide-rl sweep CONFIG --out {out}"
        return write_sweep_report(out, config, runs, results, wall_seconds=wall, command=command)


def summary_rows(config: SweepConfig, runs: Sequence[SweepRun], results: Sequence[dict[str, Any]]
                 ) -> list[dict[str, Any]]:
    """One row per (task, method, combination) and per task for the random baseline: its coordinates
    (``task``, ``method``, each swept setting) and the mean / ``_sd`` over seeds of every metric."""
    from agents.benchmark import summarize_runs

    expanded = []
    keys: dict[tuple[str, str], SweepRun] = {}
    task_keys = list(dict.fromkeys(r.spec.task.key for r in runs if r.method_group != "random"))
    for run, result in zip(runs, results):
        if run.method_group == "random":
            expanded += [dict(result, task=t) for t in task_keys]
        else:
            expanded.append(result)
            keys.setdefault((run.spec.task.key, run.spec.method.key), run)
    summary = summarize_runs(expanded)
    names = [name for name, _ in config.grid]
    rows = []
    for (task_key, method_key), run in keys.items():
        row = {"task": task_key, "method": run.method_group, "run_key": method_key, "task_group": run.task_group}
        row.update({name: run.combination.get(name) for name in names})
        row.update(summary[(task_key, method_key)])
        rows.append(row)
    for task_key in task_keys:
        row = {"task": task_key, "method": "random", "run_key": "random", "task_group": task_key}
        row.update({name: None for name in names})
        row.update(summary[(task_key, "random")])
        rows.append(row)
    return rows


def _columns(config: SweepConfig, props: Sequence[str]) -> list[str]:
    wanted = [*config.metrics, "pct_plausible", "pct_unique", "pct_novel", "elmd_mean",
              *(f"{p}_mean" for p in props), *(f"{p}_shift" for p in props), "train_seconds"]
    return list(dict.fromkeys(wanted))


def _cell(value: Any, sd: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    digits = 0 if abs(value) >= 100 else 2
    text = f"{value:.{digits}f}"
    return text if sd is None or (isinstance(sd, float) and math.isnan(sd)) else f"{text} ± {sd:.{digits}f}"


def write_sweep_report(out: Path, config: SweepConfig, runs: Sequence[SweepRun], results: Sequence[dict[str, Any]],
                       *, wall_seconds: float, command: str) -> str:
    """Write ``sweep.md``, ``sweep.csv`` and ``sweep.png``; return the Markdown."""
    from oxide_env.files import atomic_write_text

    rows = summary_rows(config, runs, results)
    names = [name for name, _ in config.grid]
    props = [p for p in PROPERTIES if any(p in r.spec.task.properties for r in runs if r.method_group != "random")]
    columns = _columns(config, props)
    n_runs = len({r.spec.directory for r in runs})
    lines = ["# Sweep", "",
             f"{len(config.combinations())} combination(s) of {', '.join(names)} x tasks {', '.join(config.tasks)} "
             f"x methods {', '.join(config.methods)} x seeds {', '.join(map(str, config.seeds))}: {n_runs} runs "
             f"({config.iterations} iterations, {config.n:,} materials each; the random baseline once per seed). "
             "Cells: mean ± std over seeds; *shift*: (mean − random mean) / random std against the random "
             "baseline of the same seed.", "",
             "| task | method | " + " | ".join(names) + " | seeds | " + " | ".join(columns) + " |",
             "|" + "---|" * (3 + len(names) + len(columns))]
    for row in rows:
        cells = [row["task"], row["method"], *("" if row[n] is None else _format(row[n]) for n in names),
                 str(int(row["n_seeds"]))]
        cells += [_cell(row.get(c), row.get(f"{c}_sd")) for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    train = sum(r["train_seconds"] + r["generate_seconds"] + r["evaluate_seconds"] for r in results)
    lines += ["", f"Run time summed over the runs: {train / 60:.1f} min; this invocation took {wall_seconds / 60:.1f} "
              "min (finished runs are reused, not redone).", ""]
    if _plot(out, config, rows):
        lines += ["![metrics against each setting](sweep.png)", ""]
    lines += ["Config:", "", "```toml", config.as_toml().rstrip(), "```", "", f"Command: `{command}`", ""]
    text = "\n".join(lines)
    atomic_write_text(out / "sweep.md", text)
    keys = ["task", "method", "run_key", *names, "n_seeds"]
    keys += [k for row in rows for k in row if k not in keys and k != "task_group"]
    keys = list(dict.fromkeys(keys))
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=keys, extrasaction="ignore")
    writer.writeheader()
    writer.writerows([{k: "" if row.get(k) is None else row.get(k) for k in keys} for row in rows])
    atomic_write_text(out / "sweep.csv", buffer.getvalue())
    return text


def _plot(out: Path, config: SweepConfig, rows: Sequence[dict[str, Any]]) -> bool:
    """``sweep.png``: each metric (rows) against each swept setting (columns); ``False`` if nothing to plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from oxide_env.files import atomic_save_figure

    names = [name for name, _ in config.grid]
    agent_rows = [r for r in rows if r["method"] != "random"]
    if not agent_rows:
        return False
    metrics = list(config.metrics)
    fig, axes = plt.subplots(len(metrics), len(names), figsize=(4.6 * len(names), 3.4 * len(metrics)),
                             squeeze=False)
    for j, name in enumerate(names):
        others = [o for o in names if o != name]
        groups: dict[tuple, list[dict[str, Any]]] = {}
        for r in agent_rows:
            groups.setdefault((r["task_group"], r["method"], *(r[o] for o in others)), []).append(r)
        for i, metric in enumerate(metrics):
            ax = axes[i][j]
            for key, members in groups.items():
                members = sorted(members, key=lambda r: float(r[name]))
                x = np.array([float(r[name]) for r in members])
                y = np.array([r.get(metric, math.nan) for r in members], dtype=float)
                sd = np.array([r.get(f"{metric}_sd", math.nan) for r in members], dtype=float)
                label = " / ".join([key[0], key[1], *(f"{o}={_format(v)}" for o, v in zip(others, key[2:]))])
                ax.errorbar(x, y, yerr=None if np.all(np.isnan(sd)) else np.nan_to_num(sd), marker="o",
                            capsize=3, label=label)
            values = dict(config.grid)[name]
            if SWEEP_SETTINGS[name].kind is bool:
                ax.set_xticks([0, 1], ["false", "true"])
            elif len(values) <= 10:
                ax.set_xticks(sorted(float(v) for v in values), [_format(v) for v in sorted(values)])
            ax.set_xlabel(name)
            ax.set_ylabel(metric)
            if i == 0 and len(groups) <= 12:
                ax.legend(fontsize=7)
    fig.suptitle("Sweep: mean over seeds (error bars: std over seeds)")
    fig.tight_layout()
    atomic_save_figure(fig, out / "sweep.png", dpi=110)
    plt.close(fig)
    return True
