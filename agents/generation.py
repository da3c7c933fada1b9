"""Fast batched generation with a trained agent (no Gymnasium loop).

All ``n`` episodes advance together: features, masks and the policy's choices are computed
for the whole batch at every step, which is what makes thousands of materials per second
possible on a CPU.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from oxide_env.chemistry.checks import check_number
from oxide_env.chemistry.composition import counts_to_formulas
from oxide_env.chemistry.elements import N_ELEMENTS
from oxide_env.chemistry.episode import N_ACTIONS, N_STEPS
from oxide_env.core import EpisodeBatch
from oxide_env.files import atomic_write_text


def _choose(model: Any, obs: np.ndarray, masks: np.ndarray, generator: torch.Generator,
            rows: np.ndarray) -> np.ndarray:
    """The policy's actions (top-n% sampling, no epsilon); ``obs``/``masks`` of distinct states, ``rows`` maps."""
    policy = model.policy
    device = policy.device
    obs_t = torch.as_tensor(obs, device=device, dtype=torch.float32)
    masks_t = torch.as_tensor(masks, device=device)
    rows_t = torch.as_tensor(rows, device=device, dtype=torch.long)
    with torch.no_grad():
        actions = policy._predict(obs_t, deterministic=False, action_masks=masks_t, generator=generator, rows=rows_t)
    return actions.cpu().numpy()


def _scores_distinct_states(model: Any) -> bool:
    """Whether the policy takes ``rows=`` (ConstrainedDQN's): then each distinct state is scored once."""
    from agents.policies import ConstrainedDQNPolicy

    return isinstance(getattr(model, "policy", None), ConstrainedDQNPolicy)


def _play(model: Any, m: int, generator: torch.Generator, core_kwargs: Mapping[str, Any]) -> np.ndarray:
    """Final compositions ``(m, 80)`` of ``m`` episodes played together on the episode core.

    A :class:`~agents.dqn.ConstrainedDQN` samples with ``generator``; any other masked SB3
    algorithm acts through ``model.predict(obs, action_masks=..., deterministic=False)`` (with
    torch's global generator, seeded by :func:`generate_counts`).
    """
    batch = EpisodeBatch(m, **core_kwargs)
    history = np.zeros(m, dtype=np.int64)  # one id per distinct action sequence
    distinct_states = _scores_distinct_states(model)
    for _ in range(N_STEPS):
        if distinct_states:
            # many episodes share a state (all of them at step 0): score each distinct state once
            _, first, inverse = np.unique(history, return_index=True, return_inverse=True)
            inverse = inverse.reshape(-1)
            actions = _choose(model, batch.obs[first], batch.masks[first], generator, inverse)
            history = inverse * N_ACTIONS + actions
        else:
            actions, _ = model.predict(batch.obs, action_masks=batch.masks, deterministic=False)
        batch.step(np.asarray(actions).reshape(-1))
    return batch.counts.copy()


def generate_counts(model: Any, n: int, seed: int | None = None, *, batch_size: int = 4096,
                    exact_masks: str | None = None, constraint_lookahead: bool = False, reward_model: Any = None,
                    distinct: bool = False, max_rounds: int = 100, progress: bool = False,
                    normalize_observations: bool = False) -> np.ndarray:
    """Final compositions ``(n, 80)`` of ``n`` episodes played by ``model``'s policy.

    Args:
        model: a :class:`~agents.dqn.ConstrainedDQN` (its policy's ``_predict`` chooses the actions), or
            any SB3 algorithm whose ``predict`` takes ``action_masks`` (e.g. sb3-contrib's ``MaskablePPO``).
        n: number of materials.
        seed: seed of the sampling generator (same seed, same list).
        batch_size: episodes advanced together.
        exact_masks: also apply the environment's exact constraint masks.
        constraint_lookahead: at the last step, only the oxygen counts whose final design meets
            ``reward_model``'s design constraints (as the env's option of that name).
        reward_model: the reward model the lookahead asks (needed only with it; never used for rewards).
        distinct: return ``n`` *distinct* reduced formulas: episodes are played in rounds and a
            material whose reduced formula was already generated is dropped and redrawn (first
            occurrences are kept, in order). Raises ``ValueError`` if the policy cannot produce
            ``n`` of them in ``max_rounds`` rounds.
        progress: show a progress bar.
        normalize_observations: the policy was trained on an environment with
            ``normalize_observations=True``: feed it normalised observations.
    """
    from tqdm.auto import tqdm

    from oxide_env.chemistry.metrics import composition_keys

    n = check_number(n, "n", integer=True, minimum=0)
    core_kwargs = dict(reward_model=reward_model if constraint_lookahead else None, exact_masks=exact_masks,
                       constraint_lookahead=constraint_lookahead, normalize_observations=normalize_observations)
    EpisodeBatch(1, **core_kwargs)  # bad settings raise here, before any work
    generator = torch.Generator(device=model.device)
    seed = int(seed) if seed is not None else int(np.random.SeedSequence().entropy % (2**62))
    generator.manual_seed(seed)
    if not _scores_distinct_states(model):
        torch.manual_seed(seed)  # SB3 policies sample with torch's global generator
    if not distinct:
        out = np.zeros((n, N_ELEMENTS), dtype=np.int64)
        for start in tqdm(range(0, n, batch_size), desc="generate", unit="batch", disable=not progress):
            m = min(batch_size, n - start)
            out[start : start + m] = _play(model, m, generator, core_kwargs)
        return out
    rows: list[np.ndarray] = []
    seen: set = set()
    with tqdm(total=n, desc="generate (distinct)", unit="material", disable=not progress) as bar:
        for _ in range(max_rounds):
            if len(rows) >= n:
                break
            counts = _play(model, min(batch_size, max(2 * (n - len(rows)), 64)), generator, core_kwargs)
            for row, key in zip(counts, composition_keys(counts)):
                if key not in seen and len(rows) < n:
                    seen.add(key)
                    rows.append(row)
                    bar.update(1)
    if len(rows) < n:
        raise ValueError(f"Only {len(rows)} distinct materials after {max_rounds} rounds (n={n}): ask for fewer, "
                         "raise max_rounds, or sample more widely (a larger top_n_pct).")
    return np.stack(rows) if rows else np.zeros((0, N_ELEMENTS), dtype=np.int64)


