"""A fused CPU kernel that scores every action with several paper networks at once.

The paper's networks (:class:`~agents.policies.PairNet`) end in
``out(LeakyReLU(state_part(s) + action_part(a)))``: for each state, each action and each
network that is 64 adds, 64 LeakyReLUs and 64 multiply-adds. Torch does this as three
passes over a ``(batch, 800, 64)`` temporary per network; this numba kernel does it in one
pass over registers, for the Q-network and the oracles together, and only for the
(state, action) pairs the states' masks allow. On 2 CPU cores it scores a state with three networks
in 11 µs instead of 180 µs (``python benchmarks/agent_speed.py`` measures both).

Used for inference on the CPU (no gradients: acting, generation, the Bellman target's max);
the gradient steps and GPU policies use torch. Every
output element is computed by one thread in a fixed order, so results are deterministic;
they agree with torch's to ~1e-7.

Example:
    >>> import numpy as np
    >>> state = np.zeros((1, 2), np.float32); action = np.array([[1.0, -1.0]], np.float32)
    >>> out = np.ones((1, 2), np.float32); bias = np.zeros(1, np.float32)
    >>> round(float(pair_scores(state, action, out, bias, np.array([0]))[0, 0, 0]), 6)  # 1 + (-0.01)
    0.99
    >>> float(pair_scores(state, action, out, bias, np.array([0]), mask=np.zeros((1, 1), bool))[0, 0, 0])
    -inf
"""

from __future__ import annotations

import numpy as np

try:  # numba is a dependency; without it the policies fall back to torch
    import numba
except ImportError:  # pragma: no cover
    numba = None

AVAILABLE = numba is not None
NEGATIVE_SLOPE = 0.01  # torch.nn.LeakyReLU's default

if AVAILABLE:

    @numba.njit(parallel=True, fastmath={"reassoc", "contract", "nsz"}, cache=True)
    def _scores(state, action, out_weight, out_bias, columns, mask, result):  # pragma: no cover - compiled
        n_states = state.shape[0]
        n_nets, hidden = out_weight.shape
        slope = np.float32(NEGATIVE_SLOPE)
        for b in numba.prange(n_states):
            for c in range(columns.shape[0]):
                a = columns[c]
                if not mask[b, a]:
                    for k in range(n_nets):
                        result[k, b, c] = -np.inf
                    continue
                for k in range(n_nets):
                    acc = np.float32(0.0)
                    base = k * hidden
                    for j in range(hidden):
                        x = state[b, base + j] + action[a, base + j]
                        acc += out_weight[k, j] * (x if x > 0 else slope * x)
                    result[k, b, c] = acc + out_bias[k]


def pair_scores(state: np.ndarray, action: np.ndarray, out_weight: np.ndarray, out_bias: np.ndarray,
                columns: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Scores ``(n_nets, batch, len(columns))`` of ``n_nets`` networks.

    Args:
        state: state parts of the hidden pre-activation, networks side by side,
            float32 ``(batch, n_nets * hidden)``.
        action: action parts, float32 ``(n_actions, n_nets * hidden)``.
        out_weight: output weights, float32 ``(n_nets, hidden)``.
        out_bias: output biases, float32 ``(n_nets,)``.
        columns: the action indices to score (int64).
        mask: optional bool ``(batch, n_actions)``: only the pairs it allows are computed, the
            others read -inf. A pair's value does not depend on the mask (the same arithmetic in
            the same order), so masked scores equal the unmasked ones where allowed. Masked
            rows (a Bellman target's next states, the states an agent acts in) allow about half
            of the actions: ~1.7x faster.
    """
    if not AVAILABLE:  # pragma: no cover
        raise RuntimeError("agents.kernels needs numba: pip install numba")
    n_nets, hidden = out_weight.shape
    if state.shape[1] != n_nets * hidden or action.shape[1] != n_nets * hidden:
        raise ValueError(f"Invalid shapes: state {state.shape}, action {action.shape} for {n_nets} networks "
                         f"of hidden width {hidden}.")
    if mask is None:
        mask = np.ones((state.shape[0], action.shape[0]), dtype=bool)
    elif mask.shape != (state.shape[0], action.shape[0]):
        raise ValueError(f"Invalid mask of shape {mask.shape}: expected {(state.shape[0], action.shape[0])}, one "
                         "row per state and one column per action.")
    result = np.empty((n_nets, state.shape[0], len(columns)), dtype=np.float32)
    _scores(np.ascontiguousarray(state, dtype=np.float32), np.ascontiguousarray(action, dtype=np.float32),
            np.ascontiguousarray(out_weight, dtype=np.float32), np.ascontiguousarray(out_bias, dtype=np.float32),
            np.ascontiguousarray(columns, dtype=np.int64), np.ascontiguousarray(mask, dtype=bool), result)
    return result
