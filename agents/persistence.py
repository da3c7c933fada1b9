"""Saving and loading agents without pickle, and the exact state of a training run.

**Safe model files.** Stable-Baselines3 stores some settings of a model (its spaces, policy
and replay-buffer classes, schedules, last observation...) as cloudpickle blobs (``":serialized:"``
entries) in the zip's ``data`` JSON, and ``load`` unpickles them: a crafted file runs code.
:func:`save_model` writes SB3's zip plus ``oxide_rl.json``, plain JSON from which every such
entry is rebuilt; :func:`safe_custom_objects` hands SB3's ``load`` a replacement for every
``":serialized:"`` key (SB3 then never unpickles; the weights are read by ``torch.load(...,
weights_only=True)``, which SB3 2.x already does). A file that needs unpickling (saved by plain
SB3 or an older version of this project) is refused with a ``ValueError``; ``allow_pickle=True``
loads it anyway, with a warning, for files you trust.

**Training state.** :func:`training_state` / :func:`restore_training_state` capture what SB3's
own ``save`` leaves out and an exactly resumed run needs: the replay buffer, the random
generators (python, numpy, torch, the agent's sampling generator, every env and space), the
environment's reward cache (a predictor's output can differ in the last bit between batch
sizes), all as JSON and plain arrays (``np.load(allow_pickle=False)``).
"""

from __future__ import annotations

import io
import json
import random
import zipfile
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium import spaces

SETTINGS_NAME = "oxide_rl.json"
SETTINGS_FORMAT = 1
# placeholders: the model's ``_setup_model`` rebuilds these from plain settings (learning_rate,
# exploration_*), or ``learn`` resets them (the last observation)
_REBUILT = ("lr_schedule", "exploration_schedule", "clip_range", "clip_range_vf")
_RESET = ("_last_obs", "_last_episode_starts", "_last_original_obs")
_CLASSES = ("policy_class", "replay_buffer_class")
_FROM_SETTINGS = ("observation_space", "action_space", "train_freq", "policy_kwargs", "replay_buffer_kwargs")


# ------------------------------------------------------------------------------------- spaces
def space_to_json(space: spaces.Space) -> dict[str, Any] | None:
    """A ``Box`` or ``Discrete`` space as plain JSON (``None`` for other spaces).

    Example:
        >>> space_from_json(space_to_json(spaces.Discrete(800)))
        Discrete(800)
    """
    if isinstance(space, spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, spaces.Box):
        return {"type": "Box", "shape": list(space.shape), "dtype": np.dtype(space.dtype).str,
                "low": np.asarray(space.low, dtype=np.float64).ravel().tolist(),
                "high": np.asarray(space.high, dtype=np.float64).ravel().tolist()}
    return None


def space_from_json(spec: Any) -> spaces.Space:
    """Inverse of :func:`space_to_json`; ``ValueError`` for anything else."""
    if not isinstance(spec, dict) or spec.get("type") not in ("Box", "Discrete"):
        raise ValueError(f"Invalid space {str(spec)[:100]!r} in {SETTINGS_NAME}: expected a Box or Discrete.")
    if spec["type"] == "Discrete":
        return spaces.Discrete(int(spec["n"]), start=int(spec.get("start", 0)))
    shape = tuple(int(d) for d in spec["shape"])
    dtype = np.dtype(str(spec["dtype"]))
    low = np.asarray(spec["low"], dtype=np.float64).reshape(shape).astype(dtype)
    high = np.asarray(spec["high"], dtype=np.float64).reshape(shape).astype(dtype)
    return spaces.Box(low=low, high=high, shape=shape, dtype=dtype)


def _class_name(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _plain_json(value: Any) -> Any:
    """``value`` if it survives a JSON round trip unchanged in meaning, else ``None``."""
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError):
        return None


