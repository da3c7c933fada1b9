"""Where the benchmark's runs execute: one after another in this process, or as Ray tasks.

``oxide-rl benchmark table1`` and ``oxide-rl sweep`` build a list of :class:`RunSpec` (one
(task, method, seed) run each) and hand it to :func:`execute_runs` with a backend:

* :class:`SerialBackend` (the default, no extra dependency) runs them in this process.
* :class:`RayBackend` (``pip install -e ".[ray]"``) runs each as one Ray *task* on a local Ray
  instance or on a cluster (``address``), ``cpus_per_run`` CPUs each.

Why plain Ray tasks and not Ray Tune trials: a run is already a self-contained, resumable
function (:func:`agents.runs.run_one`) that keys its result by every setting that made it
(``result.json``) and checkpoints its own training; Tune would add a second result store,
trial folders and checkpoint scheme beside ours and its own search loop, while a grid needs
none of that. A Ray task per run keeps one code path: both backends call :func:`execute_run`,
so a run gives the same metrics on either (tested).

Faults. Each run writes its files atomically into its own folder and counts as finished once
its ``result.json`` is there, so killing the driver or a worker loses no finished run; rerunning
the same command reuses the finished ones and resumes interrupted DQN runs from their last
checkpoint. A worker that dies is retried by Ray (``max_retries``) and the retry resumes the same
way. A run that raises is reported (:class:`RunsFailed`, and ``error.txt`` in its folder with
the traceback) after every other run has finished; it does not stop them.

On a cluster, ``--out`` should be storage that every node sees at the same path (NFS, a
shared volume): workers write their runs there, and an interrupted run resumes from its
checkpoint on whichever node picks it up. Without shared storage the driver still receives each
finished run's ``result.json`` and ``formulas.csv`` and writes them into its own ``--out``.

Example:
    >>> import tempfile
    >>> from agents.runs import METHODS, TASKS_BY_KEY
    >>> out = Path(tempfile.mkdtemp())
    >>> spec = RunSpec(TASKS_BY_KEY["bulk_modulus"], METHODS["random"], seed=0, n=20, iterations=1,
    ...                directory=str(out / "random" / "seed0"))
    >>> [r["metrics"]["n"] for r in execute_runs([spec], SerialBackend(), progress=False)]
    [20]
"""

from __future__ import annotations

import contextlib
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agents.runs import BenchTask, Method

BACKENDS = ("serial", "ray")
ERROR_FILE = "error.txt"
MIRRORED_FILES = ("formulas.csv", "result.json")  # result.json last: it marks the run finished
RAY_INSTALL_HINT = 'pip install -e ".[ray]"  (or: pip install "ray>=2.40")'


@dataclass(frozen=True)
class RunSpec:
    """One run: train ``method`` on ``task`` with ``seed``, generate ``n`` materials, evaluate them.

    ``directory`` is the run's own folder (its ``result.json``, ``formulas.csv``, checkpoints).
    """

    task: BenchTask
    method: Method
    seed: int
    n: int
    iterations: int
    directory: str
    force: bool = False

    @property
    def label(self) -> str:
        return f"{self.task.key} / {self.method.key} / seed {self.seed}"


@dataclass
class RunOutcome:
    """What one run gave back: its result (``None`` if it failed), its error and its log lines."""

    spec: RunSpec
    result: dict[str, Any] | None = None
    error: str | None = None
    traceback: str | None = None
    log: list[str] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)
    seconds: float = 0.0


class RunsFailed(RuntimeError):
    """Some runs raised; every other run finished (and is kept). ``failures`` holds their outcomes."""

    def __init__(self, failures: Sequence[RunOutcome], finished: int) -> None:
        self.failures = list(failures)
        lines = [f"{len(self.failures)} run(s) failed ({finished} finished and kept; rerun the same command to "
                 "retry the failed ones, finished runs are reused):"]
        for outcome in self.failures:
            where = Path(outcome.spec.directory) / ERROR_FILE
            lines.append(f"  {outcome.spec.label}: {outcome.error} (traceback: {where})")
        super().__init__("\n".join(lines))


# ------------------------------------------------------------------------------ one run
_WORKER_STATE: dict[str, Any] = {}


def _predictors_and_reference() -> tuple[list[Any], Any]:
    """The five shipped predictors and the novelty reference, loaded once per process."""
    if "models" not in _WORKER_STATE:
        import predictors
        from predictors.data import training_keys

        _WORKER_STATE["models"] = [predictors.load(name) for name in predictors.PREDICTOR_NAMES]
        _WORKER_STATE["reference"] = training_keys()
    return _WORKER_STATE["models"], _WORKER_STATE["reference"]


