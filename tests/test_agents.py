from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3.common.env_util import make_vec_env

import oxide_env  # noqa: F401
from agents import ConstrainedDQN
from agents.buffers import MaskedReplayBuffer
from agents.policies import PairNet
from agents.sampling import distinct_rows, top_n_sample, uniform_allowed
from tests.test_env import fake_predictors


def tiny_env(n_envs: int = 10, **kwargs):
    kwargs.setdefault("predictors", fake_predictors())
    kwargs.setdefault("task", "bulk_modulus")
    return make_vec_env("OxideComposition-v0", n_envs=n_envs, seed=0, env_kwargs=kwargs)


def tiny_model(env=None, **kwargs):
    kwargs.setdefault("episodes_per_iteration", 10)
    kwargs.setdefault("learning_starts", 50)
    kwargs.setdefault("policy_kwargs", {"embed_dim": 16, "hidden_dim": 16})
    return ConstrainedDQN(env=env if env is not None else tiny_env(), seed=0, device="cpu", **kwargs)


# ---------------------------------------------------------------- sampler
def test_top_n_sample_only_allowed_and_uniform_over_top_k():
    g = torch.Generator().manual_seed(0)
    q = torch.arange(100, dtype=torch.float32).repeat(2000, 1)
    mask = torch.zeros(2000, 100, dtype=torch.bool)
    mask[:, ::2] = True  # 50 allowed actions: 0, 2, ..., 98
    actions = top_n_sample(q, mask, n_pct=20.0, generator=g)
    assert mask[torch.arange(2000), actions].all()
    # top ceil(20% of 50) = 10 allowed actions by q: 80, 82, ..., 98, each ~ 1/10
    values, counts = actions.unique(return_counts=True)
    assert values.tolist() == list(range(80, 100, 2))
    assert counts.min() > 150 and counts.max() < 250
    # n -> 0 is greedy among allowed
    assert (top_n_sample(q, mask, n_pct=0.0, generator=g) == 98).all()
    # a row with a single allowed action always returns it
    m1 = torch.zeros(3, 100, dtype=torch.bool)
    m1[:, 7] = True
    assert (top_n_sample(q[:3], m1, 20.0, generator=g) == 7).all()
    assert (uniform_allowed(m1, generator=g) == 7).all()
    with pytest.raises(ValueError, match="n_pct"):
        top_n_sample(q, mask, n_pct=120)


def test_top_n_kernel_picks_what_torch_topk_picks():
    from agents import kernels

    if not kernels.AVAILABLE:
        pytest.skip("numba not installed")
    rng = np.random.default_rng(0)
    for trial in range(300):  # every rank of small rows, against a stable sort (ties by action index)
        n = int(rng.integers(1, 40))
        q = (rng.integers(-3, 3, (1, n)) if trial % 2 else rng.standard_normal((1, n)) * 10.0 ** rng.integers(-30, 30))
        q = q.astype(np.float32)
        mask = rng.random((1, n)) < 0.6
        mask[0, int(rng.integers(n))] = True
        allowed = np.flatnonzero(mask[0])
        want = allowed[np.lexsort((allowed, -q[0, allowed]))]
        u = ((np.arange(len(allowed)) + 0.5) / len(allowed)).astype(np.float32)
        assert kernels.top_n_pick(q, mask, np.zeros(len(u), np.int64), u, 100.0).tolist() == want.tolist()
    saved = kernels.AVAILABLE
    try:
        for seed in range(40):  # top_n_sample's two paths: the same draws give the same actions (no ties)
            g = torch.Generator().manual_seed(seed)
            n = int(torch.randint(1, 120, (1,), generator=g))
            q = torch.argsort(torch.rand(n, 800, generator=g), dim=1).float() / 100 - 4  # no ties: topk orders
            mask = torch.rand(n, 800, generator=g) < float(torch.rand(1, generator=g))  # those as it likes
            mask[0] = seed % 3 != 0  # a row that allows nothing draws among all actions
            rows = torch.randint(0, n, (300,), generator=g) if seed % 2 else None
            picks = []
            for available in (True, False):
                kernels.AVAILABLE = available
                picks.append(top_n_sample(q, mask, [0.0, 5.0, 20.0, 100.0][seed % 4],
                                          torch.Generator().manual_seed(seed), rows))
            assert torch.equal(*picks)
    finally:
        kernels.AVAILABLE = saved
    with pytest.raises(ValueError, match="float32"):
        kernels.top_n_pick(np.zeros((1, 4)), np.ones((1, 4), bool), np.zeros(1, np.int64), np.zeros(1, np.float32), 20)


def test_byte_reductions_equal_torch_any_and_all():
    from agents.sampling import all_true, any_true

    for shape in ((7, 800), (0, 800), (3, 0)):
        mask = torch.rand(shape, generator=torch.Generator().manual_seed(1)) < 0.01
        for dim in (0, 1):
            for keepdim in (False, True):
                assert torch.equal(any_true(mask, dim, keepdim), mask.any(dim=dim, keepdim=keepdim))
                assert torch.equal(all_true(~mask, dim, keepdim), (~mask).all(dim=dim, keepdim=keepdim))