def _episode_infos(buffer: Any) -> list[dict[str, float]]:
    out = []
    for info in list(buffer or []):
        try:
            out.append({str(k): float(v) for k, v in dict(info).items()})
        except (TypeError, ValueError):
            return []
    return out


# --------------------------------------------------------------------------------- save / load
def model_settings(model: Any) -> dict[str, Any]:
    """The plain JSON that replaces every cloudpickled entry of ``model``'s SB3 zip."""
    train_freq = getattr(model, "train_freq", None)
    settings: dict[str, Any] = {
        "format": SETTINGS_FORMAT,
        "algorithm": _class_name(type(model)),
        "observation_space": space_to_json(model.observation_space),
        "action_space": space_to_json(model.action_space),
        "policy_class": _class_name(model.policy_class),
        "policy_kwargs": _plain_json(model.policy_kwargs),
        "ep_info_buffer": _episode_infos(model.ep_info_buffer),
        "ep_success_buffer": [bool(x) for x in list(model.ep_success_buffer or [])],
    }
    if getattr(model, "replay_buffer_class", None) is not None:
        settings["replay_buffer_class"] = _class_name(model.replay_buffer_class)
        settings["replay_buffer_kwargs"] = _plain_json(model.replay_buffer_kwargs)
    if train_freq is not None:
        unit = getattr(train_freq, "unit", "step")
        settings["train_freq"] = [int(train_freq.frequency), str(getattr(unit, "value", unit))]
    return settings


def save_model(model: Any, path: str | Path | io.BufferedIOBase, sb3_save: Any, **save_kwargs: Any) -> None:
    """SB3's zip with :data:`SETTINGS_NAME` added, written atomically.

    Args:
        model: the algorithm.
        path: target file (``.zip`` is added when it has no suffix, as SB3 does) or a binary file object.
        sb3_save: the unbound SB3 ``save`` to call into memory (``super().save``).
    """
    from oxide_env.files import atomic_write_bytes

    buffer = io.BytesIO()
    sb3_save(buffer, **save_kwargs)
    with zipfile.ZipFile(buffer, "a") as archive:
        archive.writestr(SETTINGS_NAME, json.dumps(model_settings(model), indent=1))
    if isinstance(path, (str, Path)):
        path = Path(path)
        if path.suffix == "":
            path = path.with_suffix(".zip")
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, buffer.getvalue())
    else:
        path.write(buffer.getvalue())


def read_model_file(path: str | Path | io.BufferedIOBase) -> tuple[io.BytesIO, str]:
    """The bytes of a model file (``.zip`` added to a path without suffix if needed) and its name."""
    if isinstance(path, (str, Path)):
        p = Path(path)
        if not p.is_file() and p.suffix != ".zip" and p.with_suffix(".zip").is_file():
            p = p.with_suffix(".zip")
        if not p.is_file():
            raise ValueError(f"Invalid model file {str(path)[:200]!r}: it does not exist.")
        return io.BytesIO(p.read_bytes()), str(p)
    return io.BytesIO(path.read()), getattr(path, "name", "<file object>")


def read_data_json(file: io.BytesIO) -> dict[str, Any]:
    """The plain JSON of an SB3 zip's ``data`` entry (nothing deserialized; ``{}`` if unreadable)."""
    try:
        with zipfile.ZipFile(file) as archive:
            data = json.loads(archive.read("data").decode())
    except (zipfile.BadZipFile, KeyError, ValueError):
        data = {}
    finally:
        file.seek(0)
    return data if isinstance(data, dict) else {}


