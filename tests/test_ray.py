"""The Ray backend (agents/backends.py) on a local Ray instance of 2 CPUs that this module starts and stops.

Same results as the serial backend; a driver killed mid-benchmark loses no finished run and the rerun
resumes; a run that raises on a worker is reported while the others finish. Skipped where Ray is not
installed (``pip install -e ".[ray]"``; ``.ci/run`` installs it).

Ray >= 2.59 turns token authentication on for a local instance and keeps the token in
``~/.ray/auth_token``; this module gives the instance its own token through ``RAY_AUTH_TOKEN``
instead (nothing is written to the home folder), and the subprocess driver joins with it.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason='Ray is not installed: pip install -e ".[ray]" to test the Ray backend')

from agents.backends import ERROR_FILE, RayBackend, RunsFailed, RunSpec, execute_runs  # noqa: E402
from agents.benchmark import run_table1  # noqa: E402
from agents.runs import METHODS, TASKS_BY_KEY, Method  # noqa: E402

TABLE = dict(seeds=[0], n=20, iterations=1, tasks=["bulk_modulus", "formation_energy"],
             methods=["constrained_dqn", "maskable_ppo", "random"], paper_lists=None, progress=False)
"""Two tasks x two methods (+ the random baseline, which the shifts need), a tiny budget: 5 runs."""


@pytest.fixture(scope="module")
def cluster():
    """A local Ray instance of 2 CPUs with its own auth token, shut down after this module.

    ``RAY_AUTH_MODE`` is left to Ray (set before ``import ray`` it would be read; set later it is not):
    unset, Ray turns token authentication on for the new instance itself and uses ``RAY_AUTH_TOKEN``.
    """
    mode = os.environ.get("RAY_AUTH_MODE")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAY_AUTH_TOKEN", secrets.token_hex(32))
        mp.setenv("OMP_NUM_THREADS", "1")
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=100 * 1024**2)
        try:
            yield ray.get_runtime_context().gcs_address
        finally:
            ray.shutdown()
            if mode is None:  # Ray set it to "token" for this process
                os.environ.pop("RAY_AUTH_MODE", None)


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    """The reference: the same benchmark on the serial backend."""
    out = tmp_path_factory.mktemp("serial")
    return out, run_table1(out=out, **TABLE)


def _results(out: Path) -> dict[str, tuple[dict, bytes]]:
    runs = sorted((out / "table1_runs").rglob("result.json"))
    return {str(p.parent.relative_to(out)): (json.loads(p.read_text())["metrics"],
                                             (p.parent / "formulas.csv").read_bytes()) for p in runs}


def test_ray_gives_the_same_results_as_serial(cluster, serial, tmp_path):
    out, text = serial
    ray_text = run_table1(out=tmp_path, backend=RayBackend(), **TABLE)
    reference = _results(out)
    assert len(reference) == 5 and _results(tmp_path) == reference  # every metric and material, identical
    assert ray_text.split("## Wall time")[0] == text.split("## Wall time")[0]


def _kill_once_a_run_has_finished(options: list[str], out: Path) -> dict[Path, bytes]:
    """Start ``oxide-rl benchmark table1`` on ``TABLE`` in a subprocess, SIGKILL it once a run has finished."""
    command = [sys.executable, "-m", "agents.cli", "benchmark", "table1", *options, "--seeds", "0", "--n", "20",
               "--iterations", "1", "--tasks", *TABLE["tasks"], "--methods", *TABLE["methods"],
               "--paper-lists", "none", "--out", str(out)]
    driver = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not list(out.glob("table1_runs/**/result.json")) and driver.poll() is None:
            assert time.monotonic() < deadline, "no run finished within 120 s"
            time.sleep(0.05)
    finally:
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
    finished = {p: p.read_bytes() for p in out.glob("table1_runs/**/result.json")}
    assert finished and not (out / "table1.md").exists()
    return finished


def test_killed_driver_loses_no_finished_run_and_the_rerun_on_ray_resumes(cluster, serial, tmp_path):
    """The driver is killed once a run has finished; the same benchmark rerun on Ray keeps it and completes."""
    finished = _kill_once_a_run_has_finished([], tmp_path)
    run_table1(out=tmp_path, backend=RayBackend(), **TABLE)  # the same command again, now on Ray
    assert all(p.read_bytes() == data for p, data in finished.items())  # kept, not redone
    assert _results(tmp_path) == _results(serial[0])


@pytest.mark.slow
def test_killed_ray_driver_on_a_cluster_loses_no_finished_run(cluster, serial, tmp_path):
    """A driver that joined the cluster (--address) is killed once a run has finished; the rerun completes."""
    finished = _kill_once_a_run_has_finished(["--backend", "ray", "--address", cluster], tmp_path)
    run_table1(out=tmp_path, backend=RayBackend(), **TABLE)
    assert all(p.read_bytes() == data for p, data in finished.items())
    assert _results(tmp_path) == _results(serial[0])


def test_a_run_that_raises_on_a_worker_is_reported_and_the_others_finish(cluster, tmp_path):
    broken = Method("broken", "a method that raises", "no_such_kind")
    specs = [RunSpec(TASKS_BY_KEY["bulk_modulus"], broken, 0, n=20, iterations=1, directory=str(tmp_path / "a")),
             RunSpec(TASKS_BY_KEY["bulk_modulus"], METHODS["random"], 1, n=20, iterations=1,
                     directory=str(tmp_path / "b"))]
    with pytest.raises(RunsFailed, match=r"(?s)1 finished.*broken / seed 0: ValueError: Invalid method kind") as info:
        execute_runs(specs, RayBackend(), progress=False)
    assert [f.spec.method.key for f in info.value.failures] == ["broken"]
    assert (tmp_path / "b" / "result.json").is_file() and "Traceback" in (tmp_path / "a" / ERROR_FILE).read_text()


def test_more_cpus_per_run_than_the_instance_has_is_refused(cluster):
    with pytest.raises(ValueError, match="Invalid cpus_per_run=3: the Ray cluster has 2 CPU"):
        list(RayBackend(cpus_per_run=3).map([], log=print))