def test_uniform_allowed_where_picks_the_same_actions_in_fewer_rows():
    mask = torch.rand(200, 800, generator=torch.Generator().manual_seed(2)) > 0.6
    mask[3] = False  # a row with nothing allowed draws among all actions
    where = torch.rand(200, generator=torch.Generator().manual_seed(3)) < 0.1
    where[3] = True
    g1, g2 = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    full = uniform_allowed(mask, generator=g1)
    some = uniform_allowed(mask, generator=g2, where=where)
    assert some[where].tolist() == full[where].tolist() and (some[~where] == -1).all()
    assert torch.rand(1, generator=g1).item() == torch.rand(1, generator=g2).item()  # the same draws were made
    assert mask[where.nonzero().squeeze(1), some[where]][where.nonzero().squeeze(1) != 3].all()


def test_uniform_pick_kernel_picks_what_the_torch_cumsum_picks():
    from agents import kernels
    from agents.sampling import _cumulative_pick

    if not kernels.AVAILABLE:
        pytest.skip("numba not installed")
    g = torch.Generator().manual_seed(7)
    mask = torch.rand(300, 800, generator=g) > torch.rand(300, 1, generator=g)  # 0-100 % allowed per row
    mask[[0, 9]] = False  # rows with nothing allowed draw among all actions
    mask[5] = False
    mask[5, 799] = True
    u = torch.rand(300, generator=g)
    u[:3] = torch.tensor([0.0, 1.0 - 2.0 ** -24, 0.5])  # the smallest and largest float32 draws
    rows = torch.arange(300)
    assert kernels.uniform_pick(mask.numpy(), rows.numpy(), u.numpy()).tolist() == _cumulative_pick(mask, u).tolist()
    some = torch.tensor([5, 5, 0, 299])
    assert kernels.uniform_pick(mask.numpy(), some.numpy(), u[some].numpy()).tolist() == \
        _cumulative_pick(mask[some], u[some]).tolist()
    with pytest.raises(ValueError, match="Invalid arguments"):
        kernels.uniform_pick(mask.numpy(), np.array([300]), np.zeros(1, np.float32))


