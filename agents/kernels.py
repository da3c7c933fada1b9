"""CPU kernels of acting: scoring every action with several paper networks at once, and
top-n% sampling's selection (:func:`top_n_pick`).

The paper's networks (:class:`~agents.policies.PairNet`) end in
``out(LeakyReLU(state_part(s) + action_part(a)))``: for each state, each action and each
network that is 64 adds, 64 LeakyReLUs and 64 multiply-adds. Torch does this as three
passes over a ``(batch, 800, 64)`` temporary per network; this numba kernel does it in one
pass over registers, for the Q-network and the oracles together, and only for the
(state, action) pairs the states' masks allow. On 2 CPU cores it scores a state with three networks
in 12-16 µs instead of 146-250 µs (``python benchmarks/agent_speed.py`` measures both).

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

import math

import numpy as np

try:  # numba is a dependency; without it the policies fall back to torch
    import numba
except ImportError:  # pragma: no cover
    numba = None

AVAILABLE = numba is not None
NEGATIVE_SLOPE = 0.01  # torch.nn.LeakyReLU's default

if AVAILABLE:

    @numba.njit(parallel=True, fastmath={"reassoc", "contract", "nsz"}, cache=True)
    def _scores(state, action, out_weight, out_bias, columns, out_columns, mask, fill,
                result, cut, allowed, passes):  # pragma: no cover - compiled
        n_states = state.shape[0]
        n_nets, hidden = out_weight.shape
        slope = np.float32(NEGATIVE_SLOPE)
        for b in numba.prange(n_states):
            if fill:  # dense output: the columns not scored read -inf
                for k in range(n_nets):
                    for o in range(result.shape[2]):
                        result[k, b, o] = -np.inf
            if passes:
                for o in range(allowed.shape[1]):
                    allowed[b, o] = False
            for c in range(columns.shape[0]):
                a = columns[c]
                o = out_columns[c]
                if not mask[b, a]:
                    for k in range(n_nets):
                        result[k, b, o] = -np.inf
                    continue
                ok = True
                for k in range(n_nets):
                    acc = np.float32(0.0)
                    base = k * hidden
                    for j in range(hidden):
                        x = state[b, base + j] + action[a, base + j]
                        acc += out_weight[k, j] * (x if x > 0 else slope * x)
                    value = acc + out_bias[k]
                    result[k, b, o] = value
                    if k > 0:
                        ok = ok and value >= cut  # NaN fails, as torch's >=
                if passes:
                    allowed[b, o] = ok


    @numba.njit(cache=True, inline="always")
    def _descending_key(x):  # pragma: no cover - compiled
        """uint32 key of a float32 whose ascending order is the floats' descending order (-0 as +0,
        so equal keys are equal floats)."""
        bits = np.uint32(np.float32(np.float32(x) + np.float32(0.0)).view(np.uint32))
        if bits >> np.uint32(31):
            return np.uint32(bits)  # negative: ~(~bits)
        return np.uint32(~np.uint32(bits | np.uint32(0x80000000)))

    @numba.njit(cache=True)
    def _radix_select(work, spare, counts, n, p):  # pragma: no cover - compiled
        """The p-th smallest (0-based) of work[:n], 8 bits a pass from the top (work is clobbered)."""
        src, dst = work, spare
        shift = np.uint32(24)
        while True:
            counts[:] = 0
            for j in range(n):
                counts[(src[j] >> shift) & np.uint32(255)] += 1
            bucket = 0
            while p >= counts[bucket]:
                p -= counts[bucket]
                bucket += 1
            m = 0
            for j in range(n):  # compaction without a branch per value
                dst[m] = src[j]
                m += ((src[j] >> shift) & np.uint32(255)) == bucket
            src, dst = dst, src
            n = m
            if n == 1 or shift == 0:
                return src[0]
            shift -= np.uint32(8)

    SORT_AT = 16  # draws from one row above which the row is sorted once instead of selected per draw

    @numba.njit(cache=True)
    def _top_n_pick(q, mask, order, starts, group_rows, u, fraction, out):  # pragma: no cover - compiled
        n_actions = q.shape[1]
        keys = np.empty(n_actions, dtype=np.uint32)
        actions = np.empty(n_actions, dtype=np.int64)
        work = np.empty(n_actions, dtype=np.uint32)
        spare = np.empty(n_actions, dtype=np.uint32)
        counts = np.empty(256, dtype=np.int64)
        for g in range(group_rows.shape[0]):
            r = group_rows[g]
            everything = True  # a row that allows nothing draws among all actions
            for a in range(n_actions):
                if mask[r, a]:
                    everything = False
                    break
            c = 0  # the allowed actions and their keys, gathered without a branch per action
            for a in range(n_actions):
                keys[c] = _descending_key(q[r, a])
                actions[c] = a
                c += everything | mask[r, a]
            # top_n_sample's k and pick, in the same arithmetic as its torch path
            k = min(max(1, int(math.ceil(np.float64(c) * fraction))), c)
            if starts[g + 1] - starts[g] > SORT_AT:  # many draws: rank the row once (stable: ties by index)
                ranked = np.argsort(keys[:c], kind="mergesort")
                for d in range(starts[g], starts[g + 1]):
                    i = order[d]
                    out[i] = actions[ranked[min(int(np.float32(u[i]) * np.float32(k)), k - 1)]]
                continue
            for d in range(starts[g], starts[g + 1]):
                i = order[d]
                p = min(int(np.float32(u[i]) * np.float32(k)), k - 1)
                work[:c] = keys[:c]
                key = _radix_select(work, spare, counts, c, p)
                ahead = 0  # allowed actions ranked before the key; ties then go by action index
                for j in range(c):
                    ahead += keys[j] < key
                t = p - ahead
                for j in range(c):
                    if keys[j] == key:
                        if t == 0:
                            out[i] = actions[j]
                            break
                        t -= 1

    @numba.njit(cache=True)
    def _uniform_pick(mask, rows, u, out):  # pragma: no cover - compiled
        n_actions = mask.shape[1]
        for i in range(rows.shape[0]):
            r = rows[i]
            c = 0
            for a in range(n_actions):
                c += mask[r, a]
            everything = c == 0  # a row that allows nothing draws among all actions
            if everything:
                c = n_actions
            # _cumulative_pick's arithmetic: float32 u times the float32 count, truncated
            j = min(int(np.float32(u[i]) * np.float32(c)), c - 1)
            for a in range(n_actions):
                if everything or mask[r, a]:
                    if j == 0:
                        out[i] = a
                        break
                    j -= 1


def uniform_pick(mask: np.ndarray, rows: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Uniform choice among allowed actions on the CPU: draw ``i`` takes, in row ``rows[i]``, the
    allowed action of index ``min(floor(u[i] * allowed), allowed - 1)`` in action order (a row that
    allows nothing allows everything): :func:`agents.sampling.uniform_allowed`'s arithmetic in one
    pass, without torch's cumulative sum over every row (~0.3 ms for 100 rows of 800).

    Args:
        mask: allowed actions, bool ``(batch, n_actions)``.
        rows: int64 ``(m,)``, the row of each draw.
        u: float32 ``(m,)`` uniform numbers in [0, 1), one per draw.

    Example:
        >>> allowed = np.array([[False, True, False, True]])
        >>> uniform_pick(allowed, np.zeros(2, np.int64), np.array([0.2, 0.7], np.float32)).tolist()
        [1, 3]
    """
    if not AVAILABLE:  # pragma: no cover
        raise RuntimeError("agents.kernels needs numba: pip install numba")
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    u = np.ascontiguousarray(u, dtype=np.float32)
    if mask.ndim != 2 or rows.shape != u.shape or (rows.size and not 0 <= rows.min() <= rows.max() < len(mask)):
        raise ValueError(f"Invalid arguments: mask {mask.shape} (batch, n_actions), rows {rows.shape} (indices "
                         f"into mask's rows) and u {u.shape} (one per row index).")
    out = np.empty(rows.shape[0], dtype=np.int64)
    _uniform_pick(np.ascontiguousarray(mask, dtype=bool), rows, u, out)
    return out


