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

from oxide_env.chemistry.completion import completable_actions, hard_rule_mask_of
from oxide_env.chemistry.composition import counts_to_formulas
from oxide_env.chemistry.elements import N_ELEMENTS, OXYGEN_INDEX
from oxide_env.chemistry.features import featurize
from oxide_env.env import N_ACTIONS, N_COUNTS, N_STEPS
from oxide_env.files import atomic_write_text
from oxide_env.normalization import normalize_features


def hard_rule_masks(counts: np.ndarray, step: int) -> np.ndarray:
    """Hard-rule masks of a batch of states at the same step, bool ``(n, 800)``."""
    has_other = np.delete(counts, OXYGEN_INDEX, axis=1).sum(axis=1) > 0
    return np.where(has_other[:, None], hard_rule_mask_of(True, step), hard_rule_mask_of(False, step))


def observations(counts: np.ndarray, step: int, normalize: bool = False) -> np.ndarray:
    """The environment's observations of a batch of states at the same step, ``(n, 150)``.

    ``normalize``: as the environment's ``normalize_observations=True``.
    """
    obs = np.zeros((counts.shape[0], 145 + N_STEPS), dtype=np.float32)
    nonempty = counts.any(axis=1)
    if nonempty.any():
        obs[nonempty, :145] = featurize(counts[nonempty])
    if normalize:
        obs[:, :145] = normalize_features(obs[:, :145])
    if step < N_STEPS:
        obs[:, 145 + step] = 1.0
    return obs


def _play(model: Any, m: int, generator: torch.Generator, exact_masks: str | None,
          normalize: bool = False) -> np.ndarray:
    """Final compositions ``(m, 80)`` of ``m`` episodes advanced together."""
    counts = np.zeros((m, N_ELEMENTS), dtype=np.int64)
    history = np.zeros(m, dtype=np.int64)  # one id per distinct action sequence
    for step in range(N_STEPS):
        # many episodes share a state (all of them at step 0): score each distinct state once
        _, first, inverse = np.unique(history, return_index=True, return_inverse=True)
        states = counts[first]
        masks = hard_rule_masks(states, step)
        if exact_masks is not None:
            for i in range(states.shape[0]):
                exact = masks[i] & completable_actions(states[i], step, exact_masks)
                if exact.any():
                    masks[i] = exact
        actions = model._act(observations(states, step, normalize), masks, deterministic=False, epsilon=0.0,
                             generator=generator, inverse=inverse.reshape(-1))
        np.add.at(counts, (np.arange(m), actions // N_COUNTS), actions % N_COUNTS)
        history = inverse.reshape(-1) * N_ACTIONS + actions
    return counts


def generate_counts(model: Any, n: int, seed: int | None = None, *, batch_size: int = 4096,
                    exact_masks: str | None = None, distinct: bool = False, max_rounds: int = 100,
                    progress: bool = False, normalize_observations: bool = False) -> np.ndarray:
    """Final compositions ``(n, 80)`` of ``n`` episodes played by ``model``'s policy.

    Args:
        model: a :class:`~agents.dqn.ConstrainedDQN` (anything with ``_act``).
        n: number of materials.
        seed: seed of the sampling generator (same seed, same list).
        batch_size: episodes advanced together.
        exact_masks: also apply the environment's exact constraint masks.
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

    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"Invalid n={n!r}: expected an integer >= 0.")
    generator = torch.Generator(device=model.device)
    generator.manual_seed(int(seed) if seed is not None else int(np.random.SeedSequence().entropy % (2**62)))
    if not distinct:
        out = np.zeros((n, N_ELEMENTS), dtype=np.int64)
        for start in tqdm(range(0, n, batch_size), desc="generate", unit="batch", disable=not progress):
            m = min(batch_size, n - start)
            out[start : start + m] = _play(model, m, generator, exact_masks, normalize_observations)
        return out
    rows: list[np.ndarray] = []
    seen: set = set()
    with tqdm(total=n, desc="generate (distinct)", unit="material", disable=not progress) as bar:
        for _ in range(max_rounds):
            if len(rows) >= n:
                break
            counts = _play(model, min(batch_size, max(2 * (n - len(rows)), 64)), generator, exact_masks,
                           normalize_observations)
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