@contextlib.contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    """Limit torch's intra-op threads and numba's parallel kernels (the policy's fused scoring) to
    ``threads`` during a run, so that runs sharing a machine do not oversubscribe its cores."""
    if threads is None:
        yield
        return
    import numba
    import torch

    before, numba_before = torch.get_num_threads(), numba.get_num_threads()
    torch.set_num_threads(threads)
    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    try:
        yield
    finally:
        torch.set_num_threads(before)
        numba.set_num_threads(numba_before)


def execute_run(spec: RunSpec, *, torch_threads: int | None = None, return_files: bool = False,
                log: Callable[[str], None] | None = None) -> RunOutcome:
    """Run one :class:`RunSpec` (:func:`agents.runs.run_one`); never raises for a failing run.

    The error of a run that raises is returned (and written with its traceback to
    ``<directory>/error.txt``, removed once the run succeeds). Both backends call this function.

    Args:
        spec: the run.
        torch_threads: torch's intra-op threads during the run (``None``: leave as is).
        return_files: also return the bytes of the finished run's ``formulas.csv`` and
            ``result.json`` (the Ray backend writes them on the driver's side too).
        log: called with each of the run's messages, prefixed with its label (``None``: they are
            kept in the outcome's ``log``).
    """
    from agents.runs import run_one
    from oxide_env.files import atomic_write_text

    outcome = RunOutcome(spec)
    directory = Path(spec.directory)
    t0 = time.perf_counter()
    try:
        models, reference = _predictors_and_reference()
        with _torch_threads(torch_threads):
            outcome.result = run_one(spec.task, spec.method, spec.seed, n=spec.n, iterations=spec.iterations,
                                     directory=directory, models=models, reference=reference, force=spec.force,
                                     log=outcome.log.append if log is None else
                                     (lambda message: log(f"{spec.label}: {message}")))
        (directory / ERROR_FILE).unlink(missing_ok=True)
        if return_files:
            outcome.files = {name: (directory / name).read_bytes() for name in MIRRORED_FILES
                             if (directory / name).is_file()}
    except Exception as exc:  # a failing run is reported, it does not stop the others
        outcome.result = None
        outcome.error = f"{type(exc).__name__}: {' '.join(str(exc).split())[:500]}"
        outcome.traceback = traceback.format_exc()
        with contextlib.suppress(OSError):
            directory.mkdir(parents=True, exist_ok=True)
            atomic_write_text(directory / ERROR_FILE, f"{spec.label}\n\n{outcome.traceback}")
    outcome.seconds = time.perf_counter() - t0
    return outcome


# ------------------------------------------------------------------------------- backends
class SerialBackend:
    """Run every run in this process, one after another (the default; needs no Ray).

    Args:
        torch_threads: torch's intra-op threads during each run (``None``: torch's default, all
            cores). Results do not depend on it; set 1 to compare like for like with Ray workers.
    """

    name = "serial"

    def __init__(self, *, torch_threads: int | None = None) -> None:
        if torch_threads is not None:
            _check_positive_int("torch_threads", torch_threads)
        self.torch_threads = torch_threads

    def describe(self) -> str:
        return "serial" + (f" (torch threads {self.torch_threads})" if self.torch_threads else "")

    def map(self, specs: Sequence[RunSpec], *, log: Callable[[str], None]) -> Iterator[RunOutcome]:
        """Yield each run's outcome as it finishes (here: in order); its messages go to ``log`` at once."""
        for spec in specs:
            yield execute_run(spec, torch_threads=self.torch_threads, log=log)


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ImportError(f"The Ray backend needs Ray, which is not installed: {RAY_INSTALL_HINT}") from None
    return ray