def test_top_n_sample_rows_draws_from_indexed_rows():
    q = torch.randn(3, 50, generator=torch.Generator().manual_seed(0))
    mask = torch.rand(3, 50, generator=torch.Generator().manual_seed(1)) > 0.3
    rows = torch.tensor([2, 0, 0, 1, 2, 2])
    a = top_n_sample(q, mask, 20.0, generator=torch.Generator().manual_seed(5), rows=rows)
    b = top_n_sample(q[rows], mask[rows], 20.0, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def test_top_n_rows_have_their_own_k():
    g = torch.Generator().manual_seed(1)
    q = torch.arange(10, dtype=torch.float32).repeat(2, 1)
    mask = torch.ones(2, 10, dtype=torch.bool)
    mask[1, :] = False
    mask[1, [0, 1]] = True  # 2 allowed -> k = 1 -> greedy = 1
    out = torch.stack([top_n_sample(q, mask, 20.0, generator=g) for _ in range(200)])
    assert set(out[:, 0].tolist()) == {8, 9} and set(out[:, 1].tolist()) == {1}


# ---------------------------------------------------------------- network
def test_pairnet_batched_equals_per_action():
    net = PairNet(embed_dim=8, hidden_dim=8)
    obs = torch.randn(3, 150)
    q = net(obs)
    actions = torch.tensor([0, 417, 799])
    assert torch.allclose(q[torch.arange(3), actions], net.score(obs, actions), atol=1e-5)
    # reference: explicit concatenation for one action
    e, c = 417 // 10, 417 % 10
    x = (obs[1, :145] - net.feature_mean) / net.feature_std
    parts = [net.act(net.features(x)), net.act(net.step(obs[1, 145:])),
             net.act(net.element(torch.nn.functional.one_hot(torch.tensor(e), 80).float())),
             net.act(net.count(torch.nn.functional.one_hot(torch.tensor(c), 10).float()))]
    ref = net.out(net.act(net.hidden(torch.cat(parts))))
    assert torch.allclose(q[1, 417], ref.squeeze(), atol=1e-5)
    # no running statistics: the normalisation is a fixed buffer, the shipped statistics
    assert not any("running" in k for k in net.state_dict())
    from oxide_env.normalization import feature_statistics

    mean, std = feature_statistics()
    assert torch.equal(net.feature_mean, torch.from_numpy(mean.astype(np.float32)))
    assert torch.equal(net.feature_std, torch.from_numpy(std.astype(np.float32)))


def _kernel_policy_and_states():
    """An untrained policy and 8 states (4 empty, 4 after one step) for the fused kernel's tests."""
    from agents import kernels

    if not kernels.AVAILABLE:
        pytest.skip("numba not installed")
    venv = tiny_env(4)
    return tiny_model().policy, torch.as_tensor(np.concatenate([venv.reset(), venv.step(np.full(4, 52))[0]]))


def test_fused_kernel_equals_torch_networks():
    """The CPU kernel (inference) scores exactly what the torch networks (training) compute."""
    policy, obs = _kernel_policy_and_states()
    q_ref = policy.q_net(obs).detach()  # gradients on: torch path
    logits_ref = torch.stack([o(obs) for o in policy.oracles]).detach()
    with torch.no_grad():
        q, logits = policy.scores(obs)
        assert torch.allclose(q, q_ref, atol=1e-5) and torch.allclose(logits, logits_ref, atol=1e-5)
        assert torch.allclose(policy.q_net(obs), q_ref, atol=1e-5)  # PairNet.forward's kernel path
        columns = torch.tensor([3, 60, 61, 799])
        q_cols, logits_cols = policy.scores(obs, columns)
    assert torch.equal(q_cols[:, columns], q[:, columns])
    assert torch.equal(logits_cols[:, :, columns], logits[:, :, columns])
    others = torch.ones(800, dtype=torch.bool)
    others[columns] = False
    assert torch.isneginf(q_cols[:, others]).all() and torch.isneginf(logits_cols[:, :, others]).all()


def test_masked_kernel_scores_only_allowed_pairs_with_the_same_values():
    """A mask skips pairs without changing any computed value (bit for bit), in acting and the Bellman target."""
    policy, obs = _kernel_policy_and_states()
    mask = torch.from_numpy(np.random.default_rng(0).random((8, 800)) < 0.4)
    mask[5] = False  # a row that allows nothing
    with torch.no_grad():
        q, logits = policy.scores(obs)
        q_m, logits_m = policy.scores(obs, torch.arange(800), mask)
        target = policy.q_net_target.masked_forward(obs, mask)
    assert torch.equal(q_m[mask], q[mask]) and torch.equal(logits_m[:, mask], logits[:, mask])
    assert torch.isneginf(q_m[~mask]).all() and torch.isneginf(logits_m[:, ~mask]).all()
    with torch.no_grad():
        assert torch.equal(target, policy.q_net_target(obs).masked_fill(~mask, float("-inf")))
    with torch.enable_grad():  # the torch path (gradients on) gives the same values to ~1e-6
        slow = policy.q_net_target.masked_forward(obs, mask).detach()
    assert torch.equal(torch.isneginf(slow), ~mask) and torch.allclose(slow[mask], target[mask], atol=1e-5)
    # acting: an empty mask row is scored on the actions other rows allow, as before masks were used
    masks = torch.zeros((8, 800), dtype=torch.bool)
    masks[:4, :300] = True
    scored = policy.scored_actions(torch.cat([obs[:4], obs[:4]]), masks)
    assert torch.equal(scored.q_values[4:, :300], scored.q_values[:4, :300])
    from agents.kernels import pair_scores

    with pytest.raises(ValueError, match="Invalid mask of shape"):
        pair_scores(np.zeros((2, 64), np.float32), np.zeros((800, 64), np.float32),
                    np.zeros((1, 64), np.float32), np.zeros(1, np.float32), np.arange(800),
                    np.ones((3, 800), bool))


def test_distinct_rows_reads_every_array_byte_for_byte():
    obs = np.array([[1.0, 2.0], [1.0, 2.0], [3.0, 4.0], [1.0, 2.0]], np.float32)
    masks = np.array([[True, False], [True, False], [True, False], [False, True]])
    first, inverse = distinct_rows(obs, masks)
    assert len(first) == 3 and np.array_equal(obs[first][inverse], obs) and np.array_equal(masks[first][inverse], masks)
    assert inverse[0] == inverse[1] != inverse[3]  # same state, other mask: another row
    assert len(distinct_rows(np.array([[0.0], [-0.0]]))[0]) == 2  # bytes, not values
    with pytest.raises(ValueError, match="same number of rows"):
        distinct_rows(obs, masks[:2])


def test_a_state_scores_the_same_alone_or_in_a_batch():
    """Scored alone (fused_scores pads 1-3 states to 4), a state gets the bits it gets among 100 others."""
    policy, obs = _kernel_policy_and_states()
    batch = torch.cat([obs] * 13)[:100]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # on two threads MKL may split a batch, and so the sums, differently
    try:
        with torch.no_grad():
            q, logits = policy.scores(batch)
            for rows in ([0], [5], [2, 7], [1, 4, 6], [0, 1, 2, 3, 4]):
                q_r, logits_r = policy.scores(batch[rows])
                assert torch.equal(q_r, q[rows]) and torch.equal(logits_r, logits[:, rows])
    finally:
        torch.set_num_threads(threads)


def test_stacked_state_parts_are_each_nets_own_bits():
    from agents.policies import state_parts

    torch.manual_seed(4)
    nets = [PairNet() for _ in range(3)]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            for p in nets[1].parameters():
                p.add_(torch.randn_like(p))
            for batch in (1, 4, 37, 100):
                obs = torch.randn(batch, 150)
                obs[:, 145:] = torch.nn.functional.one_hot(torch.randint(0, 5, (batch,)), 5).float()
                want = torch.cat([net.state_part(obs) for net in nets], dim=1)
                assert torch.equal(state_parts(nets, obs), want)
                assert torch.equal(state_parts(nets[:1], obs), want[:, :64])
            nets[2].feature_mean += 1.0  # other standardization: each net on its own, still right
            assert torch.equal(state_parts(nets, obs), torch.cat([net.state_part(obs) for net in nets], dim=1))
    finally:
        torch.set_num_threads(threads)


def test_predict_scores_distinct_states_once_with_the_same_actions():
    """predict() scores each distinct (state, mask) once; actions, epsilon coins and draws are unchanged."""
    venv = tiny_env(4)
    obs = np.concatenate([venv.reset(), venv.reset(), venv.step(np.full(4, 52))[0], venv.step(np.full(4, 7))[0]])
    masks = np.stack([np.random.default_rng(i % 3).random(800) < 0.5 for i in range(len(obs))])
    masks[[0, 4]] = masks[1]  # rows 0, 1 and 4: one state, one mask; rows 0 and 2: one state, two masks
    seen = []
    for exploration in (0.0, 0.6):
        models = [tiny_model(), tiny_model()]
        for m in models:
            m.exploration_rate = exploration
        calls = []
        original = models[0].policy.scored_actions
        models[0].policy.scored_actions = lambda o, a=None, r=None: calls.append(len(o)) or original(o, a, r)
        deduplicated, _ = models[0].predict(obs, action_masks=masks)
        every_row = models[1]._epsilon_actions(obs, masks, deterministic=False, epsilon=exploration,
                                                generator=models[1]._sampling_generator)
        assert calls == [len(distinct_rows(obs, masks)[0])] and calls[0] < len(obs)
        assert deduplicated.tolist() == every_row.tolist() and masks[np.arange(len(obs)), deduplicated].all()
        assert models[0].oracle_decisions == models[1].oracle_decisions == len(obs)  # one per decision
        seen.append(deduplicated.tolist())
    assert seen[0] != seen[1]  # the epsilon path was taken


def test_kernel_filters_actions_by_the_oracles_as_torch_does():
    """The kernel's in-pass oracle test equals ``mask & all(logits >= cut)`` on the same scores."""
    import math

    policy, obs = _kernel_policy_and_states()
    with torch.no_grad():
        for oracle in policy.oracles:  # spread the untrained oracles' logits over the actions
            oracle.q_net.element.weight.mul_(30.0)
            oracle.q_net.count.weight.mul_(30.0)
    masks = torch.from_numpy(np.random.default_rng(1).random((8, 800)) < 0.5)
    masks[6] = False  # a row that allows nothing
    filtered = 0
    for t in (0.0, 0.3, 0.5, 0.7, 1.0):
        policy.oracle_threshold = t
        cut = -math.inf if t <= 0 else math.inf if t >= 1 else math.log(t) - math.log1p(-t)
        with torch.no_grad():
            _, logits = policy.scores(obs)
        want = masks & (logits >= cut).all(dim=0)
        empty = ~want.any(dim=1)
        want[empty] = masks[empty]  # the fallback to the mask
        filtered += int(masks.sum() - want.sum())
        assert torch.equal(policy.scored_actions(obs, masks).allowed, want)
    assert filtered > 0  # some threshold filtered some allowed actions


def test_training_mode_reaches_the_q_network_and_every_oracle():
    policy = tiny_model().policy
    assert policy.n_constraints == 2
    for mode in (True, False, False, True):
        policy.set_training_mode(mode)
        nets = [policy.q_net, *policy.oracles]
        assert policy.training == mode and all(m.training == mode for n in nets for m in n.modules())


def test_action_part_equals_the_one_hot_layers():
    from agents.policies import PairNet

    torch.manual_seed(3)
    net = PairNet()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.3)
        e, w = net.embed_dim, net.hidden.weight
        el = net.act(net.element(net.element_onehot))  # the 800-row layers the broadcast replaces
        ct = net.act(net.count(net.count_onehot))
        want = el @ w[:, 2 * e : 3 * e].T + ct @ w[:, 3 * e :].T
        assert torch.allclose(net.action_part(), want, rtol=0, atol=1e-5)  # MKL splits 800 rows over threads
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:  # on one thread (Table 1's runs) the same bits
            assert torch.equal(net._action_part(), el @ w[:, 2 * e : 3 * e].T + ct @ w[:, 3 * e :].T)
        finally:
            torch.set_num_threads(threads)


