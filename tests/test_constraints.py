"""Terminal design constraints (oxide rule, predicted properties, applicability domain) in the env."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import oxide_env
from oxide_env.chemistry.composition import formulas_to_counts
from predictors.envs import make_env, reward_model
from oxide_env.tasks import RewardModel, make_task

E = oxide_env.ELEMENTS
PLAUSIBLE = {"oxide_rule": True, "formation_energy": ("<=", -0.5), "in_domain": True}


def _play(env, actions):
    env.reset(seed=0)
    for a in actions:
        obs, reward, terminated, truncated, info = env.step(a)
    assert terminated
    return reward, info


def test_constraints_set_flags_and_reward() -> None:
    env = gym.make("OxideComposition-v0", task="bulk_modulus", constraints=PLAUSIBLE)
    free = gym.make("OxideComposition-v0", task="bulk_modulus")
    spinel = [10 * E.index("Mg") + 1, 10 * E.index("Al") + 2, 0, 0, 10 * E.index("O") + 4]
    suboxide = [10 * E.index("Os") + 8, 10 * E.index("Re") + 9, 0, 0, 10 * E.index("O") + 4]
    reward, info = _play(env, spinel)
    assert info["formula"] == "MgAl2O4"
    assert info["oxide_rule"] and info["formation_energy_le_-0.5"] and info["in_domain"]
    assert info["constraints_satisfied"]
    assert reward == pytest.approx(_play(free, spinel)[0])  # a design that meets them keeps its reward
    reward, info = _play(env, suboxide)
    assert not info["oxide_rule"] and not info["constraints_satisfied"]
    assert reward == pytest.approx(env.unwrapped.reward_model.worst_reward())
    assert reward < _play(free, suboxide)[0]
    assert "constraints_satisfied" not in _play(free, spinel)[1]


def test_constraint_checks_pass_gymnasium_checker() -> None:
    from gymnasium.utils.env_checker import check_env

    check_env(make_env(task="formation_energy", constraints=PLAUSIBLE))


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ({"nope": True}, "Unknown constraint 'nope'"),
        ({"oxide_rule": "yes"}, r"constraints\['oxide_rule'\]"),
        ({"formation_energy": ("<", -0.5)}, r"expected \('<=', bound\)"),
        ({"in_domain": ["bulk"]}, "list of predictor names"),
        ([("oxide_rule", True)], "expected a dict"),
        ({"in_domain": True, "shaping": "yes"}, r"constraints\['shaping'\]"),
        ({"in_domain": True, "shaping": -1}, r"constraints\['shaping'\]"),
        ({"shaping": 0.1}, "no constraint is given"),
    ],
)
def test_bad_constraints(spec, match) -> None:
    with pytest.raises(ValueError, match=match):
        make_env(task="bulk_modulus", constraints=spec)


def test_constraint_flags_survive_the_cache_round_trip() -> None:
    model = reward_model("shear_modulus", constraints=PLAUSIBLE)
    counts = formulas_to_counts(["MgAl2O4", "Re9Os8O4", "ZrO2"])
    first = model.evaluate(counts)
    state = model.cache_state()
    assert state["flags"].shape == (len(state["counts"]), 4)
    assert state["counts"].dtype == np.uint8  # compact on disk; restored as the int64 keys of the memo
    keys = list(model._cache)
    model.clear_cache()
    model.restore_cache(state)
    assert list(model._cache) == keys
    again = model.evaluate(counts)
    assert again.rewards.tolist() == first.rewards.tolist()
    assert {k: v.tolist() for k, v in again.flags.items()} == {k: v.tolist() for k, v in first.flags.items()}
    assert {k: v.tolist() for k, v in again.properties.items()} == {k: v.tolist() for k, v in first.properties.items()}
    assert first.flags["constraints_satisfied"].tolist() == [True, False, True]
    assert np.isfinite(first.rewards).all()
    other = reward_model("shear_modulus")
    with pytest.raises(ValueError, match="flags"):
        other.restore_cache(state)


def test_report_reward_predicts_only_what_the_reward_uses() -> None:
    counts = formulas_to_counts(["MgAl2O4", "Re9Os8O4", "ZrO2", "La2ScO4"])
    full = reward_model("shear_modulus", constraints=PLAUSIBLE)
    lean = reward_model("shear_modulus", constraints=PLAUSIBLE, report="reward")
    assert sorted(lean.predictors) == ["formation_energy", "shear_modulus"]  # the task's and the constraint's
    assert sorted(reward_model("bulk_modulus", report="reward").predictors) == ["bulk_modulus"]
    assert sorted(reward_model("bulk_modulus", constraints={"e_above_hull": ("<=", 0.1)}, report="reward").predictors) == [
        "bulk_modulus", "formation_energy"]
    a, b = full.evaluate(counts), lean.evaluate(counts)
    assert a.rewards.tolist() == b.rewards.tolist()
    assert {k: v.tolist() for k, v in a.flags.items()} == {k: v.tolist() for k, v in b.flags.items()}
    assert b.properties["shear_modulus"].tolist() == a.properties["shear_modulus"].tolist()
    # a memo that reported all five serves one that reports fewer (a checkpoint of older code), not the reverse
    other = reward_model("shear_modulus", constraints=PLAUSIBLE, report="reward")
    other.restore_cache(full.cache_state())
    assert list(other._cache) == list(full._cache)
    again = other.evaluate(counts)
    assert again.rewards.tolist() == a.rewards.tolist()
    assert again.properties["formation_energy"].tolist() == a.properties["formation_energy"].tolist()
    with pytest.raises(ValueError, match="predictors"):
        reward_model("shear_modulus", constraints=PLAUSIBLE).restore_cache(lean.cache_state())
    with pytest.raises(ValueError, match="report='some'.*'reward'"):
        reward_model("bulk_modulus", report="some")


def test_novel_constraint_rejects_known_compounds() -> None:
    model = reward_model("bulk_modulus", constraints={"novel": True})
    rows = model.evaluate(formulas_to_counts(["MgAl2O4", "Li13Cr3Ti5O11"]))
    assert rows.flags["novel"].tolist() == [False, True]
    assert rows.rewards[0] == pytest.approx(model.worst_reward())
    with pytest.raises(ValueError, match="known_compositions"):
        RewardModel(make_task("bulk_modulus"), model.predictors, constraints={"novel": True})


def test_merged_noops_keep_one_count_zero_action() -> None:
    import torch

    from agents.sampling import merge_noop_actions

    q = torch.randn(3, 800, generator=torch.Generator().manual_seed(0))
    mask = torch.ones(3, 800, dtype=torch.bool)
    mask[1, ::10] = False  # no count-0 action allowed: nothing to merge
    merged = merge_noop_actions(q, mask)
    assert merged[:, ::10].sum(dim=1).tolist() == [1, 0, 1]
    assert torch.equal(merged[:, 1::10], mask[:, 1::10])  # real additions untouched
    assert int(merged[0, ::10].nonzero()) == int(q[0, ::10].argmax())


@pytest.mark.parametrize("script", ["domain.py", "plausibility_tradeoff.py", "table1_checks.py"])
def test_plausibility_benchmarks_have_help(script) -> None:
    import subprocess
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / script
    out = subprocess.run([sys.executable, str(path), "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "usage:" in out.stdout


# ------------------------------------------------------------------ last-step lookahead
def _lookahead_model(bound: float = 3.0) -> RewardModel:
    # a cheap stand-in "formation energy": the oxygen count minus the other atoms; the bound keeps
    # some oxygen counts and drops others, so the mask is checked on real choices
    def energy(counts):
        return counts[:, E.index("O")] - (counts.sum(axis=1) - counts[:, E.index("O")]).astype(float)

    return RewardModel(make_task({"formation_energy": -1.0}), {"formation_energy": energy},
                       constraints={"oxide_rule": True, "formation_energy": ("<=", bound)})


def test_lookahead_masks_exactly_the_last_steps_that_break_a_constraint() -> None:
    from oxide_env.chemistry.episode import N_STEPS
    from oxide_env.chemistry.validity import oxide_rule
    from oxide_env.core import EpisodeBatch

    model = _lookahead_model()
    rng = np.random.default_rng(0)
    free = EpisodeBatch(200, model)
    look = EpisodeBatch(200, model, constraint_lookahead=True)
    for _ in range(N_STEPS - 1):
        actions = np.array([rng.choice(np.flatnonzero(m)) for m in free.masks])
        free.step(actions)
        look.step(actions)
    assert (look.counts == free.counts).all()
    oxygen = E.index("O")
    n_kept = 0
    for i in range(200):
        finals = np.repeat(free.counts[i : i + 1], 9, axis=0)
        finals[:, oxygen] += np.arange(1, 10)
        energy = finals[:, oxygen] - (finals.sum(axis=1) - finals[:, oxygen])
        meets = oxide_rule(finals) & (energy <= 3.0)  # the constraints, computed here independently
        if meets.any():
            assert not look.fallback[i]
            assert (look.masks[i] == np.isin(np.arange(800), 10 * oxygen + 1 + np.flatnonzero(meets))).all()
            n_kept += 1
        else:
            assert look.fallback[i] and (look.masks[i] == free.masks[i]).all()
    assert 0 < n_kept < 200  # both cases occur
    # following the mask, every design that did not fall back meets the constraints
    fell_back = look.fallback.copy()
    result = look.step(np.array([rng.choice(np.flatnonzero(m)) for m in look.masks]))
    assert result.terminal.flags["constraints_satisfied"][~fell_back].all()


def test_lookahead_checks_only_the_completions_the_exact_masks_allow() -> None:
    from oxide_env.chemistry.episode import N_STEPS
    from oxide_env.core import EpisodeBatch

    model = _lookahead_model()
    rng = np.random.default_rng(1)
    exact = EpisodeBatch(200, None, exact_masks="oxide_rule")
    look = EpisodeBatch(200, model, exact_masks="oxide_rule", constraint_lookahead=True)
    for _ in range(N_STEPS - 1):
        actions = np.array([rng.choice(np.flatnonzero(m)) for m in exact.masks])
        exact.step(actions)
        look.step(actions)
    oxygen = E.index("O")
    allowed = exact.masks[:, 10 * oxygen + 1 : 10 * oxygen + 10]  # the exact masks' oxygen counts 1-9
    assert allowed.sum() < 0.5 * allowed.size  # the exact masks already drop most completions
    assert len(model._met_cache) == allowed.sum()  # and only the others were checked
    finals = np.repeat(exact.counts, 9, axis=0)
    finals[:, oxygen] += np.tile(np.arange(1, 10), 200)
    energy = finals[:, oxygen] - (finals.sum(axis=1) - finals[:, oxygen])
    meets = (energy <= 3.0).reshape(200, 9) & allowed  # what the step keeps, computed independently
    for i in range(200):
        want = np.zeros(800, dtype=bool)
        want[10 * oxygen + 1 + np.flatnonzero(meets[i] if meets[i].any() else allowed[i])] = True
        assert (look.masks[i] == want).all() and look.fallback[i] == (not meets[i].any() and allowed[i].any())


@pytest.mark.parametrize("task, spec", [
    ("bulk_modulus", {"oxide_rule": True, "formation_energy": ("<=", -0.5), "in_domain": True, "novel": True,
                      "e_above_hull": ("<=", 0.1)}),
    ("sintering_temperature", {"oxide_rule": True, "formation_energy": ("<=", -0.5), "in_domain": True,
                               "novel": "strict", "e_above_hull": ("<=", 0.1), "shaping": 0.1}),
    ("shear_modulus", {"shear_modulus": (">=", 4.0), "in_domain": ["bulk_modulus"]}),
])
def test_constraints_met_is_the_constraints_satisfied_flag(task, spec) -> None:
    """The lookahead's cheap check gives evaluate()'s flag on oxygen lines of random and known oxides."""
    from oxide_env.chemistry.baseline import random_oxide_counts
    from predictors.data import load_table

    states = np.vstack([random_oxide_counts(300, seed=4),
                        formulas_to_counts(load_table("bulk_modulus").formula.tolist()[:100])])
    states[:, E.index("O")] = 0
    finals = np.repeat(states, 9, axis=0)
    finals[:, E.index("O")] = np.tile(np.arange(1, 10), len(states))
    cheap = reward_model(task, constraints=spec)
    met = cheap.constraints_met(finals)
    fresh = reward_model(task, constraints=spec).evaluate(finals)
    want = fresh.flags["constraints_satisfied"]
    assert met.tolist() == want.tolist() and 0 < met.sum() < len(met)
    assert not cheap._cache and len(cheap._met_cache) == len(np.unique(finals, axis=0))  # no reward was computed
    assert cheap.constraints_met(finals[::-1]).tolist() == met[::-1].tolist()  # from the memo
    cheap.evaluate(finals[:5])
    assert cheap.constraints_met(finals[:5]).tolist() == want[:5].tolist()  # evaluate()'s memo answers too
    looked = reward_model(task, constraints=spec)
    looked.constraints_met(finals)
    assert looked._check_memo and all(len(memo) for memo in looked._check_memo.values())
    after = looked.evaluate(finals)  # the terminal flags reuse the lookahead's memoised distances and hull energies
    assert after.rewards.tolist() == fresh.rewards.tolist()
    assert all(after.flags[k].tolist() == fresh.flags[k].tolist() for k in fresh.flags)
    state = cheap.cache_state()
    other = reward_model(task, constraints=spec)
    other.restore_cache(state)
    assert other._met_cache == cheap._met_cache and list(other._cache) == list(cheap._cache)


def test_domain_distances_and_hull_energies_do_not_depend_on_the_batch() -> None:
    """What RewardModel memoises per composition is a function of the composition alone."""
    from oxide_env.chemistry.baseline import random_oxide_counts
    from oxide_env.chemistry.features import featurize
    from predictors.data import known_hull
    from predictors.domain import load_domain

    counts = random_oxide_counts(200, seed=8)
    features = featurize(counts)
    hull = known_hull()
    energies = hull.hull_energy(counts)
    for name in ("formation_energy", "bulk_modulus"):
        domain = load_domain(name)
        scores = domain.score_features(features)
        for start, size in ((0, 1), (3, 2), (10, 3), (20, 63), (40, 65), (100, 100)):
            part = slice(start, start + size)
            assert domain.score_features(features[part]).tolist() == scores[part].tolist()
            assert np.array_equal(hull.hull_energy(counts[part]), energies[part], equal_nan=True)


def test_constraints_met_without_constraints_is_all_true() -> None:
    model = reward_model("bulk_modulus")
    assert model.constraints_met(formulas_to_counts(["MgO", "Os8Re9O4"])).tolist() == [True, True]
    assert "met" in model.cache_state() and len(model.cache_state()["met"]) == 0


def test_lookahead_needs_constraints_and_generation_uses_it() -> None:
    from oxide_env.core import EpisodeBatch

    with pytest.raises(ValueError, match="constraint_lookahead=True needs a reward model with design constraints"):
        EpisodeBatch(2, RewardModel(make_task({"formation_energy": -1.0}),
                                    {"formation_energy": lambda c: c.sum(axis=1) * 1.0}), constraint_lookahead=True)
    with pytest.raises(ValueError, match="constraint_lookahead='yes'"):
        EpisodeBatch(2, _lookahead_model(), constraint_lookahead="yes")

    from agents import ConstrainedDQN
    from agents.vec_env import OxideVecEnv

    env = OxideVecEnv(10, _lookahead_model(), constraint_lookahead=True)
    assert env.get_attr("constraint_lookahead") == [True] * 10
    model = ConstrainedDQN(env=env, seed=0, constraints=(), learning_starts=50, episodes_per_iteration=10)
    model.learn(total_timesteps=100)
    designs = formulas_to_counts(model.generate(200, seed=0))
    flags = _lookahead_model().evaluate(designs).flags["constraints_satisfied"]
    untrained = formulas_to_counts(model.generate(200, seed=0, constraint_lookahead=False))
    assert flags.mean() > _lookahead_model().evaluate(untrained).flags["constraints_satisfied"].mean()
    model.env = None
    with pytest.raises(ValueError, match="pass reward_model="):
        model.generate(5, seed=0)
    assert len(model.generate(5, seed=0, reward_model=_lookahead_model())) == 5


def test_in_domain_flag_is_the_and_of_every_domain() -> None:
    from oxide_env.chemistry.baseline import random_oxides
    from oxide_env.chemistry.features import featurize
    from oxide_env.tasks import PLAUSIBLE_DESIGN
    from predictors.domain import load_domain

    counts = formulas_to_counts(random_oxides(400, seed=3) + ["MgO", "Al2O3", "SrTiO3", "BaTiO3", "ZnO"])
    features = featurize(counts)
    want = np.ones(len(counts), dtype=bool)
    for name in ("formation_energy", "sintering_temperature"):
        domain = load_domain(name)
        want &= domain.score_features(features) <= domain.threshold
    model = reward_model("sintering_temperature", constraints=dict(PLAUSIBLE_DESIGN))
    got = model.evaluate(counts).flags["in_domain"]
    assert (got == want).all() and 0 < want.sum() < len(want)


def test_hull_constraint_matches_an_independent_hull_computation() -> None:
    from oxide_env.chemistry.baseline import random_oxide_counts
    from oxide_env.chemistry.hull import FormationHull

    hull = FormationHull(["MgO", "Al2O3", "MgAl2O4", "SiO2", "Mg2SiO4"], [-3.0, -3.4, -3.2, -3.1, -3.15])
    # E_f = 0.3 - 4.5 x_O: oxygen-poor designs lie above 0.1 eV/atom, where the hull is not even solved
    energy = lambda counts: 0.3 - 4.5 * counts[:, E.index("O")] / np.maximum(counts.sum(axis=1), 1)  # noqa: E731
    model = RewardModel(make_task({"formation_energy": -1.0}), {"formation_energy": energy},
                        constraints={"e_above_hull": ("<=", 0.1)}, hull=hull)
    counts = np.concatenate([formulas_to_counts(["MgAl2O4", "Mg2SiO4", "MgSiO3", "Al2SiO5", "MgO2", "Mg"]),
                             random_oxide_counts(300, seed=0)])
    flags = model.evaluate(counts).flags
    expected = hull.e_above_hull(counts, energy(counts)) <= 0.1  # NaN (empty) compares False
    assert flags["e_above_hull_le_0.1"].tolist() == expected.tolist()
    assert flags["constraints_satisfied"].tolist() == expected.tolist()
    assert 0 < expected.sum() < len(expected)  # both outcomes occur
    assert (energy(counts) > 0.1).any() and not expected[energy(counts) > 0.1].any()  # the shortcut's rows


def test_hull_constraint_in_the_env_and_its_errors() -> None:
    from predictors.data import known_hull

    env = gym.make("OxideComposition-v0", task="bulk_modulus",
                   constraints={**PLAUSIBLE, "e_above_hull": ("<=", 0.1)})
    spinel = [10 * E.index("Mg") + 1, 10 * E.index("Al") + 2, 0, 0, 10 * E.index("O") + 4]
    reward, info = _play(env, spinel)
    model = env.unwrapped.reward_model
    e_f = info["properties"]["formation_energy"] if "properties" in info else model.evaluate(
        formulas_to_counts(["MgAl2O4"])).properties["formation_energy"][0]
    above = float(e_f - known_hull().hull_energy(["MgAl2O4"])[0])
    assert info["e_above_hull_le_0.1"] == (above <= 0.1)
    with pytest.raises(ValueError, match="needs hull="):
        RewardModel(make_task("bulk_modulus"), model.predictors, constraints={"e_above_hull": ("<=", 0.1)})
    with pytest.raises(ValueError, match="'formation_energy' predictor"):
        RewardModel(make_task("bulk_modulus"), {"bulk_modulus": model.predictors["bulk_modulus"]},
                    constraints={"e_above_hull": ("<=", 0.1)}, hull=known_hull())
    with pytest.raises(ValueError, match=r"expected \('<=', bound\) in eV/atom"):
        make_env(task="bulk_modulus", constraints={"e_above_hull": (">=", 0.1)})


def test_graded_shaping_orders_violations_by_how_far_they_miss() -> None:
    """shaping > 0: a violating design earns worst - s * range * violation (1 per broken constraint plus
    its distance), so every violation stays below the worst valid reward and nearer misses earn more."""
    from predictors.domain import load_domain

    spec = {"oxide_rule": True, "formation_energy": ("<=", -0.5), "in_domain": ["sintering_temperature"]}
    flat = reward_model("sintering_temperature", constraints=spec)
    graded = reward_model("sintering_temperature", constraints={**spec, "shaping": 0.1})
    designs = ["BaTiO3", "Zr2Mn2Ge2Bi2O9", "Ba2Mn2Ge2Bi2O9", "Er9Cd2C2N5O9", "Os7W9O"]
    counts = formulas_to_counts(designs)
    a, b = flat.evaluate(counts), graded.evaluate(counts)
    np.testing.assert_array_equal(a.flags["constraints_satisfied"], b.flags["constraints_satisfied"])
    ok = b.flags["constraints_satisfied"]
    np.testing.assert_allclose(b.rewards[ok], a.rewards[ok])  # valid designs keep their reward
    worst, span = graded.worst_reward(), graded.reward_range()
    assert span == pytest.approx(1800.0)  # sintering reward -T over the 200-2000 C training range
    # the violation by hand: 1 per broken boolean, 1 + miss/span per property, score/threshold outside the domain
    domain = load_domain("sintering_temperature")
    ratio = domain.score(designs) / domain.threshold
    energy = a.properties["formation_energy"]
    expected = ((~a.flags["oxide_rule"]).astype(float)
                + np.where(energy > -0.5, 1 + (energy + 0.5) / (2.497159 + 4.612092), 0.0)
                + np.where(ratio > 1, ratio, 0.0))
    np.testing.assert_allclose(b.rewards[~ok], worst - 0.1 * span * expected[~ok], rtol=1e-5)
    assert np.all(b.rewards[~ok] < worst) and np.all(a.rewards[~ok] == worst)
    assert (~ok).sum() >= 3 and len(set(np.round(b.rewards[~ok], 3))) == (~ok).sum()


def test_strict_novel_makes_a_known_compound_the_worst_paid_violation() -> None:
    """With ``"novel": True`` a known oxide breaks one constraint (violation 1) and out-earns a new design
    just outside a domain; with ``"novel": "strict"`` it pays 1 + the number of checks (here oxide rule,
    E_f bound, 2 domains, novel: 6), and every other design keeps its reward."""
    spec = {"oxide_rule": True, "formation_energy": ("<=", -0.5), "in_domain": True, "shaping": 0.1}
    loose = reward_model("sintering_temperature", constraints={**spec, "novel": True})
    strict = reward_model("sintering_temperature", constraints={**spec, "novel": "strict"})
    designs = ["Fe2O3", "TiO2", "Zr2Mn2Ge2Bi2O9", "Er9Cd2C2N5O9", "Li7V9O26"]
    counts = formulas_to_counts(designs)
    a, b = loose.evaluate(counts), strict.evaluate(counts)
    known = ~a.flags["novel"]
    assert known.tolist() == [True, True, False, False, False]
    for name in a.flags:
        np.testing.assert_array_equal(a.flags[name], b.flags[name])
    worst, span = strict.worst_reward(), strict.reward_range()
    np.testing.assert_allclose(a.rewards[known], worst - 0.1 * span * 1.0)  # only 'novel' broken
    np.testing.assert_allclose(b.rewards[known], worst - 0.1 * span * 6.0)
    np.testing.assert_allclose(b.rewards[~known], a.rewards[~known])
    assert b.rewards[known].max() < b.rewards[~known].min()
    assert make_env(task="bulk_modulus", constraints={"novel": "strict"}) is not None
    with pytest.raises(ValueError, match="True or False or 'strict'"):
        make_env(task="bulk_modulus", constraints={"novel": "yes"})


def test_table1_checks_lists_near_hull_designs_with_their_states(tmp_path) -> None:
    """The near-hull list of ``benchmarks/table1_checks.py`` on 200 designs of a committed run: every
    listed design is distinct, plausible, novel, within 0.1 eV/atom of the hull, and carries pymatgen's
    states; a bad --near-hull or --best is refused."""
    import importlib.util
    import shutil
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    source = root / "benchmarks" / "results" / "table1_runs" / "bulk_modulus" / "constrained_dqn" / "seed0"
    run = tmp_path / "table1_runs" / "bulk_modulus" / "constrained_dqn" / "seed0"
    run.mkdir(parents=True)
    lines = (source / "formulas.csv").read_text().splitlines()[:201]
    (run / "formulas.csv").write_text("\n".join(lines) + "\n")
    shutil.copy(source / "result.json", run / "result.json")
    spec = importlib.util.spec_from_file_location("table1_checks", root / "benchmarks" / "table1_checks.py")
    checks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(checks)
    for bad in (["--near-hull", "ppo"], ["--best", "-1"]):
        with pytest.raises(SystemExit):
            checks.main(["--runs", str(tmp_path), "--out", str(tmp_path), "--paper-lists", "none", *bad])
    assert checks.main(["--runs", str(tmp_path), "--out", str(tmp_path), "--paper-lists", "none", "--best", "4"]) == 0
    text = (tmp_path / "table1_checks.md").read_text()
    section = text.split("within 0.1 eV/atom of the predicted hull")[1].split("\n\n")[1]
    rows = [r.split(" | ") for r in section.splitlines()[2:]]
    assert len(rows) == 4
    from oxide_env.chemistry.composition import reduced_formula

    by_formula = {}
    for line in lines[1:]:
        fields = line.split(",")
        by_formula[reduced_formula(fields[0])] = fields
    header = lines[0].split(",")
    for row in rows:
        formula = row[0].strip("| ")
        fields = dict(zip(header, by_formula[formula]))
        assert fields["plausible"] == "1" and float(fields["e_above_hull"]) <= 0.1
        assert "O-2" in row[-1]
    assert len({r[0] for r in rows}) == 4
    # the stricter reading: plausible AND balanced in pymatgen's common states (O at -2)
    import csv

    with open(tmp_path / "table1_checks.csv", newline="") as fh:
        summary = next(csv.DictReader(fh))
    assert 0.0 < float(summary["pct_plausible_common_states"]) <= float(summary["pct_plausible"])
    assert checks.common_states_balanced("LiCoO2") and not checks.common_states_balanced("MnVO2")  # V2+ is no common state