class RayBackend:
    """Run each run as one Ray task, on a local Ray instance or on a cluster.

    Args:
        address: the cluster to join (``"auto"``, ``"HOST:6379"``, ``"ray://HOST:10001"``; the
            head node's ``ray start --head`` prints it). ``None``: use the Ray instance this
            process already started (``ray.init(...)``), else start a local one.
        cpus_per_run: CPUs Ray reserves for each run; torch uses as many threads in it.
        num_cpus: size of a local instance started here (``None``: every CPU of this machine).
        max_retries: how often Ray retries a run whose worker process died (the retry resumes
            from the run's last checkpoint). A run that raises is reported, not retried.

    Token authentication: Ray >= 2.59 turns it on for a local instance it starts and keeps the
    token in ``~/.ray/auth_token`` (or ``RAY_AUTH_TOKEN`` / ``RAY_AUTH_TOKEN_PATH``); to join a
    cluster started with it, give this process the cluster's token the same way.

    Raises:
        ImportError: Ray is not installed (with the install command).
        ValueError: a bad ``cpus_per_run``, ``num_cpus`` or ``max_retries``.
    """

    name = "ray"

    def __init__(self, *, address: str | None = None, cpus_per_run: int = 1, num_cpus: int | None = None,
                 max_retries: int = 2) -> None:
        _check_positive_int("cpus_per_run", cpus_per_run)
        if num_cpus is not None:
            _check_positive_int("num_cpus", num_cpus)
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(f"Invalid max_retries={max_retries!r}: expected an integer >= 0.")
        if address is not None and (not isinstance(address, str) or not address.strip()):
            raise ValueError(f"Invalid address={str(address)[:200]!r}: expected e.g. 'auto', 'HOST:6379' or "
                             "'ray://HOST:10001' (what `ray start --head` prints).")
        _import_ray()
        self.address, self.cpus_per_run, self.num_cpus, self.max_retries = address, cpus_per_run, num_cpus, max_retries

    def describe(self) -> str:
        where = self.address or "local instance"
        return f"ray ({where}, {self.cpus_per_run} CPU(s) per run)"

    @contextlib.contextmanager
    def _cluster(self, log: Callable[[str], None]) -> Iterator[Any]:
        ray = _import_ray()
        started = False
        if not ray.is_initialized():
            kwargs: dict[str, Any] = dict(log_to_driver=False)
            if self.address is None:  # a new local instance (options only for one started here)
                kwargs.update(num_cpus=self.num_cpus, include_dashboard=False)
            ray.init(address=self.address, **kwargs)
            started = True
        try:
            total = float(ray.cluster_resources().get("CPU", 0.0))
            if total < self.cpus_per_run:
                message = (f"Invalid cpus_per_run={self.cpus_per_run}: the Ray cluster has {total:g} CPU(s); no "
                           "run could start (use --cpus-per-run 1, or add nodes).")
                if self.address is None:
                    raise ValueError(message)
                log(f"warning: {message}")
            yield ray
        finally:
            if started:
                ray.shutdown()

    def map(self, specs: Sequence[RunSpec], *, log: Callable[[str], None]) -> Iterator[RunOutcome]:
        """Submit every run at once; yield each outcome as soon as its run finishes."""
        with self._cluster(log) as ray:
            remote = ray.remote(_ray_execute).options(num_cpus=self.cpus_per_run, max_retries=self.max_retries,
                                                      retry_exceptions=False)
            # longest expected runs first (list scheduling: the last runs to start are the short ones)
            order = sorted(specs, key=expected_cost, reverse=True)
            pending = {remote.remote(spec, self.cpus_per_run): spec for spec in order}
            try:
                while pending:
                    done, _ = ray.wait(list(pending), num_returns=1)
                    for ref in done:
                        spec = pending.pop(ref)
                        try:
                            outcome = ray.get(ref)
                        except Exception as exc:  # the worker died more often than max_retries, etc.
                            outcome = RunOutcome(spec, error=f"{type(exc).__name__}: "
                                                 f"{' '.join(str(exc).split())[:500]}",
                                                 traceback=str(exc))
                        _mirror(outcome)
                        yield outcome
            finally:
                for ref in pending:  # interrupted: stop the runs still going (their checkpoints stay)
                    with contextlib.suppress(Exception):
                        ray.cancel(ref, force=True)


def expected_cost(spec: RunSpec) -> float:
    """A rough relative cost of a run, to start the long ones first (from the per-run times of Table 1).

    Example:
        >>> from agents.runs import METHODS, TASKS_BY_KEY
        >>> task = TASKS_BY_KEY["bulk_modulus"]
        >>> [expected_cost(RunSpec(task, METHODS[m], 0, n=1000, iterations=500, directory=m)) > 0
        ...  for m in ("maskable_ppo", "random")]
        [True, False]
    """
    method = spec.method
    if method.kind == "random":
        return 0.0
    if method.kind == "maskable_ppo":
        weight = 2.0
    else:  # ConstrainedDQN: exact masks and design constraints cost most, oracles a little
        weight = 1.0 + 0.8 * bool(method.exact_masks or method.design_constraints) + 0.2 * bool(method.constraints)
    return weight * (spec.iterations + 1) + spec.n / 100


