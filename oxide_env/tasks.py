"""Tasks (paper Table 3) as data, and the batched reward model behind them.

A task is a weighted sum of predicted properties: ``{"bulk_modulus": 1.0,
"sintering_temperature": -1.0}`` means ``R = K - S``. Units are the predictors' (E in
eV/atom, K and G in ln GPa, S in degC), so the paper's lambda keep their meaning.

Presets (the paper's Table 3):

=============================  ==========================================================
``formation_energy``           ``-E``
``bulk_modulus``               ``K``
``shear_modulus``              ``G``
``sintering_temperature``      ``-S``
``sintering_bulk``             ``-S + lam * K``, ``lam`` in 62.5, 125, 250
``calcination_temperature``    ``-C`` (the journal extension's calcination temperature, degC)
=============================  ==========================================================

Example:
    >>> make_task("sintering_bulk", lam=125).terms
    (('sintering_temperature', -1.0), ('bulk_modulus', 125.0))
    >>> make_task({"bulk_modulus": 1.0, "sintering_temperature": -1.0}).name
    'custom'
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from oxide_env.chemistry.checks import check_number, describe
from oxide_env.chemistry.features import featurize
from oxide_env.chemistry.metrics import NEAR_HULL

PREDICTOR_NAMES = (
    "formation_energy", "bulk_modulus", "shear_modulus", "sintering_temperature", "calcination_temperature",
)
PAPER_LAMBDAS = (62.5, 125.0, 250.0)
TASK_PRESETS: dict[str, dict[str, float]] = {
    "formation_energy": {"formation_energy": -1.0},
    "bulk_modulus": {"bulk_modulus": 1.0},
    "shear_modulus": {"shear_modulus": 1.0},
    "sintering_temperature": {"sintering_temperature": -1.0},
    "sintering_bulk": {"sintering_temperature": -1.0, "bulk_modulus": 125.0},
    "calcination_temperature": {"calcination_temperature": -1.0},
}
"""Preset name -> terms; ``sintering_bulk``'s bulk weight is replaced by ``lam``."""

RewardFn = Callable[[np.ndarray], np.ndarray]
MAX_WEIGHT = 1e6
"""Largest absolute task weight (and ``lam``): rewards stay far inside float32, which SB3's
buffers use (the paper's largest weight is 250)."""
MAX_REWARD = 1e30
"""Largest absolute reward on the probe batch (float32 overflows at 3.4e38)."""
PROBE_FORMULAS = ("MgO", "Al2O3", "BaTiO3")
"""Compositions every predictor and callable task is run on once when a reward model is built."""


@dataclass(frozen=True)
class Task:
    """A reward: ``sum(weight * property)`` over named predictors, or a custom callable.

    Attributes:
        name: preset name, ``"custom"`` for user terms, or the callable's name.
        terms: ``(predictor name, weight)`` pairs; empty for a callable task.
        fn: custom reward ``fn(counts (n, 80)) -> rewards (n,)``, or ``None``.
    """

    name: str
    terms: tuple[tuple[str, float], ...] = ()
    fn: RewardFn | None = field(default=None, compare=False)

    @property
    def property_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.terms)

    def reward(self, properties: Mapping[str, np.ndarray]) -> np.ndarray:
        """Weighted sum of the task's properties (each an array over compositions)."""
        total = None
        for name, weight in self.terms:
            term = weight * np.asarray(properties[name], dtype=np.float64)
            total = term if total is None else total + term
        return total


def make_task(task: str | Mapping[str, float] | Task | RewardFn, lam: float | None = None) -> Task:
    """Build a :class:`Task` from a preset name, a ``{predictor: weight}`` mapping, or a callable.

    Args:
        task: preset name (see module docstring), terms mapping, :class:`Task`, or a callable
            ``counts (n, 80) -> rewards (n,)``.
        lam: weight of the bulk modulus in ``sintering_bulk`` (default 125, the paper's middle);
            a number in ``[0, MAX_WEIGHT]`` (0: sintering temperature alone).

    Raises:
        TypeError: non-numeric weights or ``lam`` (strings, ``None`` as a weight, bools).
        ValueError: unknown preset or predictor names, weights that are not finite or beyond
            ``±MAX_WEIGHT``, a negative ``lam``, or ``lam`` given for a task that has no lambda.
    """
    if lam is not None:
        check_number(lam, "lam", minimum=0, maximum=MAX_WEIGHT)
        if task != "sintering_bulk":
            raise ValueError(f"lam={lam!r} only applies to task='sintering_bulk', not {task!r}.")
    if isinstance(task, Task):
        return task
    if isinstance(task, str):
        if task not in TASK_PRESETS:
            raise ValueError(f"Unknown task {task!r}; choose one of {', '.join(TASK_PRESETS)}, "
                             "a {predictor: weight} dict or a callable.")
        terms = dict(TASK_PRESETS[task])
        if task == "sintering_bulk" and lam is not None:
            terms["bulk_modulus"] = float(lam)
        return Task(name=task, terms=tuple(terms.items()))
    if isinstance(task, Mapping):
        if not task:
            raise ValueError("Invalid task={}: give at least one {predictor: weight} term.")
        for name, weight in task.items():
            if name not in PREDICTOR_NAMES:
                raise ValueError(f"Unknown predictor {name!r} in task; choose from {', '.join(PREDICTOR_NAMES)}.")
            check_number(weight, f"weight of {name!r}", minimum=-MAX_WEIGHT, maximum=MAX_WEIGHT)
        return Task(name="custom", terms=tuple((k, float(v)) for k, v in task.items()))
    if callable(task):
        return Task(name=getattr(task, "__name__", "callable"), fn=task)
    raise ValueError(f"Invalid task={task!r}: expected a preset name ({', '.join(TASK_PRESETS)}), "
                     "a {predictor: weight} dict, a Task or a callable.")