def safe_custom_objects(file: io.BytesIO, name: str, allowed_classes: dict[str, type],
                        custom_objects: dict[str, Any] | None = None) -> dict[str, Any]:
    """``custom_objects`` for SB3's ``load`` that replace every ``":serialized:"`` entry of ``file``.

    Args:
        file: the model zip (rewound afterwards).
        name: its name, for messages.
        allowed_classes: ``"module:qualname" -> class`` the settings may name (policy, buffer).
        custom_objects: the caller's own replacements (kept; they win).

    Raises:
        ValueError: the file is no zip, or an entry could only be rebuilt by unpickling it.
    """
    try:
        with zipfile.ZipFile(file) as archive:
            names = archive.namelist()
            data = json.loads(archive.read("data").decode()) if "data" in names else {}
            settings = json.loads(archive.read(SETTINGS_NAME).decode()) if SETTINGS_NAME in names else None
    except (zipfile.BadZipFile, json.JSONDecodeError, UnicodeDecodeError, KeyError) as exc:
        raise ValueError(f"Invalid model file {name[:200]!r}: not a readable SB3 zip ({exc}).") from None
    finally:
        file.seek(0)
    objects = dict(custom_objects or {})
    serialized = [k for k, v in data.items() if isinstance(v, dict) and ":serialized:" in v and k not in objects]
    unsafe: list[str] = []
    window = data.get("_stats_window_size", 100)
    window = window if isinstance(window, int) and window > 0 else 100
    for key in serialized:
        if key in _REBUILT or key in _RESET:
            objects[key] = None
        elif settings is None or settings.get("format") != SETTINGS_FORMAT:
            unsafe.append(key)
        elif key in ("ep_info_buffer", "ep_success_buffer"):
            objects[key] = deque(settings.get(key, []), maxlen=window)
        elif key in _CLASSES and settings.get(key) in allowed_classes:
            objects[key] = allowed_classes[settings[key]]
        elif key in ("observation_space", "action_space") and settings.get(key) is not None:
            objects[key] = space_from_json(settings[key])
        elif key == "train_freq" and isinstance(settings.get(key), list):
            objects[key] = (int(settings[key][0]), str(settings[key][1]))
        elif key in _FROM_SETTINGS and settings.get(key) is not None:
            objects[key] = settings[key]
        else:
            unsafe.append(key)
    if unsafe:
        raise ValueError(
            f"Refusing to load {name[:200]!r}: its {', '.join(unsafe)} "
            f"{'is' if len(unsafe) == 1 else 'are'} stored as pickled Python objects, and unpickling a file "
            "can run any code. Files saved by this version of the project load without unpickling; for a "
            "file you trust, load it with allow_pickle=True (CLI: --allow-pickle) and save it again.")
    return objects


# ---------------------------------------------------------------------------- training state
def _generator_state(rng: np.random.Generator | None) -> dict[str, Any] | None:
    return None if rng is None else rng.bit_generator.state


def _set_generator_state(rng: np.random.Generator | None, state: dict[str, Any] | None) -> None:
    if rng is not None and state is not None:
        rng.bit_generator.state = state


def _sub_envs(venv: Any) -> list[Any]:
    return list(getattr(venv, "envs", []))


def _cores(venv: Any) -> list[Any]:
    """The episode cores (:class:`oxide_env.core.EpisodeBatch`) behind a VecEnv: its own or its copies'."""
    core = getattr(venv, "core", None)
    if core is not None:
        return [core]
    return [c for env in _sub_envs(venv) if (c := getattr(env.unwrapped, "_core", None)) is not None]


def at_episode_boundary(model: Any) -> bool:
    """True when every copy of the environment has just been reset (step 0 of an episode)."""
    cores = _cores(model.get_env())
    return bool(cores) and all(bool((c.steps == 0).all() and not c.done.any()) for c in cores)


def _rewarders(model_or_env: Any) -> list[Any]:
    venv = model_or_env.get_env() if hasattr(model_or_env, "get_env") else model_or_env
    out, seen = [], set()
    for core in _cores(venv):
        rewarder = core.reward_model
        if hasattr(rewarder, "cache_state") and id(rewarder) not in seen:
            seen.add(id(rewarder))
            out.append(rewarder)
    return out


