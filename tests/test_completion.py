"""Tests for oxide_env.chemistry.completion: hard rules and exact forward constraint masks.

Ground truth is brute force: every legal completion is enumerated and judged by the
validity functions (which are themselves tested against SMACT). Steps 3 and 4 are checked
exhaustively per state; step 2 per sampled action (800 x 9 completions each) and, for all
800 actions, by consistency with the (brute-force-checked) step-3 masks; steps 0 and 1
rest on the claim that every state reachable in two actions is completable, checked here
on a sample with explicit witnesses and in full by a slow test.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from oxide_env.chemistry import completion
from oxide_env.chemistry.completion import (
    N_ACTIONS,
    completable_actions,
    hard_rule_mask,
    is_completable,
)
from oxide_env.chemistry.composition import formula_to_counts
from oxide_env.chemistry.elements import ELEMENT_INDEX, ELEMENTS, N_ELEMENTS, OXYGEN_INDEX
from oxide_env.chemistry.validity import charge_neutral, electronegativity_balanced

VALIDITY = {
    "charge_neutral": charge_neutral,
    "electronegativity_balanced": electronegativity_balanced,
}
CONSTRAINTS = tuple(VALIDITY)
SEED = 20240611

# The count vector each action adds, and the final oxygen additions k = 1..9.
ADDS = np.zeros((N_ACTIONS, N_ELEMENTS), dtype=np.int64)
ADDS[np.arange(N_ACTIONS), np.arange(N_ACTIONS) // 10] = np.arange(N_ACTIONS) % 10
OXYGEN_K = np.zeros((9, N_ELEMENTS), dtype=np.int64)
OXYGEN_K[np.arange(9), OXYGEN_INDEX] = np.arange(1, 10)

# Elements with few or extreme oxidation states / electronegativities, used to build states
# whose masks are far from all-True.
AWKWARD = [
    ELEMENT_INDEX[s]
    for s in (
        "F Cl Br I N P C Si Ge Sn Pb Ru Os Ir Pt Au Pu Cs K Rb Li Na Ba Lu H O S Se Te "
        "Mn Re La Th As Sb Bi Hg Tl W Mo Zr Sr"
    ).split()
]


def empty() -> np.ndarray:
    return np.zeros(N_ELEMENTS, dtype=np.int64)


def random_state(rng: np.random.Generator, step: int, heavy: bool = False) -> np.ndarray:
    """A state after `step` legal actions: uniform over the legal actions, or (heavy) with
    counts 5-9 of mostly awkward elements."""
    counts = empty()
    for t in range(step):
        legal = np.flatnonzero(hard_rule_mask(counts, t))
        if heavy:
            e = int(rng.choice(AWKWARD)) if rng.random() < 0.8 else int(rng.integers(N_ELEMENTS))
            a = 10 * e + int(rng.integers(5, 10))
            if a not in legal:
                a = int(rng.choice(legal))
        else:
            a = int(rng.choice(legal))
        counts = counts + ADDS[a]
    return counts


def finals_after_action(counts: np.ndarray, step: int, action: int) -> np.ndarray:
    """Every final composition (n, 80) reachable by legal play after `action` at `step`."""
    frontier = (counts + ADDS[action])[None]
    for t in range(step + 1, 5):
        frontier = np.concatenate(
            [row + ADDS[hard_rule_mask(row, t)] for row in frontier]
        )
    return frontier


def brute_force_mask(counts: np.ndarray, step: int, constraint: str) -> np.ndarray:
    """Exhaustive mask for steps 3 and 4 (all 800 actions x 9 oxygen counts)."""
    assert step in (3, 4)
    hard = hard_rule_mask(counts, step)
    actions = np.flatnonzero(hard)
    out = np.zeros(N_ACTIONS, dtype=bool)
    if step == 4:
        out[actions] = VALIDITY[constraint](counts + ADDS[actions])
    else:
        finals = (counts + ADDS[actions])[:, None, :] + OXYGEN_K[None]
        valid = VALIDITY[constraint](finals.reshape(-1, N_ELEMENTS)).reshape(len(actions), 9)
        out[actions] = valid.any(1)
    return out


def brute_force_action(counts: np.ndarray, step: int, action: int, constraint: str) -> bool:
    if not hard_rule_mask(counts, step)[action]:
        return False
    return bool(VALIDITY[constraint](finals_after_action(counts, step, action)).any())


def witness(counts: np.ndarray, step: int, constraint: str) -> np.ndarray | None:
    """Follow allowed actions to the end; return the final composition (or None)."""
    for t in range(step, 5):
        mask = completable_actions(counts, t, constraint)
        assert not (mask & ~hard_rule_mask(counts, t)).any()
        if not mask.any():
            return None
        counts = counts + ADDS[int(np.flatnonzero(mask)[0])]
    return counts


def describe(counts: np.ndarray) -> str:
    return " ".join(f"{ELEMENTS[i]}{counts[i]}" for i in np.flatnonzero(counts)) or "(empty)"


# ----------------------------------------------------------------------------- hard rules
def test_hard_rule_mask_free_steps() -> None:
    c = formula_to_counts("Fe2")
    for step in (0, 1, 2, 3):
        mask = hard_rule_mask(c, step)
        assert mask.shape == (N_ACTIONS,) and mask.dtype == bool and mask.all()
    for step in (0, 1, 2):
        assert hard_rule_mask(empty(), step).all()
        assert hard_rule_mask(formula_to_counts("O9"), step).all()


def test_hard_rule_mask_forbids_ending_with_oxygen_alone() -> None:
    for counts in (empty(), formula_to_counts("O5"), formula_to_counts("O27")):
        mask = hard_rule_mask(counts, 3)
        actions = np.arange(N_ACTIONS)
        want = (actions // 10 != OXYGEN_INDEX) & (actions % 10 != 0)
        np.testing.assert_array_equal(mask, want)
        assert mask.sum() == 79 * 9


def test_hard_rule_mask_last_step_is_oxygen_1_to_9() -> None:
    for counts in (formula_to_counts("Fe2O3"), formula_to_counts("Ba")):
        mask = hard_rule_mask(counts, 4)
        assert np.flatnonzero(mask).tolist() == [10 * OXYGEN_INDEX + k for k in range(1, 10)]


@pytest.mark.parametrize("step", [-1, 5, 2.0, True, "3"])
def test_bad_step_raises(step) -> None:
    with pytest.raises(ValueError, match="step"):
        hard_rule_mask(empty(), step)
    with pytest.raises(ValueError, match="step"):
        completable_actions(empty(), step, "charge_neutral")
    with pytest.raises(ValueError, match="step"):
        is_completable(empty(), step, "charge_neutral")


def test_bad_inputs_raise() -> None:
    with pytest.raises(ValueError, match="constraint"):
        completable_actions(empty(), 0, "neutral")
    with pytest.raises(ValueError, match="shape"):
        completable_actions(np.zeros(79, dtype=int), 0, "charge_neutral")
    with pytest.raises(ValueError, match=">= 0"):
        bad = empty()
        bad[3] = -1
        completable_actions(bad, 2, "charge_neutral")
    # 10 atoms of one element cannot come from one action (at most 9 per action)
    with pytest.raises(ValueError, match="actions"):
        completable_actions(formula_to_counts("Fe10"), 1, "charge_neutral")
    with pytest.raises(ValueError, match="actions"):
        is_completable(formula_to_counts("Fe"), 0, "electronegativity_balanced")


# ----------------------------------------------------------------- brute force, steps 3-4
@pytest.fixture(scope="module")
def step3_truth() -> list[tuple[np.ndarray, dict[str, np.ndarray]]]:
    """States at step 3 with their brute-force masks for both constraints (the Pauling
    test is only run on the neutral completions: it implies neutrality)."""
    rng = np.random.default_rng(SEED)
    states = [random_state(rng, 3) for _ in range(110)]
    states += [random_state(rng, 3, heavy=True) for _ in range(40)]
    states += [empty(), formula_to_counts("O9"), formula_to_counts("O27")]  # oxygen only
    out = []
    for counts in states:
        actions = np.flatnonzero(hard_rule_mask(counts, 3))
        finals = ((counts + ADDS[actions])[:, None, :] + OXYGEN_K[None]).reshape(-1, N_ELEMENTS)
        neutral = charge_neutral(finals)
        balanced = np.zeros_like(neutral)
        balanced[neutral] = electronegativity_balanced(finals[neutral])
        masks = {}
        for name, valid in (("charge_neutral", neutral), ("electronegativity_balanced", balanced)):
            masks[name] = np.zeros(N_ACTIONS, dtype=bool)
            masks[name][actions] = valid.reshape(len(actions), 9).any(1)
        out.append((counts, masks))
    return out


@pytest.mark.parametrize("constraint", CONSTRAINTS)
def test_step4_equals_brute_force(constraint: str) -> None:
    rng = np.random.default_rng(SEED + 4)
    states = [random_state(rng, 4) for _ in range(300)]
    states += [random_state(rng, 4, heavy=True) for _ in range(100)]
    states += [formula_to_counts(f) for f in ("Ba", "Lu9", "F", "Fe2", "Ba9Lu9Cs9Li9")]
    n_false = 0
    for counts in states:
        got = completable_actions(counts, 4, constraint)
        want = brute_force_mask(counts, 4, constraint)
        assert (got == want).all(), describe(counts)
        n_false += int((~want[10 * OXYGEN_INDEX + 1 : 10 * OXYGEN_INDEX + 10]).sum())
    assert n_false > 0


@pytest.mark.parametrize("constraint", CONSTRAINTS)
def test_step3_equals_brute_force(constraint: str, step3_truth) -> None:
    n_false = 0
    for counts, masks in step3_truth:
        got = completable_actions(counts, 3, constraint)
        want = masks[constraint]
        diff = np.flatnonzero(got != want)
        assert not diff.size, f"{describe(counts)}: actions {diff[:10].tolist()} differ"
        n_false += int((hard_rule_mask(counts, 3) & ~want).sum())
    assert n_false > 100  # the sample exercises masked actions


def test_brute_force_helper_agrees(step3_truth) -> None:
    counts, masks = step3_truth[0]
    for constraint in CONSTRAINTS:
        np.testing.assert_array_equal(brute_force_mask(counts, 3, constraint), masks[constraint])


# ------------------------------------------------------------------------ step 2
@pytest.mark.parametrize("constraint", CONSTRAINTS)
def test_step2_sampled_actions_equal_brute_force(constraint: str) -> None:
    """Each checked action enumerates all 800 x 9 legal completions."""
    rng = np.random.default_rng(SEED + 2)
    states = [random_state(rng, 2) for _ in range(3)] + [
        random_state(rng, 2, heavy=True) for _ in range(6)
    ]
    states += [formula_to_counts(f) for f in ("Lu18", "Ba9Lu9", "Pu18")]  # some masked
    n_false = 0
    for counts in states:
        got = completable_actions(counts, 2, constraint)
        picks = list(rng.choice(N_ACTIONS, 2, replace=False))
        masked = np.flatnonzero(~got)
        picks += list(rng.choice(masked, min(2, masked.size), replace=False))
        for a in picks:
            want = brute_force_action(counts, 2, int(a), constraint)
            assert got[a] == want, f"{describe(counts)}, action {a}"
            n_false += not want
    assert n_false >= 5


@pytest.mark.parametrize("constraint", CONSTRAINTS)
def test_step2_all_actions_agree_with_step3(constraint: str) -> None:
    """mask_2[a] == any(mask_3(state + a)) for all 800 actions (mask_3 is brute-force checked)."""
    rng = np.random.default_rng(SEED + 22)
    states = [random_state(rng, 2), random_state(rng, 2, heavy=True)]
    states += [random_state(rng, 2, heavy=True), formula_to_counts("Ba9Lu9")]
    states += [formula_to_counts("O18")]  # oxygen only: the last free step must add another
    for counts in states:
        got = completable_actions(counts, 2, constraint)
        hard = hard_rule_mask(counts, 2)
        want = np.array(
            [
                hard[a] and completable_actions(counts + ADDS[a], 3, constraint).any()
                for a in range(N_ACTIONS)
            ]
        )
        diff = np.flatnonzero(got != want)
        assert not diff.size, f"{describe(counts)}: actions {diff[:10].tolist()} differ"


# ------------------------------------------------------------------------ steps 0 and 1
@pytest.mark.parametrize("constraint", CONSTRAINTS)
def test_step1_agrees_with_step2(constraint: str) -> None:
    rng = np.random.default_rng(SEED + 1)
    for counts in (random_state(rng, 1), random_state(rng, 1, heavy=True)):
        got = completable_actions(counts, 1, constraint)
        assert got.all()
        for a in range(N_ACTIONS):
            assert completable_actions(counts + ADDS[a], 2, constraint).any(), (describe(counts), a)


@pytest.mark.parametrize("constraint", CONSTRAINTS)
def test_steps_0_to_2_witnesses(constraint: str) -> None:
    """Every action at steps 0-1 is allowed; sampled step-2 states all have a verified
    completion (the full check over all 257,401 step-2 states is a slow test)."""
    assert completable_actions(empty(), 0, constraint).all()
    rng = np.random.default_rng(SEED + 5)
    states = [random_state(rng, 2) for _ in range(150)]
    states += [random_state(rng, 2, heavy=True) for _ in range(150)]
    states += [formula_to_counts(f) for f in ("Lu18", "F18", "O18", "Pu18", "Cs9F9", "Ba9Lu9")]
    states.append(empty())
    for counts in states:
        assert is_completable(counts, 2, constraint)
        final = witness(counts, 2, constraint)
        assert final is not None, describe(counts)
        assert VALIDITY[constraint](final)[0], describe(final)
    # a witness from the empty state through every step
    final = witness(empty(), 0, constraint)
    assert final is not None and VALIDITY[constraint](final)[0]


def test_known_masks() -> None:
    lu18 = formula_to_counts("Lu18")  # Lu is +3 only: +54 to balance
    for constraint in CONSTRAINTS:
        mask = completable_actions(lu18, 2, constraint)
        assert not mask[10 * ELEMENT_INDEX["Lu"] + 9]  # Lu27: +81 is out of reach
        assert mask[10 * OXYGEN_INDEX + 9]  # Lu18 O27 = Lu2O3
    # BaO and BaO2 (O -1) are neutral; BaO_k for k >= 3 is not
    mask = completable_actions(formula_to_counts("Ba"), 4, "charge_neutral")
    assert np.flatnonzero(mask).tolist() == [61, 62]
    # Oxygen as the cation needs fluorine (the only element more electronegative)
    f2 = formula_to_counts("F2")
    assert completable_actions(f2, 4, "electronegativity_balanced")[61]  # OF2: O+2, F-1


# ------------------------------------------------------------------ consistency, rollouts
@pytest.mark.parametrize("constraint", CONSTRAINTS)
def test_masks_within_hard_rules_and_never_empty(constraint: str) -> None:
    rng = np.random.default_rng(SEED + 7)
    for step in range(5):
        for heavy in (False, True):
            for _ in range(25):
                counts = random_state(rng, step, heavy=heavy)
                mask = completable_actions(counts, step, constraint)
                assert not (mask & ~hard_rule_mask(counts, step)).any()
                assert is_completable(counts, step, constraint) == mask.any()
    assert completable_actions(empty(), 0, "charge_neutral").any()


@pytest.mark.parametrize("constraint", CONSTRAINTS)
def test_masked_rollouts_end_valid(constraint: str) -> None:
    rng = np.random.default_rng(SEED + 9)
    finals = np.zeros((1000, N_ELEMENTS), dtype=np.int64)
    for r in range(len(finals)):
        counts = empty()
        for step in range(5):
            mask = completable_actions(counts, step, constraint)
            assert mask.any(), (describe(counts), step)
            counts = counts + ADDS[int(rng.choice(np.flatnonzero(mask)))]
        finals[r] = counts
    assert VALIDITY[constraint](finals).all()
    assert (finals[:, OXYGEN_INDEX] > 0).all()
    assert ((finals.sum(1) - finals[:, OXYGEN_INDEX]) > 0).all()


def test_proof_fingerprint_matches_installed_tables() -> None:
    """Steps 0-1 rely on the slow exhaustive check; it was run for these exact tables."""
    assert completion._TABLES_FINGERPRINT == completion._PROOF_FINGERPRINT


def test_returns_fresh_arrays() -> None:
    a = completable_actions(formula_to_counts("Fe2"), 2, "charge_neutral")
    a[:] = False
    assert completable_actions(formula_to_counts("Fe2"), 2, "charge_neutral").any()


def test_second_new_element_availability() -> None:
    """Element identity in the one-free-step case (internal): a second new element must not
    be the action's own element, and must respect the EN bounds the action's element sets.
    Pt (2.2) as a cation leaves carbon (2.55) as the only -4 anion more electronegative."""
    pt = completion._patterns("electronegativity_balanced", (ELEMENT_INDEX["Pt"],))
    (p,) = [k for k, pat in enumerate(pt.list) if pat[2] == pytest.approx(2.2)]
    j = completion._SV_INDEX[-4]
    anion_e = pt.alpha_new(False)[p]  # the action's element is an anion
    cation_e = pt.alpha_new(True)[p]  # ... a cation
    assert pt.alpha0[p, j]
    assert not anion_e[ELEMENT_INDEX["C"], j]  # C itself cannot be the second new element
    assert anion_e[ELEMENT_INDEX["Cl"], j]
    assert not cation_e[ELEMENT_INDEX["S"], j]  # S+ (2.58) needs anions above 2.58
    assert cation_e[ELEMENT_INDEX["Fe"], j]


def test_timing_report(capsys) -> None:
    """Average time per state (all 800 actions) over states of random legal play."""
    rng = np.random.default_rng(SEED + 11)
    states = [(random_state(rng, t), t) for _ in range(40) for t in range(5)]
    lines = []
    for constraint in CONSTRAINTS:
        t0 = time.perf_counter()
        for counts, step in states:
            completion.clear_cache()
            completable_actions(counts, step, constraint)
        cold = (time.perf_counter() - t0) / len(states)
        for counts, step in states:
            completable_actions(counts, step, constraint)
        t0 = time.perf_counter()
        for counts, step in states:
            completable_actions(counts, step, constraint)
        warm = (time.perf_counter() - t0) / len(states)
        lines.append(f"{constraint}: cold {cold * 1e3:.3f}, warm {warm * 1e3:.3f} ms/state")
    with capsys.disabled():
        print("\ncompletable_actions timing (steps 0-4 of random legal play): " + "; ".join(lines))


# ------------------------------------------------------------------------------- slow
@pytest.mark.slow
@pytest.mark.parametrize("constraint", CONSTRAINTS)
def test_every_step2_state_is_completable(constraint: str) -> None:
    """The claim behind steps 0 and 1: all 257,401 states reachable in two actions have a
    legal completion (found by the masks, verified by the validity functions)."""
    states = [empty()]
    for e in range(N_ELEMENTS):
        for n in range(1, 19):
            c = empty()
            c[e] = n
            states.append(c)
    n_checked = 0
    for counts in states:
        assert witness(counts, 2, constraint) is not None, describe(counts)
        n_checked += 1
    for e in range(N_ELEMENTS):
        for f in range(e + 1, N_ELEMENTS):
            for n in range(1, 10):
                for m in range(1, 10):
                    c = empty()
                    c[e], c[f] = n, m
                    final = witness(c, 2, constraint)
                    assert final is not None and VALIDITY[constraint](final)[0], describe(c)
                    n_checked += 1
    assert n_checked == 257_401


@pytest.mark.slow
@pytest.mark.parametrize("constraint", CONSTRAINTS)
def test_step3_brute_force_many(constraint: str) -> None:
    rng = np.random.default_rng(SEED + 33)
    for heavy in (False, True):
        for _ in range(400):
            counts = random_state(rng, 3, heavy=heavy)
            got = completable_actions(counts, 3, constraint)
            assert (got == brute_force_mask(counts, 3, constraint)).all(), describe(counts)


@pytest.mark.slow
@pytest.mark.parametrize("constraint", CONSTRAINTS)
def test_step2_brute_force_many(constraint: str) -> None:
    rng = np.random.default_rng(SEED + 44)
    for heavy in (False, True):
        for _ in range(40):
            counts = random_state(rng, 2, heavy=heavy)
            got = completable_actions(counts, 2, constraint)
            masked = np.flatnonzero(~got)
            picks = list(rng.choice(N_ACTIONS, 3, replace=False))
            picks += list(rng.choice(masked, min(3, masked.size), replace=False))
            for a in picks:
                assert got[a] == brute_force_action(counts, 2, int(a), constraint), (
                    describe(counts),
                    a,
                )