PLAUSIBLE_DESIGN: dict[str, Any] = {"oxide_rule": True, "formation_energy": ["<=", -0.5], "in_domain": True,
                                    "novel": True}
"""The design constraints of ``oxide-rl train --plausible``: the oxide rule, predicted E_f <= -0.5
eV/atom, inside the formation-energy and task domains, and new. Copy it before changing it."""

STABLE_PLAUSIBLE_DESIGN: dict[str, Any] = {**PLAUSIBLE_DESIGN, "e_above_hull": ["<=", NEAR_HULL]}
"""The design constraints of our Table 1 method: :data:`PLAUSIBLE_DESIGN` and at most 0.1 eV/atom
above the hull of the known compounds (``--plausible --max-e-above-hull 0.1``). Copy it before
changing it."""


@dataclass(frozen=True)
class DesignConstraints:
    """Terminal constraints a finished design must meet (see :func:`make_constraints`).

    Attributes:
        oxide_rule: the oxide rule (:func:`oxide_env.chemistry.validity.oxide_rule`: icsd24
            states pymatgen also counts as common, oxygen −2, no negative metal).
        properties: ``(predictor, "<=" or ">=", bound)`` on the predicted (ensemble-mean) value.
        domain: predictors whose applicability domain the design must be inside.
        novel: the reduced composition is none of the predictors' training compositions.
        strict_novel: with ``shaping``, a known composition earns the lowest graded reward, as if
            it broke every constraint (``"novel": "strict"``).
        e_above_hull: the largest allowed energy above the convex hull of the known compounds
            (eV/atom) at the predicted formation energy; ``None``: no stability constraint.
        shaping: 0 (flat: every violating design earns the worst reward) or the graded penalty of
            a violating design per unit of violation, in units of the task's reward range (see
            :func:`make_constraints`).
    """

    oxide_rule: bool = False
    properties: tuple[tuple[str, str, float], ...] = ()
    domain: tuple[str, ...] = ()
    novel: bool = False
    e_above_hull: float | None = None
    shaping: float = 0.0
    strict_novel: bool = False

    def __bool__(self) -> bool:
        return bool(self.oxide_rule or self.properties or self.domain or self.novel
                    or self.e_above_hull is not None)

    @property
    def flag_names(self) -> tuple[str, ...]:
        """The boolean terminal-``info`` keys, one per constraint, then ``constraints_satisfied``."""
        names = ["oxide_rule"] if self.oxide_rule else []
        names += [property_flag(n, op, b) for n, op, b in self.properties]
        names += [hull_flag(self.e_above_hull)] if self.e_above_hull is not None else []
        names += ["in_domain"] if self.domain else []
        names += ["novel"] if self.novel else []
        return (*names, "constraints_satisfied")

    @property
    def predictor_names(self) -> tuple[str, ...]:
        """The predictors the constraints read: each bounded property, then formation energy for the hull."""
        names = [n for n, _, _ in self.properties] + (["formation_energy"] if self.e_above_hull is not None else [])
        return tuple(dict.fromkeys(names))


def property_flag(name: str, op: str, bound: float) -> str:
    """The ``info`` key of a property constraint, e.g. ``formation_energy_le_-0.5``."""
    return f"{name}_{'le' if op == '<=' else 'ge'}_{bound:g}"


def hull_flag(bound: float) -> str:
    """The ``info`` key of the stability constraint, e.g. ``e_above_hull_le_0.1``."""
    return f"e_above_hull_le_{bound:g}"