def test_fused_kernel_leaves_torch_thread_count_alone():
    """numba's OpenMP layer used to raise torch's thread count to all cores (slow, spinning torch ops)."""
    from agents import kernels

    if not kernels.AVAILABLE:
        pytest.skip("numba not installed")
    model = tiny_model()
    obs = torch.as_tensor(tiny_env(2).reset())
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        with torch.no_grad():
            model.policy.scores(obs)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_generation_scores_each_distinct_state_once_with_identical_results():
    """Batched generation (distinct states scored once) equals stepping every episode on its own."""
    from agents.generation import generate_counts
    from oxide_env.chemistry.episode import hard_rule_masks
    from oxide_env.core import observations

    model = tiny_model()
    model.learn(total_timesteps=300)
    n, seed = 64, 3
    fast = generate_counts(model, n, seed=seed)
    generator = torch.Generator().manual_seed(seed)
    counts = np.zeros((n, 80), dtype=np.int64)
    for step in range(5):
        obs = torch.as_tensor(observations(counts, step))
        actions = model.policy._predict(obs, action_masks=hard_rule_masks(counts, step), generator=generator).numpy()
        np.add.at(counts, (np.arange(n), actions // 10), actions % 10)
    assert np.array_equal(fast, counts)
    assert len({r.tobytes() for r in fast}) > 1


# ---------------------------------------------------------------- algorithm
def test_masked_bellman_target_ignores_forbidden_actions(monkeypatch):
    model = tiny_model()
    model.learn(total_timesteps=200)
    data = model.replay_buffer.sample(32)
    with torch.no_grad():
        q_next = model.q_net_target(data.next_observations)
    masked = q_next.masked_fill(~data.next_action_masks, float("-inf")).max(dim=1).values
    # at least one sampled row has a restrictive next mask (last step: oxygen only)
    restrictive = data.next_action_masks.sum(dim=1) < 800
    assert restrictive.any()
    assert (masked[restrictive] <= q_next[restrictive].max(dim=1).values).all()


def test_mask_all_but_the_right_action():
    """sb3-contrib style: with only one allowed action, the agent always takes it."""
    model = tiny_model()
    obs = np.zeros((5, 150), dtype=np.float32)
    obs[:, 145] = 1
    masks = np.zeros((5, 800), dtype=bool)
    right = np.array([3, 200, 411, 799, 65])
    masks[np.arange(5), right] = True
    model.exploration_rate = 1.0
    for deterministic in (True, False):
        actions, _ = model.predict(obs, action_masks=masks, deterministic=deterministic)
        assert np.array_equal(actions, right)


def test_training_never_takes_a_hard_masked_action():
    model = tiny_model(tiny_env(exact_masks="charge_neutral"))
    model.learn(total_timesteps=1000)
    invalid = model.replay_buffer.rewards[: model.replay_buffer.pos] == -1e9  # never produced
    assert not invalid.any()
    labels = model.replay_buffer.constraint_labels[: model.replay_buffer.pos]
    known = labels[..., 0] >= 0
    assert known.any() and (labels[..., 0][known] == 1).all()  # exact masks: every episode neutral


def test_oracles_learn_a_learnable_constraint():
    """Toy env: the constraint holds iff the first action's element is even; oracles learn it."""

    class Toy(gym.Env):
        observation_space = spaces.Box(0, 1, (4,), np.float32)
        action_space = spaces.Discrete(6)

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            self.t, self.first = 0, None
            return np.array([1, 0, 0, 0], np.float32), {}

        def action_masks(self):
            return np.ones(6, dtype=bool)

        def step(self, a):
            self.first = a if self.first is None else self.first
            self.t += 1
            done = self.t == 2
            info = {"action_mask": np.ones(6, dtype=bool)}
            if done:
                info["ok"] = self.first % 2 == 0
            obs = np.array([0, 1, 0, 0] if not done else [0, 0, 1, 0], np.float32)
            return obs, float(done), done, False, info

    env = make_vec_env(Toy, n_envs=10, seed=0)
    model = ConstrainedDQN("PaperQPolicy", env, constraints=("ok",), episodes_per_iteration=10, learning_starts=20,
                           policy_kwargs={"paper_network": False, "net_arch": [32]}, oracle_gradient_steps=20,
                           seed=0, device="cpu")
    model.learn(total_timesteps=3000)
    probs = model.policy.oracle_probabilities(torch.tensor([[1, 0, 0, 0]], dtype=torch.float32))[0, 0]
    assert (probs[[0, 2, 4]] > 0.5).all() and (probs[[1, 3, 5]] < 0.5).all()
    obs = np.tile(np.array([1, 0, 0, 0], np.float32), (50, 1))
    actions, _ = model.predict(obs, action_masks=np.ones((50, 6), bool), deterministic=False)
    assert np.all(actions % 2 == 0)


def test_epsilon_schedule_follows_the_paper():
    model = tiny_model(episodes_per_iteration=10)
    model.learn(total_timesteps=500)  # 100 episodes = 10 iterations
    assert model.iteration == 10
    # the rate was last set while the 10th iteration was running (9 completed)
    assert model.exploration_rate == pytest.approx(0.99 * 0.99**9)


def test_same_seed_same_training_and_generation():
    def run():
        model = tiny_model()
        model.learn(total_timesteps=600)
        params = torch.cat([p.detach().flatten() for p in model.policy.parameters()])
        return params, model.generate(30, seed=5)

    p1, g1 = run()
    p2, g2 = run()
    assert torch.equal(p1, p2) and g1 == g2


def test_save_load_round_trip(tmp_path):
    model = tiny_model()
    model.learn(total_timesteps=300)
    before = model.generate(40, seed=3)
    model.save(tmp_path / "agent")
    loaded = ConstrainedDQN.load(tmp_path / "agent", env=tiny_env(), device="cpu")
    assert loaded.generate(40, seed=3) == before
    assert loaded.top_n_pct == model.top_n_pct and loaded.constraints == model.constraints
    for a, b in zip(model.policy.state_dict().values(), loaded.policy.state_dict().values()):
        assert torch.equal(a, b)


def test_distinct_generation_redraws_duplicates():
    from agents.generation import generate_counts
    from oxide_env.chemistry.metrics import composition_keys

    model = tiny_model()
    model.learn(total_timesteps=300)
    counts = generate_counts(model, 60, seed=2, distinct=True)
    assert counts.shape == (60, 80) and len(set(composition_keys(counts))) == 60
    assert np.array_equal(counts, generate_counts(model, 60, seed=2, distinct=True))
    with pytest.raises(ValueError, match="Only 0 distinct materials after 0 rounds"):
        generate_counts(model, 5, seed=2, distinct=True, max_rounds=0)


def test_no_oracles_trains_saves_and_loads(tmp_path):
    model = tiny_model(constraints=())
    assert len(model.policy.oracles) == 0 and model.policy.oracle_optimizer is None
    model.learn(total_timesteps=300)
    model.save(tmp_path / "m.zip")
    loaded = ConstrainedDQN.load(tmp_path / "m.zip", env=tiny_env(), device="cpu")
    assert loaded.constraints == ()
    assert loaded.generate(20, seed=4) == model.generate(20, seed=4)


# ---------------------------------------------------------------- policy: action selection, MlpPolicy, load
def test_policy_predict_takes_masks_like_maskable_policies():
    """policy.predict: numpy in/out, one observation or a batch, masks respected; _predict's rows = repeated states."""
    model = tiny_model(top_n_pct=10.0)
    policy = model.policy
    obs = tiny_env(3).reset()
    masks = np.zeros((3, 800), dtype=bool)
    masks[0, [5, 6]] = masks[1, 700:] = masks[2, ::7] = True
    torch.manual_seed(0)
    actions, state = policy.predict(obs, action_masks=masks)
    assert isinstance(actions, np.ndarray) and actions.shape == (3,) and state is None
    assert masks[np.arange(3), actions].all()
    one, _ = policy.predict(obs[1], action_masks=masks[1], deterministic=True)
    assert one.shape == () and masks[1, one]
    scored = policy.scored_actions(torch.as_tensor(obs), masks)
    greedy = scored.q_values.masked_fill(~scored.allowed, float("-inf")).argmax(dim=1).numpy()
    assert np.array_equal(policy.predict(obs, action_masks=masks, deterministic=True)[0], greedy)
    assert policy.predict(obs[1], action_masks=masks[1], deterministic=True)[0] == greedy[1]
    # rows: distinct states in, one action per episode out, same draws as the repeated states
    rows = torch.tensor([2, 0, 0, 1, 2, 2, 1])
    obs_t, masks_t = torch.as_tensor(obs), torch.as_tensor(masks)
    fast = policy._predict(obs_t, action_masks=masks_t, generator=torch.Generator().manual_seed(4), rows=rows)
    slow = policy._predict(obs_t[rows], action_masks=masks_t[rows], generator=torch.Generator().manual_seed(4))
    assert torch.equal(fast, slow)
    with pytest.raises(ValueError, match=r"action_masks of shape \(3, 10\)"):
        policy._predict(obs_t, action_masks=np.ones((3, 10), bool))


def test_oracle_fallback_is_counted_by_the_policy():
    model = tiny_model(oracle_threshold=1.0)  # sigmoid < 1: the oracles reject every action
    obs = tiny_env(4).reset()
    actions, _ = model.predict(obs, action_masks=np.ones((4, 800), bool), deterministic=True)
    assert model.policy.oracle_fallbacks == model.oracle_fallbacks == 4 and model.oracle_decisions == 4
    assert len(actions) == 4


def test_relative_oracle_fallback_keeps_the_likeliest_actions(tmp_path):
    model = tiny_model(oracle_threshold=1.0, oracle_relative=0.9)  # T = 1: every row falls back
    with torch.no_grad():  # spread the untrained oracles' outputs (all near 0.5 otherwise)
        for p in model.policy.oracles.parameters():
            p.mul_(3.0)
    obs = torch.as_tensor(tiny_env(3).reset())
    masks = torch.ones((3, 800), dtype=torch.bool)
    masks[:, 400:] = False
    scored = model.policy.scored_actions(obs, masks)
    with torch.no_grad():
        _, logits = model.policy.scores(obs, torch.arange(800))
    success = torch.sigmoid(logits.min(dim=0).values.double())[:, :400]  # the least likely constraint decides
    expected = success >= 0.9 * success.max(dim=1, keepdim=True).values
    assert torch.equal(scored.allowed[:, :400], expected) and not scored.allowed[:, 400:].any()
    assert 3 <= int(expected.sum()) < 3 * 400
    assert model.oracle_fallbacks == 3
    model.oracle_relative = 0.0  # the paper's fallback: the whole mask
    assert torch.equal(model.policy.scored_actions(obs, masks).allowed, masks)
    with pytest.raises(ValueError, match="Invalid oracle_relative=2"):
        model.oracle_relative = 2
    model.oracle_relative = 0.5
    model.save(tmp_path / "m.zip")
    assert ConstrainedDQN.load(tmp_path / "m.zip", device="cpu").policy.oracle_relative == 0.5


def test_policy_settings_live_in_the_policy_and_are_saved(tmp_path):
    model = tiny_model(top_n_pct=10.0, merge_noops=True, oracle_threshold=0.4)
    policy = model.policy
    assert (policy.top_n_pct, policy.merge_noops, policy.oracle_threshold) == (10.0, True, 0.4)
    model.top_n_pct = 30
    assert policy.top_n_pct == 30.0 and model.policy_kwargs["top_n_pct"] == 30.0
    with pytest.raises(ValueError, match="Invalid top_n_pct=101"):
        model.top_n_pct = 101
    with pytest.raises(ValueError, match="Invalid merge_noops=1"):
        model.merge_noops = 1
    model.save(tmp_path / "m.zip")
    loaded = ConstrainedDQN.load(tmp_path / "m.zip", device="cpu")
    assert (loaded.policy.top_n_pct, loaded.policy.merge_noops, loaded.policy.oracle_threshold) == (30.0, True, 0.4)
    with pytest.raises(ValueError, match=r"policy_kwargs\['top_n_pct'\]=5.*pass top_n_pct="):
        tiny_model(policy_kwargs={"top_n_pct": 5.0})
    with pytest.raises(ValueError, match="Invalid policy='CnnPolicy'"):
        ConstrainedDQN("CnnPolicy", tiny_env(2))


def test_file_with_settings_on_the_algorithm_loads_them_into_the_policy(tmp_path):
    """Files saved before top_n_pct etc. moved into the policy keep their values."""
    import json
    import zipfile

    model = tiny_model(top_n_pct=10.0, merge_noops=True)
    model.save(tmp_path / "new.zip")
    with zipfile.ZipFile(tmp_path / "new.zip") as zin, zipfile.ZipFile(tmp_path / "old.zip", "w") as zout:
        for name in zin.namelist():
            content = zin.read(name)
            if name == "data":
                data = json.loads(content)
                for key in ("top_n_pct", "merge_noops", "oracle_threshold"):
                    data[key] = data["policy_kwargs"].pop(key)
                data["oracle_fallbacks"] = 7
                content = json.dumps(data).encode()
            zout.writestr(name, content)
    loaded = ConstrainedDQN.load(tmp_path / "old.zip", device="cpu")
    assert (loaded.top_n_pct, loaded.merge_noops, loaded.oracle_fallbacks) == (10.0, True, 0)
    assert loaded.generate(20, seed=1) == model.generate(20, seed=1)


def test_mlp_policy_trains_predicts_saves_and_loads(tmp_path):
    from agents.policies import ConstrainedMlpPolicy

    env = tiny_env(normalize_observations=True)
    model = ConstrainedDQN("MlpPolicy", env, episodes_per_iteration=10, learning_starts=50,
                           policy_kwargs={"net_arch": [16]}, seed=0, device="cpu")
    assert isinstance(model.policy, ConstrainedMlpPolicy) and len(model.policy.oracles) == 2
    assert type(model.q_net).__name__ == "QNetwork" and model.policy.net_arch == [16]
    model.learn(total_timesteps=300)
    assert model.replay_buffer.constraint_labels[: model.replay_buffer.pos].max() >= 0  # oracles had labels
    masks = np.zeros((10, 800), dtype=bool)
    masks[:, 410:420] = True
    actions, _ = model.predict(env.reset(), action_masks=masks)
    assert ((actions >= 410) & (actions < 420)).all()
    before = model.generate(30, seed=2)
    model.save(tmp_path / "mlp")
    loaded = ConstrainedDQN.load(tmp_path / "mlp", device="cpu")
    assert isinstance(loaded.policy, ConstrainedMlpPolicy)
    assert loaded.generate(30, seed=2) == before
    for a, b in zip(model.policy.state_dict().values(), loaded.policy.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="paper_network=True"):
        ConstrainedDQN("MlpPolicy", env, policy_kwargs={"paper_network": True})


def test_load_without_env_generates_with_the_saved_env_settings(tmp_path):
    model = tiny_model(tiny_env(exact_masks="charge_neutral", normalize_observations=True))
    model.learn(total_timesteps=100)
    assert model.generation_settings == {"exact_masks": "charge_neutral", "constraint_lookahead": False,
                                         "normalize_observations": True}
    model.save(tmp_path / "m.zip")
    loaded = ConstrainedDQN.load(tmp_path / "m.zip", device="cpu")
    assert loaded.env is None and loaded.generation_settings == model.generation_settings
    assert loaded.generate(40, seed=3) == model.generate(40, seed=3)
    assert loaded.generate(40, seed=3, exact_masks=None) == model.generate(40, seed=3)  # None: the saved setting
    assert loaded.generate(40, seed=3, normalize_observations=False) != model.generate(40, seed=3)
    with pytest.raises(ValueError, match="normalize_observations='yes'"):
        loaded.generate(5, normalize_observations="yes")


def test_env_without_action_masks_is_refused():
    model = ConstrainedDQN("MlpPolicy", "CartPole-v1", constraints=(), seed=0, device="cpu")
    with pytest.raises(ValueError, match=r"needs envs with action_masks\(\)"):
        model.learn(total_timesteps=10)


def test_learning_improves_reward_over_random():
    from oxide_env.chemistry.baseline import random_oxide_counts

    env = tiny_env(20)
    model = tiny_model(env, episodes_per_iteration=20, exploration_decay=0.9, gradient_steps=20,
                       learning_rate=3e-3)
    model.learn(total_timesteps=6000)
    reward = fake_predictors()["bulk_modulus"]
    trained = np.mean([reward(c[None])[0] for c in __import__("agents").generation.generate_counts(model, 300, 0)])
    random = reward(random_oxide_counts(300, seed=0)).mean()
    assert trained > random


def test_bad_arguments():
    with pytest.raises(ValueError, match="top_n_pct"):
        tiny_model(top_n_pct=150)
    with pytest.raises(ValueError, match="oracle_threshold"):
        tiny_model(oracle_threshold=2)
    with pytest.raises(ValueError, match="divisible"):
        ConstrainedDQN(env=tiny_env(7), episodes_per_iteration=10)
    with pytest.raises(ValueError, match="n=-1"):
        tiny_model().generate(-1)
    assert math.isfinite(0.0)


def test_replay_buffer_labels_whole_episode():
    env = tiny_env(2)
    buf = MaskedReplayBuffer(100, env.observation_space, env.action_space, device="cpu", n_envs=2,
                             constraints=("charge_neutral",))
    obs = np.zeros((2, 150), np.float32)
    for t in range(5):
        done = np.array([t == 4, t == 4])
        infos = [{"action_mask": np.ones(800, bool), "charge_neutral": True},
                 {"action_mask": np.ones(800, bool), "charge_neutral": False}]
        buf.add(obs, obs, np.array([1, 2]), np.zeros(2), done, infos)
    assert (buf.constraint_labels[:5, 0, 0] == 1).all() and (buf.constraint_labels[:5, 1, 0] == 0).all()




def test_paper_network_standardises_once_on_a_normalizing_env():
    """On a normalize_observations=True env the network must not standardise the features again."""
    import gymnasium as gym
    import torch

    from agents import ConstrainedDQN

    raw_env = gym.make("OxideComposition-v0", predictors=fake_predictors())
    norm_env = gym.make("OxideComposition-v0", predictors=fake_predictors(), normalize_observations=True)
    raw, norm = ConstrainedDQN(env=raw_env, seed=3), ConstrainedDQN(env=norm_env, seed=3)
    assert norm.policy.normalized_observations and not raw.policy.normalized_observations
    raw_env.reset(seed=0)
    norm_env.reset(seed=0)
    o_raw, *_ = raw_env.step(10 * 20 + 2)
    o_norm, *_ = norm_env.step(10 * 20 + 2)
    with torch.no_grad():
        q_raw = raw.policy.q_net(torch.as_tensor(o_raw[None]))
        q_norm = norm.policy.q_net(torch.as_tensor(o_norm[None]))
    torch.testing.assert_close(q_norm, q_raw, rtol=1e-4, atol=1e-4)


def test_target_network_scores_with_its_current_weights_after_a_target_update():
    """A memo of the network's action part must never outlive a weight copy (polyak_update uses .data)."""
    import copy

    model = tiny_model()
    obs = torch.as_tensor(np.stack([model.env.observation_space.sample() for _ in range(4)]))
    with torch.no_grad():
        model.q_net_target(obs)  # score once before the update
    model.learn(total_timesteps=200)  # several target updates
    fresh = copy.deepcopy(model.q_net_target)
    fresh.load_state_dict(model.q_net_target.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(model.q_net_target(obs), fresh(obs))


def test_remembered_action_part_follows_every_weight_change():
    from agents.policies import PairNet

    net = PairNet()
    with torch.no_grad():
        first = net.action_part()
        assert net.action_part() is first  # unchanged weights: the remembered value
        net.hidden.weight.data[0, 200] += 1.0  # an in-place copy such as polyak_update's
        second = net.action_part()
        assert not torch.equal(first, second)
        torch.testing.assert_close(second, net._action_part(), rtol=0, atol=0)
    assert net.action_part().requires_grad  # with gradients: computed afresh, differentiable
    assert "_action_memo" not in net.state_dict()
