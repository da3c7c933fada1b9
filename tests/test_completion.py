"""Tests for oxide_env.chemistry.completion: hard rules and exact forward constraint masks.

Ground truth is brute force: every legal completion is enumerated and judged by the
validity functions (which are themselves tested against SMACT), for all three constraints
(charge neutral, electronegativity balanced, the oxide rule). The batched masks are checked
row by row against the one-state path on thousands of random states. Steps 3 and 4 are checked
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
from oxide_env.chemistry.completion import completable_action_masks, completable_actions, is_completable
from oxide_env.chemistry.episode import N_ACTIONS, hard_rule_mask, hard_rule_masks
from oxide_env.chemistry.composition import formula_to_counts
from oxide_env.chemistry.elements import ELEMENT_INDEX, ELEMENTS, N_ELEMENTS, OXYGEN_INDEX
from oxide_env.chemistry.validity import charge_neutral, electronegativity_balanced, oxide_rule

VALIDITY = {
    "charge_neutral": charge_neutral,
    "electronegativity_balanced": electronegativity_balanced,
    "oxide_rule": oxide_rule,
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
        rows, actions = np.nonzero(hard_rule_masks(frontier, t))
        frontier = frontier[rows] + ADDS[actions]
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
    """States at step 3 with their brute-force masks for every constraint (the Pauling
    test is only run on the neutral completions: it implies neutrality)."""
    rng = np.random.default_rng(SEED)
    states = [random_state(rng, 3) for _ in range(30)]
    states += [random_state(rng, 3, heavy=True) for _ in range(12)]
    states += [empty(), formula_to_counts("O9"), formula_to_counts("O27")]  # oxygen only
    out = []
    for counts in states:
        actions = np.flatnonzero(hard_rule_mask(counts, 3))
        finals = ((counts + ADDS[actions])[:, None, :] + OXYGEN_K[None]).reshape(-1, N_ELEMENTS)
        neutral = charge_neutral(finals)
        balanced = np.zeros_like(neutral)
        balanced[neutral] = electronegativity_balanced(finals[neutral])
        oxide = oxide_rule(finals)
        masks = {}
        for name, valid in (
            ("charge_neutral", neutral),
            ("electronegativity_balanced", balanced),
            ("oxide_rule", oxide),
        ):
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
    assert n_false > 50  # the sample exercises masked actions


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
    assert n_false >= 3


# Step-2 states whose masks depend on one case of the step-2 pass alone (found by disabling
# each case in turn over all 257,401 step-2 states): a second new element after a new one
# (S2Tm5, P6Yb8, Cl2Tb4), with the bounds that new element sets (Lu16, Lu17: EN only); a new
# element after raising a present one (H10, Cl5Yb9, Al9Dy4, Al8Th3); a new element after
# oxygen or count 0 (empty, B4Lu7, O8Rb1, Be7Al9, F8Cs1).
STEP2_DECISIVE = (
    "S2Tm5 P6Yb8 Cl2Tb4 Br5Lu8 Ga8Hg4 Lu16 Lu17 H10 Cl5Yb9 Al9Dy4 Al8Th3 Rb8Rh8 "
    "B4Lu7 O8Rb1 Be7Al9 F8Cs1 Ca8Lu9 Al1Tb8 Ba9Lu9 O18"
).split()


@pytest.mark.parametrize("constraint", CONSTRAINTS)
def test_step2_all_actions_agree_with_step3(constraint: str) -> None:
    """mask_2[a] == any(mask_3(state + a)) for all 800 actions (mask_3 is brute-force checked)."""
    rng = np.random.default_rng(SEED + 22)
    states = [random_state(rng, 2, heavy=heavy) for heavy in (False, True) for _ in range(10)]
    states += [empty()] + [formula_to_counts(f) for f in STEP2_DECISIVE]
    batch = np.stack(states)
    got = completable_action_masks(batch, 2, constraint)
    children = completable_action_masks((batch[:, None, :] + ADDS[None]).reshape(-1, N_ELEMENTS), 3, constraint)
    want = hard_rule_masks(batch, 2) & children.any(axis=1).reshape(len(batch), N_ACTIONS)
    for counts, g, w in zip(batch, got, want):
        diff = np.flatnonzero(g != w)
        assert not diff.size, f"{describe(counts)}: actions {diff[:10].tolist()} differ"
    assert (~got).sum() > 0  # masked actions are rare at step 2; these states have some


# ------------------------------------------------------------------------ steps 0 and 1
@pytest.mark.parametrize("constraint", CONSTRAINTS)
def test_step1_agrees_with_step2(constraint: str) -> None:
    rng = np.random.default_rng(SEED + 1)
    for counts in (random_state(rng, 1), random_state(rng, 1, heavy=True)):
        got = completable_actions(counts, 1, constraint)
        assert got.all()
        children = completable_action_masks(counts + ADDS, 2, constraint).any(axis=1)
        assert children.all(), (describe(counts), np.flatnonzero(~children)[:5])


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
    lu18 = formula_to_counts("Lu18")  # Lu is +3 only (SMACT 2014): +54 to balance
    for constraint in ("charge_neutral", "electronegativity_balanced"):
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
    """2,000 rollouts that pick uniformly among the allowed actions (batched masks) end valid."""
    rng = np.random.default_rng(SEED + 9)
    counts = np.zeros((2000, N_ELEMENTS), dtype=np.int64)
    for step in range(5):
        masks = completable_action_masks(counts, step, constraint)
        assert masks.any(axis=1).all(), step
        assert not (masks & ~hard_rule_masks(counts, step)).any()
        picks = [int(rng.choice(np.flatnonzero(row))) for row in masks]
        counts = counts + ADDS[picks]
    assert VALIDITY[constraint](counts).all()
    assert (counts[:, OXYGEN_INDEX] > 0).all()
    assert ((counts.sum(1) - counts[:, OXYGEN_INDEX]) > 0).all()


@pytest.mark.parametrize("constraint", CONSTRAINTS)
@pytest.mark.parametrize("step", [2, 3, 4])
def test_batched_equals_per_state(constraint: str, step: int) -> None:
    """completable_action_masks row by row == completable_actions (one state each, cold
    cache) on 1,000 random reachable states, light and heavy, with duplicates."""
    rng = np.random.default_rng(SEED + 100 * step)
    states = [random_state(rng, step) for _ in range(700)]
    states += [random_state(rng, step, heavy=True) for _ in range(300)]
    states += states[:50]  # repeated states in one batch
    batch = np.stack(states)
    completion.clear_cache()
    got = completable_action_masks(batch, step, constraint)
    assert got.shape == (len(batch), N_ACTIONS) and got.dtype == bool
    completion.clear_cache()
    for i in range(0, len(batch), 7):  # a spread sample row by row (the n = 1 path) ...
        assert (completable_actions(batch[i], step, constraint) == got[i]).all(), describe(batch[i])
    completion.clear_cache()  # ... and every row from independent small batches
    parts = [completable_action_masks(batch[i : i + 13], step, constraint) for i in range(0, len(batch), 13)]
    np.testing.assert_array_equal(np.concatenate(parts), got)
    np.testing.assert_array_equal(completable_action_masks(batch, step, constraint), got)  # warm


@pytest.mark.parametrize("constraint", CONSTRAINTS)
def test_row_blocks_in_threads_give_the_same_masks(constraint: str) -> None:
    numba = pytest.importorskip("numba")
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("one numba thread")
    rng = np.random.default_rng(SEED + 7)
    batch = np.stack([random_state(rng, 3) for _ in range(400)])
    rule, before = completion._rule(constraint), numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = rule.masks(batch, 3)
        numba.set_num_threads(2)  # two blocks of 200 rows, one a thread
        np.testing.assert_array_equal(rule.masks(batch, 3), one)
    finally:
        numba.set_num_threads(before)


def test_batched_bad_inputs_raise() -> None:
    with pytest.raises(ValueError, match=r"\(n, 80\)"):
        completable_action_masks(empty(), 2, "charge_neutral")
    with pytest.raises(ValueError, match="row 1"):
        completable_action_masks(np.stack([empty(), formula_to_counts("Fe10")]), 1, "oxide_rule")
    with pytest.raises(ValueError, match="constraint"):
        completable_action_masks(np.zeros((1, N_ELEMENTS), dtype=int), 2, "oxide")
    assert completable_action_masks(np.zeros((0, N_ELEMENTS), dtype=int), 3, "oxide_rule").shape == (0, N_ACTIONS)


def test_oxide_rule_known_masks() -> None:
    """Oxide rule: oxygen only -2, metals never negative, icsd24 states."""
    ba = formula_to_counts("Ba")
    assert np.flatnonzero(completable_actions(ba, 4, "oxide_rule")).tolist() == [61]  # BaO only
    # Pt-1 and Os-2 are not allowed: Re10Os8 can never become an oxide-rule oxide with O1-9
    assert not completable_actions(formula_to_counts("Re9Os8"), 4, "oxide_rule").any()
    # oxygen alone is never valid under the oxide rule (SMACT's rules count it as valid)
    assert not completable_actions(formula_to_counts("O9"), 4, "oxide_rule").any()
    assert completable_actions(formula_to_counts("O9"), 4, "charge_neutral")[61:70].all()


@pytest.mark.parametrize("constraint", CONSTRAINTS)
def test_proof_fingerprint_matches_installed_tables(constraint: str) -> None:
    """Steps 0-1 rely on the slow exhaustive check; it was run for these exact tables."""
    assert completion._rule(constraint).fingerprint == completion._PROOF_FINGERPRINTS[constraint]


def test_returns_fresh_arrays() -> None:
    a = completable_actions(formula_to_counts("Fe2"), 2, "charge_neutral")
    a[:] = False
    assert completable_actions(formula_to_counts("Fe2"), 2, "charge_neutral").any()


def test_second_new_element() -> None:
    """Step 2 actions whose only completions add a second new element (not the action's own
    element, on the right side of the bounds it sets) agree with brute force."""
    cases = [("Mo8Pd9", "Sn", 6), ("Er4", "Lu", 5), ("Ta8Bi8", "B", 7), ("In9Ce5", "Ba", 7)]
    for formula, symbol, count in cases:
        counts = formula_to_counts(formula)
        a = 10 * ELEMENT_INDEX[symbol] + count
        for constraint in CONSTRAINTS:
            got = completable_actions(counts, 2, constraint)[a]
            assert got == brute_force_action(counts, 2, a, constraint), (formula, symbol, count, constraint)


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
def all_step2_states() -> np.ndarray:
    """The 257,401 states reachable in two actions: empty, one element 1-18, two elements 1-9 each."""
    rows = [empty()]
    for e in range(N_ELEMENTS):
        for n in range(1, 19):
            c = empty()
            c[e] = n
            rows.append(c)
    for e in range(N_ELEMENTS):
        for f in range(e + 1, N_ELEMENTS):
            block = np.zeros((81, N_ELEMENTS), dtype=np.int64)
            block[:, e] = np.repeat(np.arange(1, 10), 9)
            block[:, f] = np.tile(np.arange(1, 10), 9)
            rows.extend(block)
    return np.stack(rows)


@pytest.mark.slow
@pytest.mark.parametrize("constraint", CONSTRAINTS)
def test_every_step2_state_is_completable(constraint: str) -> None:
    """The claim behind steps 0 and 1: all 257,401 states reachable in two actions have a
    legal completion (found by the batched masks, verified by the validity functions)."""
    counts = all_step2_states()
    assert len(counts) == 257_401
    for step in (2, 3, 4):
        masks = completable_action_masks(counts, step, constraint)
        stuck = np.flatnonzero(~masks.any(axis=1))
        assert not stuck.size, (step, [describe(counts[i]) for i in stuck[:5]])
        counts = counts + ADDS[masks.argmax(axis=1)]
    valid = VALIDITY[constraint](counts)
    assert valid.all(), [describe(c) for c in counts[~valid][:5]]


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