def generate(model: Any, n: int, seed: int | None = None, **kwargs: Any) -> list[str]:
    """Formulas of ``n`` generated materials (see :func:`generate_counts`)."""
    return counts_to_formulas(generate_counts(model, n, seed, **kwargs))


MATERIALS_COLUMNS = ("formula", "generated")
"""The first two columns of every CSV of generated materials; property columns follow."""


def write_materials_csv(path: str | Path, generated: Sequence[str], properties: Mapping[str, np.ndarray]) -> Path:
    """Write generated materials as CSV, atomically (a temporary file, then a rename).

    Columns: ``formula`` (the reduced formula, e.g. ``CaO``), ``generated`` (the amounts as
    generated, e.g. ``Ca8O8``), then one column per property under its bare name
    (``formation_energy`` in eV/atom, ``bulk_modulus`` and ``shear_modulus`` in ln(GPa),
    ``sintering_temperature`` in °C: the units of :data:`predictors.UNITS`), 4 significant digits.
    ``oxide-rl generate`` and the Table 1 benchmark's ``formulas.csv`` use it.

    Args:
        path: the CSV file to write (its folder is created).
        generated: formulas as generated, one per material.
        properties: ``name -> values`` (one value per material).

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "out.csv"
        >>> _ = write_materials_csv(path, ["Ca8O8"], {"bulk_modulus": np.array([4.8123])})
        >>> print(path.read_text().strip())
        formula,generated,bulk_modulus
        CaO,Ca8O8,4.812
    """
    from oxide_env.chemistry.composition import counts_to_formula, formulas_to_counts

    path = Path(path)
    generated = list(generated)
    values = {name: np.asarray(v, dtype=np.float64).reshape(-1) for name, v in properties.items()}
    for name, v in values.items():
        if name in MATERIALS_COLUMNS or len(v) != len(generated):
            raise ValueError(f"Invalid property {name!r}: expected a new column name with {len(generated)} values "
                             f"(got {len(v)}).")
    counts = formulas_to_counts(generated) if generated else np.zeros((0, N_ELEMENTS), dtype=np.int64)
    reduced = [counts_to_formula(row, reduce=True) for row in counts]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*MATERIALS_COLUMNS, *values])
    for i, formula in enumerate(generated):
        writer.writerow([reduced[i], formula, *(f"{v[i]:.4g}" for v in values.values())])
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(path, buffer.getvalue())


def read_materials_csv(path: str | Path) -> tuple[list[str], list[str], dict[str, np.ndarray]]:
    """``(formulas, generated, properties)`` of a CSV of :func:`write_materials_csv`.

    A file without a ``generated`` column (written before it existed) gives ``generated = formulas``.
    """
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    formulas = [r["formula"] for r in rows]
    generated = [r.get("generated") or r["formula"] for r in rows]
    names = [k for k in (rows[0] if rows else {}) if k not in MATERIALS_COLUMNS]
    return formulas, generated, {k: np.array([float(r[k]) for r in rows]) for k in names}