def clear_reward_caches(model_or_env: Any) -> None:
    """Empty the reward caches of an env (or a model's env): the run then does not depend on earlier runs."""
    for rewarder in _rewarders(model_or_env):
        rewarder.clear_cache()


def _spaces_of(venv: Any) -> list[Any]:
    """Objects whose ``np_random`` and spaces' generators are part of a run's state."""
    envs = _sub_envs(venv)
    return [env.unwrapped for env in envs] if envs else [venv]


_BUFFER_ARRAYS = ("observations", "next_observations", "actions", "rewards", "dones", "timeouts",
                  "constraint_labels", "holdout")


def training_state(model: Any) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """``(json, arrays)``: what ``model.save`` leaves out and an exact resume needs.

    Take it at an episode boundary (:func:`at_episode_boundary`), between two rollouts.
    """
    arrays: dict[str, np.ndarray] = {}
    venv = model.get_env()
    envs = _spaces_of(venv)
    state: dict[str, Any] = {
        "python_random": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
        "numpy_random": None,
        "envs": [{"np_random": _generator_state(getattr(env, "_np_random", None)),
                  "action_space": _generator_state(env.action_space._np_random),
                  "observation_space": _generator_state(env.observation_space._np_random)} for env in envs],
        "model_action_space": _generator_state(model.action_space._np_random),
        "model_observation_space": _generator_state(model.observation_space._np_random),
    }
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state["numpy_random"] = [kind, int(pos), int(has_gauss), float(gauss)]
    arrays["rng/numpy_keys"] = np.asarray(keys, dtype=np.uint32)
    arrays["rng/torch"] = torch.get_rng_state().numpy()
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            arrays[f"rng/cuda{i}"] = s.numpy()
    generator = getattr(model, "_sampling_generator", None)
    if generator is not None:
        arrays["rng/sampling"] = generator.get_state().cpu().numpy()
    buffer = model.replay_buffer
    if buffer is not None:
        rows = buffer.buffer_size if buffer.full else buffer.pos
        for name in _BUFFER_ARRAYS:
            value = getattr(buffer, name, None)
            if isinstance(value, np.ndarray):
                arrays[f"buffer/{name}"] = value[:rows]
        if isinstance(getattr(buffer, "next_action_masks", None), np.ndarray):
            arrays["buffer/next_action_masks"] = np.packbits(buffer.next_action_masks[:rows], axis=-1)
        state["buffer"] = {"pos": int(buffer.pos), "full": bool(buffer.full), "rows": int(rows),
                           "buffer_size": int(buffer.buffer_size), "n_envs": int(buffer.n_envs),
                           "n_added": int(getattr(buffer, "_n_added", 0)),
                           "episode_positions": [list(map(int, p)) for p in getattr(buffer, "_episode_positions", [])]}
    for i, rewarder in enumerate(_rewarders(model)):
        for key, value in rewarder.cache_state().items():
            arrays[f"cache{i}/{key}"] = value
    if model._last_obs is not None:
        arrays["last_obs"] = np.asarray(model._last_obs)
    return state, arrays