def make_constraints(spec: Mapping[str, Any] | DesignConstraints | None, task: Task) -> DesignConstraints:
    """Parse the environment's ``constraints`` option.

    ``spec`` maps

    * ``"oxide_rule"`` -> ``True``;
    * a predictor name -> ``("<=", bound)`` or ``(">=", bound)`` on its predicted value;
    * ``"in_domain"`` -> ``True`` (inside the applicability domain of ``formation_energy`` and of
      every predictor of the task) or a list of predictor names;
    * ``"novel"`` -> ``True``: not one of the predictors' training compositions (a known compound
      is no discovery); ``"strict"``: the same, and with ``shaping`` a known composition counts as
      breaking every constraint (below);
    * ``"e_above_hull"`` -> ``("<=", bound)``: the predicted formation energy lies at most ``bound``
      eV/atom above the convex hull of the known compounds of the design's chemical system (a
      stability proxy: above it the design would decompose into known compounds; a linear
      programme per new composition, ~2 ms, skipped where the predicted E_f alone exceeds the
      bound, since the hull lies at or below 0);
    * ``"shaping"`` -> ``s >= 0`` (default 0): how a violating design is rewarded. With 0 it earns
      the task's worst reward whatever it missed by (flat: no signal towards a narrow target such
      as the lab-made oxides' domain, which 0.3 % of random designs reach). With ``s > 0`` it
      earns ``worst - s * range * violation``, where ``range`` is the task's reward span over the
      predictors' training ranges and ``violation`` sums, over the broken constraints, 1 for the
      break plus how far it missed: ``score / threshold - 1`` outside a domain, ``|value - bound|``
      over the predictor's training range for a property, the energy above the hull beyond the
      bound over the formation-energy training range. Every violating design still earns less than
      every valid one, and nearer misses earn more. A known compound breaks only ``novel`` (1) and
      sits inside every domain, so with ``"novel": True`` it is the best-paid violation: where valid
      designs are rare (sintering) an agent learns to make FeO, Fe2O3 and TiO2. With
      ``"novel": "strict"`` its violation is ``1 +`` the number of constraint checks (each domain
      counts once), as if it broke them all.

    Example:
        >>> c = make_constraints({"oxide_rule": True, "formation_energy": ("<=", -0.5), "in_domain": True},
        ...                      make_task("bulk_modulus"))
        >>> c.flag_names
        ('oxide_rule', 'formation_energy_le_-0.5', 'in_domain', 'constraints_satisfied')
        >>> c.domain
        ('formation_energy', 'bulk_modulus')

    Raises:
        ValueError: naming a bad key or value and the allowed ones.
    """
    if spec is None or isinstance(spec, DesignConstraints):
        return spec or DesignConstraints()
    if not isinstance(spec, Mapping):
        raise ValueError(f"Invalid constraints={describe(spec)}: expected a dict such as "
                         "{'oxide_rule': True, 'formation_energy': ('<=', -0.5), 'in_domain': True}.")
    flags, props, domain, hull, shaping = {"oxide_rule": False, "novel": False}, [], (), None, 0.0
    strict_novel = False
    for key, value in spec.items():
        if key == "shaping":
            if isinstance(value, (str, bool)):
                raise ValueError(f"Invalid constraints['shaping']={describe(value)}: expected a number >= 0 "
                                 "(0 = flat worst reward for a violation, e.g. 0.1).")
            shaping = check_number(value, "constraints['shaping']", minimum=0, maximum=MAX_WEIGHT)
        elif key == "novel" and value == "strict":
            flags["novel"] = strict_novel = True
        elif key in flags:
            if value not in (True, False):
                raise ValueError(f"Invalid constraints[{key!r}]={describe(value)}: expected True or False"
                                 + (" or 'strict'." if key == "novel" else "."))
            flags[key] = bool(value)
        elif key == "in_domain":
            if value is True:
                domain = tuple(dict.fromkeys(("formation_energy", *task.property_names)))
            elif value is False:
                domain = ()
            elif isinstance(value, (list, tuple)) and value and all(v in PREDICTOR_NAMES for v in value):
                domain = tuple(dict.fromkeys(value))
            else:
                raise ValueError(f"Invalid constraints['in_domain']={describe(value)}: expected True or a list "
                                 f"of predictor names ({', '.join(PREDICTOR_NAMES)}).")
        elif key == "e_above_hull":
            if not (isinstance(value, (tuple, list)) and len(value) == 2 and value[0] == "<="
                    and not isinstance(value[1], (str, bool))):
                raise ValueError(f"Invalid constraints['e_above_hull']={describe(value)}: expected ('<=', bound) "
                                 "in eV/atom, e.g. ('<=', 0.1).")
            hull = check_number(value[1], "constraints['e_above_hull'] bound", minimum=-MAX_WEIGHT,
                                maximum=MAX_WEIGHT)
        elif key in PREDICTOR_NAMES:
            if not (isinstance(value, (tuple, list)) and len(value) == 2 and value[0] in ("<=", ">=")
                    and not isinstance(value[1], (str, bool))):
                raise ValueError(f"Invalid constraints[{key!r}]={describe(value)}: expected ('<=', bound) or "
                                 "('>=', bound).")
            props.append((key, value[0], check_number(value[1], f"constraints[{key!r}] bound",
                                                      minimum=-MAX_WEIGHT, maximum=MAX_WEIGHT)))
        else:
            raise ValueError(f"Unknown constraint {key!r}; choose 'oxide_rule', 'in_domain', 'novel', "
                             f"'e_above_hull', 'shaping' or a predictor ({', '.join(PREDICTOR_NAMES)}).")
    if shaping and not (flags["oxide_rule"] or flags["novel"] or props or domain or hull is not None):
        raise ValueError(f"constraints['shaping']={shaping:g} shapes the penalty of broken constraints, but no "
                         "constraint is given; add one (e.g. 'in_domain': True) or drop 'shaping'.")
    return DesignConstraints(oxide_rule=flags["oxide_rule"], properties=tuple(props), domain=domain,
                             novel=flags["novel"], e_above_hull=None if hull is None else float(hull),
                             shaping=float(shaping), strict_novel=strict_novel)


def _compact_counts(counts: np.ndarray) -> np.ndarray:
    """A copy of int64 counts as ``uint8`` where every value fits, else as int64 (for saving)."""
    if counts.size == 0 or (counts.min() >= 0 and counts.max() <= np.iinfo(np.uint8).max):
        return counts.astype(np.uint8)
    return counts.copy()


@dataclass(frozen=True)
class RewardBatch:
    """Terminal results of a batch of ``n`` final compositions (:meth:`RewardModel.evaluate`).

    Attributes:
        rewards: ``(n,)`` float64, constraints and shaping applied.
        properties: ``name -> (n,)`` predicted (ensemble-mean) values of every predictor.
        property_std: ``name -> (n,)`` uncertainty: the predictor's calibrated σ
            (``std_from_members``), else the ensemble std (0 for plain callables).
        charge_neutral, electronegativity_balanced: ``(n,)`` bool, SMACT 2014 rule on the reduced formula.
        flags: ``flag -> (n,)`` bool per design constraint and ``constraints_satisfied`` (empty without
            constraints).
    """

    rewards: np.ndarray
    properties: dict[str, np.ndarray]
    property_std: dict[str, np.ndarray]
    charge_neutral: np.ndarray
    electronegativity_balanced: np.ndarray
    flags: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.rewards)

    def row(self, i: int) -> dict[str, Any]:
        """The terminal ``info`` entries of composition ``i`` (plain Python values)."""
        return self.infos([i])[0]

    def infos(self, rows: Sequence[int] | None = None) -> list[dict[str, Any]]:
        """:meth:`row` of each of ``rows`` (default: all), converted to Python values in one pass."""
        rows = np.arange(len(self)) if rows is None else np.asarray(rows, dtype=np.intp)
        neutral = self.charge_neutral[rows].tolist()
        balanced = self.electronegativity_balanced[rows].tolist()
        props = {n: v[rows].tolist() for n, v in self.properties.items()}
        stds = {n: v[rows].tolist() for n, v in self.property_std.items()}
        flags = {n: v[rows].tolist() for n, v in self.flags.items()}
        return [{"charge_neutral": neutral[j], "electronegativity_balanced": balanced[j],
                 "properties": {n: v[j] for n, v in props.items()},
                 "property_std": {n: v[j] for n, v in stds.items()},
                 **{n: v[j] for n, v in flags.items()}} for j in range(len(rows))]