def _ray_execute(spec: RunSpec, cpus: int) -> RunOutcome:
    """The Ray task: one run with ``cpus`` torch threads, its files returned for the driver."""
    return execute_run(spec, torch_threads=cpus, return_files=True)


def _mirror(outcome: RunOutcome) -> None:
    """Write a finished run's files on the driver's side unless it already sees the same bytes."""
    from oxide_env.files import atomic_write_bytes

    directory = Path(outcome.spec.directory)
    for name in MIRRORED_FILES:
        data = outcome.files.get(name)
        if data is None:
            continue
        path = directory / name
        try:
            same = path.read_bytes() == data
        except OSError:
            same = False
        if not same:
            directory.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(path, data)
    if outcome.error is not None and outcome.traceback and not (directory / ERROR_FILE).is_file():
        from oxide_env.files import atomic_write_text

        with contextlib.suppress(OSError):
            directory.mkdir(parents=True, exist_ok=True)
            atomic_write_text(directory / ERROR_FILE, f"{outcome.spec.label}\n\n{outcome.traceback}")
    outcome.files = {}


def _check_positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"Invalid {name}={value!r}: expected an integer >= 1.")


def make_backend(name: str = "serial", *, address: str | None = None, cpus_per_run: int | None = None,
                 num_cpus: int | None = None) -> SerialBackend | RayBackend:
    """The backend called ``name`` (``serial`` or ``ray``) with its options.

    ``address`` and ``num_cpus`` are Ray options (:class:`RayBackend`). ``cpus_per_run``: Ray's CPUs
    per run (default 1), and torch's threads per run on both backends (serial default: torch's own).

    Example:
        >>> make_backend("serial").describe()
        'serial'
        >>> make_backend("dask")
        Traceback (most recent call last):
        ...
        ValueError: Invalid backend 'dask'; choose 'serial' or 'ray'.
    """
    if name == "serial":
        if address is not None:
            raise ValueError(f"Invalid address={address!r} for the serial backend: --address is a Ray option "
                             "(add --backend ray).")
        if num_cpus is not None:
            raise ValueError(f"Invalid num_cpus={num_cpus!r} for the serial backend: it sizes a local Ray "
                             "instance (add --backend ray).")
        return SerialBackend(torch_threads=cpus_per_run)
    if name == "ray":
        return RayBackend(address=address, cpus_per_run=1 if cpus_per_run is None else cpus_per_run,
                          num_cpus=num_cpus)
    raise ValueError(f"Invalid backend {str(name)[:100]!r}; choose 'serial' or 'ray'.")


# ------------------------------------------------------------------------------- driver
def execute_runs(specs: Sequence[RunSpec], backend: SerialBackend | RayBackend | None = None, *,
                 progress: bool = True, desc: str = "runs") -> list[dict[str, Any]]:
    """Run every spec on ``backend`` (default serial); the results in the order of ``specs``.

    Runs of other recorded settings in their folders must have been ruled out before (the callers
    check every run's settings before any work). A progress bar counts finished runs; the log lines
    of each run are printed above it.

    Raises:
        RunsFailed: after every run has finished, if any raised (each named with its error).
    """
    from tqdm.auto import tqdm

    backend = backend or SerialBackend()
    results: dict[int, dict[str, Any]] = {}
    failures: list[RunOutcome] = []
    index = {spec.directory: i for i, spec in enumerate(specs)}  # outcomes may come back as copies
    if len(index) != len(specs):
        raise ValueError("Invalid runs: two of them share a folder; give each run its own directory.")
    bar = tqdm(total=len(specs), desc=desc, unit="run", disable=not progress)
    say = bar.write if progress else (lambda message: None)
    try:
        for outcome in backend.map(specs, log=say):
            for line in outcome.log:
                say(f"{outcome.spec.label}: {line}")
            if outcome.error is not None:
                failures.append(outcome)
                say(f"{outcome.spec.label}: FAILED: {outcome.error}")
            else:
                results[index[outcome.spec.directory]] = outcome.result
            bar.set_postfix_str(outcome.spec.label)
            bar.update(1)
    finally:
        bar.close()
    if failures:
        raise RunsFailed(failures, finished=len(results))
    return [results[i] for i in range(len(specs))]