def restore_training_state(model: Any, state: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    """Put a :func:`training_state` back into a model just loaded with the same env settings.

    Resets the env (every copy starts an episode, as at the checkpoint), then restores the
    replay buffer, reward caches and random generators.

    Raises:
        ValueError: the state does not fit this model (other buffer or env sizes, other start state).
    """
    venv = model.get_env()
    envs = _spaces_of(venv)
    if len(envs) != len(state["envs"]):
        raise ValueError(f"the checkpoint has {len(state['envs'])} envs, this run {len(envs)}")
    obs = venv.reset()
    if "last_obs" in arrays and not np.array_equal(np.asarray(obs), arrays["last_obs"]):
        raise ValueError("the environment's start state differs from the checkpoint's")
    model._last_obs = obs
    model._last_episode_starts = np.ones((venv.num_envs,), dtype=bool)
    buffer = model.replay_buffer
    info = state.get("buffer")
    if buffer is not None and info is not None:
        if (info["buffer_size"], info["n_envs"]) != (buffer.buffer_size, buffer.n_envs):
            raise ValueError("the checkpoint's replay buffer has another size")
        rows = info["rows"]
        for name in _BUFFER_ARRAYS:
            key = f"buffer/{name}"
            if key in arrays:
                getattr(buffer, name)[:rows] = arrays[key]
        if "buffer/next_action_masks" in arrays:
            n_actions = buffer.next_action_masks.shape[-1]
            buffer.next_action_masks[:rows] = np.unpackbits(arrays["buffer/next_action_masks"], axis=-1,
                                                            count=n_actions).astype(bool)
        buffer.pos, buffer.full = info["pos"], info["full"]
        if hasattr(buffer, "_n_added"):
            buffer._n_added = info["n_added"]
            buffer._episode_positions = [list(p) for p in info["episode_positions"]]
    for i, rewarder in enumerate(_rewarders(model)):
        prefix = f"cache{i}/"
        cache = {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}
        if cache:
            rewarder.restore_cache(cache)
    for env, s in zip(envs, state["envs"]):
        _set_generator_state(getattr(env, "_np_random", None), s["np_random"])
        _set_generator_state(env.action_space._np_random, s["action_space"])
        _set_generator_state(env.observation_space._np_random, s["observation_space"])
    _set_generator_state(model.action_space._np_random, state["model_action_space"])
    _set_generator_state(model.observation_space._np_random, state["model_observation_space"])
    version, internal, gauss = state["python_random"]
    random.setstate((version, tuple(internal), gauss))
    kind, pos, has_gauss, cached = state["numpy_random"]
    np.random.set_state((kind, arrays["rng/numpy_keys"], pos, has_gauss, cached))
    torch.set_rng_state(torch.from_numpy(np.array(arrays["rng/torch"], dtype=np.uint8)))
    if torch.cuda.is_available():
        cuda = [torch.from_numpy(np.array(arrays[k], dtype=np.uint8)) for k in sorted(arrays) if k.startswith("rng/cuda")]
        if cuda:
            torch.cuda.set_rng_state_all(cuda)
    generator = getattr(model, "_sampling_generator", None)
    if generator is not None and "rng/sampling" in arrays:
        generator.set_state(torch.from_numpy(np.array(arrays["rng/sampling"], dtype=np.uint8)))


def write_arrays(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Arrays to an uncompressed ``.npz`` (fast; read back with :func:`read_arrays`)."""
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


def read_arrays(path: Path) -> dict[str, np.ndarray]:
    """Arrays of :func:`write_arrays`, never unpickling."""
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def platform_info() -> dict[str, str]:
    """What a run's bits depend on besides its settings: the CPU and the numeric libraries.

    Torch's kernels (and the libraries under them) pick their code by the CPU's vector
    instructions (AVX2, AVX-512), which sum in other orders; one last bit that differs sends a DQN
    run down another trajectory, as another seed would. So a seed repeats a run bit for bit on the
    same CPU kind with the same libraries, and draws other designs elsewhere. A Table 1
    ``result.json`` and every checkpoint keep this as provenance, not as a setting: a finished run
    made elsewhere is reused, and a checkpoint made elsewhere resumes with a warning (the resumed
    run then repeats neither machine's uninterrupted run).

    Example:
        >>> sorted(platform_info())
        ['cpu', 'numba', 'numpy', 'python', 'stable_baselines3', 'torch', 'vector_isa']
    """
    import platform

    import numba
    import stable_baselines3

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {"cpu": cpu, "vector_isa": torch.backends.cpu.get_cpu_capability(), "python": platform.python_version(),
            "torch": torch.__version__, "numpy": np.__version__, "numba": numba.__version__,
            "stable_baselines3": stable_baselines3.__version__}