def top_n_pick(q: np.ndarray, mask: np.ndarray, rows: np.ndarray, u: np.ndarray, n_pct: float) -> np.ndarray:
    """Top-n% sampling's choice on the CPU: draw ``i`` takes, in row ``rows[i]``, the allowed action
    of rank ``min(floor(u[i] * k), k - 1)`` by ``q`` (0 = the best), ``k = max(1, ceil(n_pct / 100 *
    allowed))`` (:func:`agents.sampling.top_n_sample`'s arithmetic; a row that allows nothing
    allows everything).

    Each draw's rank is a radix selection on the bits of the allowed float32 scores (linear time,
    no data-dependent branch per value), or, for a row with many draws (generation), one stable
    sort of its allowed scores, instead of a sort of the top ``k`` of every row (``torch.topk``,
    ~7 µs a row on this project's machine). Equal scores rank by action index.

    Args:
        q: float32 scores ``(batch, n_actions)``.
        mask: allowed actions, bool ``(batch, n_actions)``.
        rows: int64 ``(m,)``, the row of each draw.
        u: float32 ``(m,)`` uniform numbers in [0, 1), one per draw.
        n_pct: percentage of the allowed actions to sample from.

    Example:
        >>> q = np.array([[0.5, 3.0, 2.0, 1.0]], np.float32)
        >>> allowed = np.array([[True, False, True, True]])  # ranked 2, 3, 0
        >>> top_n_pick(q, allowed, np.zeros(3, np.int64), np.array([0.1, 0.5, 0.9], np.float32), 100.0).tolist()
        [2, 3, 0]
    """
    if not AVAILABLE:  # pragma: no cover
        raise RuntimeError("agents.kernels needs numba: pip install numba")
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    u = np.ascontiguousarray(u, dtype=np.float32)
    if q.dtype != np.float32 or q.shape != mask.shape or rows.shape != u.shape or (
            rows.size and not 0 <= rows.min() <= rows.max() < len(q)):
        raise ValueError(f"Invalid arguments: q {q.dtype} {q.shape} (float32), mask {mask.shape} (the same shape), "
                         f"rows {rows.shape} (indices into q's rows) and u {u.shape} (one per row index).")
    order = np.argsort(rows, kind="stable")  # the draws grouped by row: each row is gathered once
    ordered = rows[order]
    starts = np.flatnonzero(np.diff(ordered, prepend=-1)).astype(np.int64)
    out = np.empty(rows.shape[0], dtype=np.int64)
    _top_n_pick(np.ascontiguousarray(q), np.ascontiguousarray(mask, dtype=bool), order, np.append(starts, len(rows)),
                ordered[starts], u, float(n_pct) / 100.0, out)
    return out