class RewardModel:
    """Batched terminal rewards with property predictions, validity flags and a memo.

    The environment's reward is injected: it calls :meth:`evaluate` on a batch of final
    compositions (one batch per vector step in the vector envs). One featurization is shared by
    all predictors; results are memoised per composition (most generated compositions repeat
    during training). The memo belongs to this object: envs that share a reward model share it.
    ``predictors.envs.reward_model`` builds one with the shipped predictors.

    Args:
        task: the :class:`Task`.
        predictors: ``name -> predictor`` (objects of the ``predictors`` package, with
            ``members_from_features``, or callables ``counts -> values``). Every terminal ``info``
            reports all of them; a task's terms and property constraints need theirs.
        invalid_penalty: subtracted when the final composition is not charge neutral (and again
            when not electronegativity balanced). 0 = the paper's setting.
        uncertainty_penalty: subtract ``uncertainty_penalty * sum(|w| * std)`` over the task's
            terms (``property_std``), discouraging exploitation of predictor errors. 0 = paper.
        cache_size: maximum number of memoised compositions.
        constraints: terminal :class:`DesignConstraints` (or the dict of :func:`make_constraints`). A
            design that breaks one gets :meth:`worst_reward` instead of its task reward; each
            constraint's flag and ``constraints_satisfied`` are returned with the reward.
        domain_models: ``name -> model`` with ``score_features(features)`` and ``threshold`` (e.g.
            ``predictors.domain.load_domain(name)``), needed for ``in_domain``.
        known_compositions: reduced-composition keys
            (:func:`oxide_env.chemistry.metrics.composition_keys`) of the known compounds, needed
            for ``novel`` (e.g. ``predictors.data.training_keys()``).
        hull: the known compounds' convex hull, with ``hull_energy(counts)`` (e.g.
            :class:`oxide_env.chemistry.hull.FormationHull`, ``predictors.data.known_hull()``),
            needed for ``e_above_hull`` (which also needs the ``formation_energy`` predictor).

    Example:
        >>> import numpy as np
        >>> from oxide_env.chemistry.composition import formulas_to_counts
        >>> model = RewardModel(make_task({"bulk_modulus": 1.0}),
        ...                     {"bulk_modulus": lambda counts: counts.sum(axis=1).astype(float)})
        >>> model.evaluate(formulas_to_counts(["MgO", "Al2O3"])).rewards
        array([2., 5.])
    """

    def __init__(self, task: Task, predictors: Mapping[str, Any], *,
                 invalid_penalty: float = 0.0, uncertainty_penalty: float = 0.0,
                 cache_size: int = 200_000, constraints: Mapping[str, Any] | DesignConstraints | None = None,
                 domain_models: Mapping[str, Any] | None = None,
                 known_compositions: frozenset | set | None = None, hull: Any = None) -> None:
        for name, value in (("invalid_penalty", invalid_penalty), ("uncertainty_penalty", uncertainty_penalty)):
            check_number(value, name, minimum=0, maximum=MAX_WEIGHT)
        check_number(cache_size, "cache_size", integer=True, minimum=0)
        if not isinstance(task, Task):
            raise TypeError(f"Invalid task={describe(task)}: expected a Task (see make_task).")
        if not isinstance(predictors, Mapping):
            raise TypeError(f"Invalid predictors={describe(predictors)}: expected a dict name -> predictor "
                            "(predictors.envs.reward_model builds one with the shipped models).")
        self.task = task
        unknown = [n for n in predictors if n not in PREDICTOR_NAMES]
        if unknown:
            raise ValueError(f"Unknown predictor {unknown[0]!r}; choose from {', '.join(PREDICTOR_NAMES)}.")
        missing = [n for n in task.property_names if n not in predictors]
        if missing:
            raise ValueError(f"Task {task.name!r} needs predictor {missing[0]!r}, which was not given.")
        for name, model in predictors.items():
            if not (hasattr(model, "members_from_features") or callable(model)):
                raise TypeError(
                    f"Invalid predictor {name!r}={describe(model)}: expected a predictors.Predictor or a "
                    "callable counts (n, 80) -> values (n,)."
                )
        self.predictors = dict(predictors)
        self.constraints = make_constraints(constraints, task)
        missing = [n for n, _, _ in self.constraints.properties if n not in self.predictors]
        if missing:
            raise ValueError(f"Constraint on {missing[0]!r} needs that predictor, which was not given.")
        domain_models = dict(domain_models or {})
        absent = [n for n in self.constraints.domain if n not in domain_models]
        if absent:
            raise ValueError(f"constraints['in_domain'] needs a domain model for {absent[0]!r} (domain_models=, "
                             "e.g. predictors.domain.load_domain).")
        self.domain_models = {n: domain_models[n] for n in self.constraints.domain}
        if self.constraints.novel and known_compositions is None:
            raise ValueError("constraints['novel'] needs known_compositions= (e.g. predictors.data.training_keys()).")
        self.known_compositions = known_compositions if self.constraints.novel else None
        if self.constraints.e_above_hull is not None:
            if "formation_energy" not in self.predictors:
                raise ValueError("constraints['e_above_hull'] needs the 'formation_energy' predictor, which was "
                                 "not given.")
            if not hasattr(hull, "hull_energy"):
                raise ValueError(f"constraints['e_above_hull'] needs hull= with a hull_energy(counts) method "
                                 f"(e.g. predictors.data.known_hull()); got {describe(hull)}.")
        self.hull = hull if self.constraints.e_above_hull is not None else None
        self.invalid_penalty = float(invalid_penalty)
        self.uncertainty_penalty = float(uncertainty_penalty)
        self.cache_size = cache_size
        self._cache: OrderedDict[bytes, tuple] = OrderedDict()
        self._met_cache: OrderedDict[bytes, bool] = OrderedDict()  # constraints_met of compositions not in _cache
        # what the lookahead and the terminal flags both compute, once per composition (exact: a hull energy
        # and a domain distance depend on the composition alone, not on its batch; tested)
        self._check_memo: dict[str, OrderedDict[bytes, float]] = {}
        self._names = tuple(self.predictors)
        self._flag_names = self.constraints.flag_names if self.constraints else ()
        self._check_on_probe()

    @property
    def flag_names(self) -> tuple[str, ...]:
        """The constraint flags of :attr:`RewardBatch.flags` (empty without constraints)."""
        return self._flag_names

    def _check_on_probe(self) -> None:
        """Run every predictor and a callable task once on :data:`PROBE_FORMULAS`; check the outputs.

        A predictor or task that returns the wrong number of values, non-finite values or
        absurd rewards fails here, when the reward model is built, not at the first terminal step.
        """
        from oxide_env.chemistry.composition import formulas_to_counts

        probe = formulas_to_counts(PROBE_FORMULAS)
        n = len(probe)
        means, _ = self._predict(probe)
        for name, values in means.items():
            self._check_values(values, n, f"predictor {name!r}")
        if self.task.fn is not None:
            rewards = self._check_values(self.task.fn(probe.copy()), n, f"task {self.task.name!r}")
        else:
            rewards = self.task.reward(means)
        if not np.all(np.abs(rewards) <= MAX_REWARD):
            raise ValueError(
                f"Task {self.task.name!r} gives rewards {describe(np.asarray(rewards).tolist())} on "
                f"{list(PROBE_FORMULAS)}; rewards must be finite and within ±{MAX_REWARD:g} "
                "(check the weights and lam)."
            )

    @staticmethod
    def _check_values(values: Any, n: int, what: str) -> np.ndarray:
        try:
            arr = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"The {what} returned {describe(values)}; expected {n} real numbers "
                            f"for a batch of {n} compositions.") from None
        if arr.size != n or arr.ndim > 2:
            raise ValueError(f"The {what} returned shape {arr.shape} for a batch of {n} compositions; "
                             f"expected ({n},).")
        arr = arr.reshape(n)
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"The {what} returned non-finite values {describe(arr.tolist())} for a batch "
                             f"of {n} compositions.")
        return arr

    def __getstate__(self) -> dict[str, Any]:
        # the memo is not state: a pickled env (SubprocVecEnv, deepcopy) stays small
        state = self.__dict__.copy()
        state["_cache"] = OrderedDict()
        state["_met_cache"] = OrderedDict()
        state["_check_memo"] = {}
        return state

    def _predict(self, counts: np.ndarray, features: np.ndarray | None = None, names: Sequence[str] | None = None
                 ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Means and stds of the predictors ``names`` (default: all) on ``counts``."""
        means, stds = {}, {}
        for name in self.predictors if names is None else names:
            model = self.predictors[name]
            if hasattr(model, "members_from_features"):
                if features is None:
                    features = featurize(counts)
                members = model.members_from_features(features)
                # the predictor's calibrated sigma where it has one (predictors' std_from_members)
                std = model.std_from_members(members) if hasattr(model, "std_from_members") else members.std(axis=0)
                means[name], stds[name] = members.mean(axis=0), std
            else:
                means[name] = self._check_values(model(counts), len(counts), f"predictor {name!r}")
                stds[name] = np.zeros(len(counts))
        return means, stds

    def _constraint_flags(self, batch: np.ndarray, means: Mapping[str, np.ndarray],
                          features: np.ndarray | None = None
                          ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """One boolean array per constraint flag (see :attr:`DesignConstraints.flag_names`), and with
        ``shaping`` every row's distance to each domain (``name -> (n,)``; the violation needs them)."""
        c = self.constraints
        flags: dict[str, np.ndarray] = {}
        scores: dict[str, np.ndarray] = {}
        if c.oxide_rule:
            from oxide_env.chemistry.validity import oxide_rule

            flags["oxide_rule"] = oxide_rule(batch)
        for name, op, bound in c.properties:
            flags[property_flag(name, op, bound)] = means[name] <= bound if op == "<=" else means[name] >= bound
        if c.e_above_hull is not None:
            flags[hull_flag(c.e_above_hull)] = self._near_hull(batch, means["formation_energy"])
        if c.domain:
            features = featurize(batch) if features is None else features
            inside = np.ones(len(batch), dtype=bool)
            # the AND of every domain: each model scores only the rows still inside, smallest reference first
            # (the formation-energy domain holds 84k compositions, the others ~9k); with shaping every row
            for name, model in self._domains_smallest_first():
                rows = np.arange(len(batch)) if c.shaping else np.flatnonzero(inside)
                if rows.size == 0:
                    break
                score = self._checked(f"domain:{name}", batch, rows,
                                      lambda sub, rows=rows, model=model: model.score_features(features[rows[sub]]))
                if c.shaping:
                    scores[name] = score
                inside[rows] &= score <= model.threshold
            flags["in_domain"] = inside
        if c.novel:
            flags["novel"] = self._novel(batch)
        flags["constraints_satisfied"] = np.logical_and.reduce(list(flags.values())) if flags else np.ones(
            len(batch), dtype=bool)
        return flags, scores

    def _domains_smallest_first(self) -> list[tuple[str, Any]]:
        """The domain models, smallest reference first (the formation-energy domain holds 84k compositions,
        the others ~9k): an AND of them scores each next one only on the rows still inside."""
        return sorted(self.domain_models.items(), key=lambda m: len(getattr(m[1], "reference", ())))

    def _near_hull(self, batch: np.ndarray, energy: np.ndarray) -> np.ndarray:
        """``bool (n,)``: predicted ``energy`` at most the ``e_above_hull`` bound above the known compounds' hull."""
        bound = self.constraints.e_above_hull
        near = np.zeros(len(batch), dtype=bool)
        # the hull lies at or below 0 eV/atom, so a design with E_f above the bound is above it by more
        rows = np.flatnonzero(np.isfinite(energy) & (energy <= bound))
        if rows.size:
            hull = self._checked("hull", batch, rows, lambda sub: self.hull.hull_energy(batch[rows[sub]]))
            near[rows] = energy[rows] - hull <= bound
        return near

    def _checked(self, what: str, batch: np.ndarray, rows: np.ndarray, compute: Callable) -> np.ndarray:
        """``what`` (a hull energy or a domain distance) of ``batch[rows]``, float ``(len(rows),)``: memoised
        values, and ``compute(positions)`` for the positions in ``rows`` of the distinct compositions not yet
        known. The lookahead checks the completions of a step-4 state; the agent then ends on one of them."""
        keys = [row.tobytes() for row in np.ascontiguousarray(batch[rows], dtype=np.int64)]
        found = self._memoised(self._check_memo.setdefault(what, OrderedDict()), keys,
                               lambda first: np.asarray(compute(first), dtype=np.float64).tolist(), {})
        return np.array([found[k] for k in keys], dtype=np.float64)

    def _novel(self, batch: np.ndarray) -> np.ndarray:
        """``bool (n,)``: the reduced composition is none of the known compounds."""
        from oxide_env.chemistry.metrics import composition_keys

        known = self.known_compositions
        return np.array([k not in known for k in composition_keys(batch)], dtype=bool)

    def _met_rows(self, batch: np.ndarray) -> np.ndarray:
        """``constraints_satisfied`` of distinct compositions, cheapest check first, each on the rows still in."""
        c = self.constraints
        alive = np.arange(len(batch))
        if c.oxide_rule:
            from oxide_env.chemistry.validity import oxide_rule

            alive = alive[oxide_rule(batch)]
        if c.novel and alive.size:
            alive = alive[self._novel(batch[alive])]
        names = list(c.predictor_names)
        features = None
        if alive.size and (c.domain or any(hasattr(self.predictors[n], "members_from_features") for n in names)):
            features = featurize(batch[alive])  # row j describes batch[alive[j]]
        # the domains before the predictions: each passes ~1 in 5 of a training run's oxide-rule completions
        for name, model in self._domains_smallest_first():
            if alive.size == 0:
                break
            keep = self._checked(f"domain:{name}", batch, alive,
                                 lambda sub, model=model, f=features: model.score_features(f[sub])) <= model.threshold
            alive, features = alive[keep], features[keep]
        if names and alive.size:
            means, _ = self._predict(batch[alive], features, names)
            keep = np.ones(alive.size, dtype=bool)
            for name, op, bound in c.properties:
                keep &= means[name] <= bound if op == "<=" else means[name] >= bound
            if c.e_above_hull is not None:  # the dearest check (a small linear programme per composition) last
                rows = np.flatnonzero(keep)
                keep[rows] = self._near_hull(batch[alive[rows]], means["formation_energy"][rows])
            alive = alive[keep]
        met = np.zeros(len(batch), dtype=bool)
        met[alive] = True
        return met

    def constraints_met(self, counts: np.ndarray) -> np.ndarray:
        """``bool (n,)``: whether each final composition meets every design constraint.

        The same answer as ``evaluate(counts).flags["constraints_satisfied"]`` (all True without
        constraints) at a fraction of the cost, for callers that need nothing else, such as the
        last-step lookahead (which asks it of the 9 oxygen completions of every state): the checks
        run cheapest first (oxide rule, novelty, the domains, the predictors the constraints name,
        the hull), each only on the compositions that passed the ones before, and no reward or
        other prediction is made. Memoised; a composition :meth:`evaluate` has seen is answered
        from its memo.

        Example:
            >>> from oxide_env.chemistry.composition import formulas_to_counts
            >>> model = RewardModel(make_task({"bulk_modulus": 1.0}),
            ...                     {"bulk_modulus": lambda counts: counts.sum(axis=1).astype(float)},
            ...                     constraints={"oxide_rule": True, "bulk_modulus": (">=", 4)})
            >>> model.constraints_met(formulas_to_counts(["MgO", "Al2O3", "MgO2"])).tolist()
            [False, True, False]
        """
        counts = np.ascontiguousarray(np.asarray(counts, dtype=np.int64).reshape(-1, np.shape(counts)[-1]))
        if not self.constraints:
            return np.ones(len(counts), dtype=bool)
        keys = [row.tobytes() for row in counts]
        column = self._flag_names.index("constraints_satisfied")
        known = {k: bool(self._cache[k][5][column]) for k in keys if k in self._cache}  # evaluate()'s memo
        found = self._memoised(self._met_cache, keys, lambda first: self._met_rows(counts[first]).tolist(), known)
        return np.array([found[k] for k in keys], dtype=bool)

    def _memoised(self, cache: OrderedDict, keys: list[bytes], compute: Callable, found: dict) -> dict:
        """``found`` completed for every key: from ``cache`` (marked recently used, read before anything
        is evicted), else ``compute(first)``, ``first`` the position in ``keys`` of each distinct key left,
        whose values enter ``cache`` (least recently used entries evicted beyond ``cache_size``)."""
        for k in keys:
            if k not in found and k in cache:
                cache.move_to_end(k)
                found[k] = cache[k]
        todo = [k for k in dict.fromkeys(keys) if k not in found]
        if todo:
            first = {k: i for i, k in reversed(list(enumerate(keys)))}
            for key, value in zip(todo, compute(np.array([first[k] for k in todo], dtype=np.int64))):
                found[key] = value
                if self.cache_size:
                    cache[key] = value
            while len(cache) > self.cache_size:
                cache.popitem(last=False)
        return found

    def _violation(self, batch: np.ndarray, means: Mapping[str, np.ndarray], flags: Mapping[str, np.ndarray],
                   scores: Mapping[str, np.ndarray]) -> np.ndarray:
        """How far each design misses its constraints (0 where all are met; see ``shaping``), from the
        flags and domain distances of :meth:`_constraint_flags`."""
        c = self.constraints
        out = np.zeros(len(batch))
        rows = np.flatnonzero(~flags["constraints_satisfied"])
        if rows.size == 0:
            return out
        v = np.zeros(rows.size)
        for name in ("oxide_rule", "novel"):
            if name in flags:
                v += ~flags[name][rows]
        for name, op, bound in c.properties:
            miss = (means[name][rows] - bound) * (1.0 if op == "<=" else -1.0)
            v += np.where(miss > 0, 1.0 + miss / self._target_span(name), 0.0)
        if c.e_above_hull is not None:
            broken = ~flags[hull_flag(c.e_above_hull)][rows]
            if broken.any():
                sub = rows[broken]
                excess = means["formation_energy"][sub] - self.hull.hull_energy(batch[sub]) - c.e_above_hull
                v[broken] += 1.0 + np.maximum(excess, 0.0) / self._target_span("formation_energy")
        for name, model in self.domain_models.items():
            score = scores[name][rows]
            v += np.where(score > model.threshold, score / model.threshold, 0.0)  # 1 for the break + the distance
        if c.strict_novel:  # a known compound pays as if it broke every check
            checks = (int(c.oxide_rule) + len(c.properties) + int(c.e_above_hull is not None)
                      + len(self.domain_models) + 1)
            known = ~flags["novel"][rows]
            v[known] = np.maximum(v[known], 1.0 + checks)
        out[rows] = v
        return out

    def _target_limits(self, name: str) -> tuple[float, float] | None:
        """``(target_min, target_max)`` of a predictor's training data, ``None`` where it does not say."""
        meta = getattr(self.predictors[name], "metadata", None) or {}
        lo, hi = meta.get("target_min"), meta.get("target_max")
        return None if lo is None or hi is None else (lo, hi)

    def _target_span(self, name: str) -> float:
        limits = self._target_limits(name)
        return float(limits[1] - limits[0]) if limits is not None and limits[1] > limits[0] else 1.0

    def reward_range(self) -> float:
        """The task's reward span over the predictors' training ranges (1 where unknown, e.g. a callable task)."""
        if self.task.fn is not None or not self.task.terms:
            return 1.0
        limits = [self._target_limits(name) for name, _ in self.task.terms]
        if any(lim is None for lim in limits):
            return 1.0
        return float(sum(abs(w) * (hi - lo) for (_, w), (lo, hi) in zip(self.task.terms, limits)))

    def _compute(self, batch: np.ndarray) -> list[tuple]:
        """Memo rows ``(reward, means, stds, neutral, balanced, flags)`` of distinct compositions."""
        from oxide_env.chemistry.validity import charge_neutral, electronegativity_balanced

        # one featurization serves the predictors and the domain constraint
        needs_features = bool(self.constraints.domain) or any(
            hasattr(m, "members_from_features") for m in self.predictors.values())
        features = featurize(batch) if needs_features else None
        means, stds = self._predict(batch, features)
        neutral = charge_neutral(batch)
        balanced = electronegativity_balanced(batch)
        if self.task.fn is not None:
            rewards = self._check_values(self.task.fn(batch), len(batch), f"task {self.task.name!r}")
        else:
            rewards = self.task.reward(means)
            if self.uncertainty_penalty:
                spread = sum(abs(w) * stds[n] for n, w in self.task.terms)
                rewards = rewards - self.uncertainty_penalty * spread
        if self.invalid_penalty:
            rewards = rewards - self.invalid_penalty * ((~neutral).astype(float) + (~balanced).astype(float))
        flags, scores = self._constraint_flags(batch, means, features) if self.constraints else ({}, {})
        if flags:
            penalty = self.worst_reward()
            if self.constraints.shaping:
                penalty = penalty - self.constraints.shaping * self.reward_range() * self._violation(
                    batch, means, flags, scores)
            rewards = np.where(flags["constraints_satisfied"], rewards, penalty)
        if not np.all(np.isfinite(rewards)):
            raise ValueError("The task produced a non-finite reward; check the task callable.")
        m = np.stack([means[n] for n in self._names], axis=1) if self._names else np.zeros((len(batch), 0))
        s = np.stack([stds[n] for n in self._names], axis=1) if self._names else np.zeros((len(batch), 0))
        f = np.stack([flags[n] for n in self._flag_names], axis=1) if self._flag_names else \
            np.zeros((len(batch), 0), dtype=bool)
        return [(float(rewards[j]), m[j], s[j], bool(neutral[j]), bool(balanced[j]), f[j])
                for j in range(len(batch))]

    def evaluate(self, counts: np.ndarray) -> RewardBatch:
        """Rewards, predictions, validity and constraint flags of final compositions ``(n, 80)``."""
        counts = np.ascontiguousarray(np.asarray(counts, dtype=np.int64).reshape(-1, np.shape(counts)[-1]))
        keys = [row.tobytes() for row in counts]
        found = self._memoised(self._cache, keys, lambda first: self._compute(counts[first]), {})
        entries = [found[k] for k in keys]
        n = len(entries)
        means = np.array([e[1] for e in entries], dtype=np.float64).reshape(n, len(self._names))
        stds = np.array([e[2] for e in entries], dtype=np.float64).reshape(n, len(self._names))
        flags = np.array([e[5] for e in entries], dtype=bool).reshape(n, len(self._flag_names))
        return RewardBatch(
            rewards=np.array([e[0] for e in entries], dtype=np.float64),
            properties={name: means[:, j] for j, name in enumerate(self._names)},
            property_std={name: stds[:, j] for j, name in enumerate(self._names)},
            charge_neutral=np.array([e[3] for e in entries], dtype=bool),
            electronegativity_balanced=np.array([e[4] for e in entries], dtype=bool),
            flags={name: flags[:, j] for j, name in enumerate(self._flag_names)},
        )

    def rewards(self, counts: np.ndarray) -> np.ndarray:
        """Terminal rewards of a batch of final compositions ``(n, 80)`` (constraints applied)."""
        return self.evaluate(counts).rewards

    # The memo is part of a training run's state: a predictor's float32 output can differ in the
    # last bit between batch sizes, so an exactly resumed run needs the same cached values.
    def clear_cache(self) -> None:
        """Forget every memoised reward, :meth:`constraints_met` answer, hull energy and domain distance."""
        self._cache.clear()
        self._met_cache.clear()
        self._check_memo.clear()

    def cache_state(self) -> dict[str, np.ndarray]:
        """The memoised rewards as plain arrays, least recently used first (see :meth:`restore_cache`).

        The compositions are stored as ``uint8`` counts when they fit (an 8th of int64's bytes: a
        checkpoint of a Table 1 run writes up to 200,000 memoised lookahead rows);
        :meth:`restore_cache` reads either.
        """
        items = list(self._cache.items())
        n, k, f = len(items), len(self._names), len(self._flag_names)
        n_cols = len(items[0][0]) // 8 if items else 0
        counts = np.frombuffer(b"".join(key for key, _ in items), dtype=np.int64).reshape(n, n_cols)
        met_keys = list(self._met_cache)
        met_cols = len(met_keys[0]) // 8 if met_keys else n_cols
        return {
            "counts": _compact_counts(counts), "rewards": np.array([v[0] for _, v in items], dtype=np.float64),
            "properties": np.array([v[1] for _, v in items], dtype=np.float64).reshape(n, k),
            "property_std": np.array([v[2] for _, v in items], dtype=np.float64).reshape(n, k),
            "charge_neutral": np.array([v[3] for _, v in items], dtype=bool),
            "electronegativity_balanced": np.array([v[4] for _, v in items], dtype=bool),
            "names": np.array(self._names, dtype=str),
            "flags": np.array([v[5] for _, v in items], dtype=bool).reshape(n, f),
            "flag_names": np.array(self._flag_names, dtype=str),
            "met_counts": _compact_counts(np.frombuffer(b"".join(met_keys), dtype=np.int64).reshape(len(met_keys),
                                                                                                   met_cols)),
            "met": np.array(list(self._met_cache.values()), dtype=bool),
        }

    def restore_cache(self, state: dict[str, np.ndarray]) -> None:
        """Replace the memoised rewards by those of :meth:`cache_state` (same order).

        Raises:
            ValueError: the state was made with other predictors or constraints.
        """
        names = tuple(str(x) for x in state["names"])
        flag_names = tuple(str(x) for x in state.get("flag_names", []))
        if not set(self._names) <= set(names) or flag_names != self._flag_names:
            raise ValueError(f"The cached rewards were made with predictors {names} and flags {flag_names}; this "
                             f"reward model has {self._names} and {self._flag_names}.")
        # a memo that reported more properties (report="all") serves one that reports fewer: the same
        # predictors made the rewards, the other columns are dropped
        columns = [names.index(n) for n in self._names]
        properties = np.asarray(state["properties"], dtype=np.float64).reshape(-1, len(names))[:, columns]
        property_std = np.asarray(state["property_std"], dtype=np.float64).reshape(-1, len(names))[:, columns]
        counts = np.ascontiguousarray(state["counts"], dtype=np.int64)
        self._cache.clear()
        for i, row in enumerate(counts):
            self._cache[row.tobytes()] = (
                float(state["rewards"][i]), properties[i], property_std[i], bool(state["charge_neutral"][i]),
                bool(state["electronegativity_balanced"][i]), np.asarray(state["flags"][i], dtype=bool),
            )
        self._met_cache.clear()
        if "met" in state:  # saved before constraints_met had a memo: nothing to restore
            for row, value in zip(np.ascontiguousarray(state["met_counts"], dtype=np.int64), state["met"]):
                self._met_cache[row.tobytes()] = bool(value)

    def worst_reward(self) -> float:
        """The task's reward at the worst end of each property's training range.

        The default reward for a hard-rule-violating action: no valid composition is worse
        in expectation, so an algorithm that ignores masks learns to avoid them.
        """
        if self.task.fn is not None or not self.task.terms:
            return 0.0
        total = 0.0
        for name, weight in self.task.terms:
            limits = self._target_limits(name)
            if limits is None:
                return 0.0
            total += weight * (limits[0] if weight > 0 else limits[1])
        return float(total)