def pair_scores(state: np.ndarray, action: np.ndarray, out_weight: np.ndarray, out_bias: np.ndarray,
                columns: np.ndarray, mask: np.ndarray | None = None, dense: bool = False,
                cut: float | None = None) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Scores ``(n_nets, batch, len(columns))`` of ``n_nets`` networks (``dense``: ``(n_nets, batch,
    n_actions)``, -inf in the columns not listed).

    With ``cut`` (and ``dense``), also the pairs every network after the first scores ``>= cut``
    (float32 comparison, as torch's ``logits >= cut``) among those computed: ``(scores,
    passes)``, ``passes`` bool ``(batch, n_actions)``. A policy's oracles filter its actions so,
    in the same pass.

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
    if cut is not None and not dense:
        raise ValueError("pair_scores(cut=...) needs dense=True: the passes are indexed by action.")
    columns = np.ascontiguousarray(columns, dtype=np.int64)
    width = action.shape[0] if dense else len(columns)
    result = np.empty((n_nets, state.shape[0], width), dtype=np.float32)
    passes = np.empty((state.shape[0], width) if cut is not None else (0, 0), dtype=bool)
    _scores(np.ascontiguousarray(state, dtype=np.float32), np.ascontiguousarray(action, dtype=np.float32),
            np.ascontiguousarray(out_weight, dtype=np.float32), np.ascontiguousarray(out_bias, dtype=np.float32),
            columns, columns if dense else np.arange(len(columns)), np.ascontiguousarray(mask, dtype=bool),
            dense and len(columns) < width, result, np.float32(0.0 if cut is None else cut), passes, cut is not None)
    return result if cut is None else (result, passes)
